# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Configuration of the inference runtime: which backend, schedule and exit-head device.

Deployment knobs only: preprocessing, labels and calibrated thresholds travel with the bundle.
"""

from dataclasses import asdict, dataclass
import os
from pathlib import Path
from typing import Mapping, Optional

from gfde_perception.choices import (
    BACKENDS, DEFAULT_BACKEND, DEFAULT_ENERGY, DEFAULT_HEAD_IMPL, DEFAULT_PRECISION,
    DEFAULT_SCHEDULE, ENERGY_SOURCES, EXIT_WORKERS, HEAD_IMPLS, PRECISIONS, SCHEDULES, THREADS,
    TOP_K, WARMUP)
from gfde_perception.errors import ConfigError


def default_cache_dir() -> Path:
    """Return the directory for engines and load-time decisions (``$GFDE_CACHE_DIR`` wins)."""
    env = os.environ.get('GFDE_CACHE_DIR')
    if env:
        return Path(env)
    base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
    return Path(base) / 'gfde_perception'


@dataclass(frozen=True)
class RuntimeConfig:
    """
    How a :class:`~gfde_perception.runtime.Classifier` runs a bundle.

    :ivar backend: 'auto' (measure and pick), or force 'tensorrt', 'cuda', 'torch',
        'torch-compile' or 'onnxruntime'. A forced backend that fails to load falls back to
        the next one in its chain with an error message.
    :ivar precision: 'fp16' (default on GPU backends) or 'fp32'. CPU backends always run fp32.
    :ivar schedule: 'speculative' (segment k+1 runs while exit k is decided), 'sequential', or
        'auto' (measure at the first load on this host, keep the fastest and cache the
        decision).
    :ivar exit_workers: threads of the CPU pool that runs exit heads and gates; 0 runs them
        inline on the calling thread (no hand-off, no speculation: schedule is sequential).
    :ivar top_k: length of the top-k list in each result (clipped to the number of classes).
    :ivar warmup: frames run at load before the first real one (0 disables).
    :ivar engine_cache_dir: where TensorRT engines, ONNX segments and the 'auto' decisions are
        cached; None means :func:`default_cache_dir`.
    :ivar threads: torch / onnxruntime intra-op threads; 0 keeps the library default.
    :ivar head_impl: evaluate exit heads in 'numpy', 'torch', or 'auto' (measure, keep faster).
    :ivar energy: energy counter: 'auto' (first one found), 'none', 'nvml', 'rapl', 'ina3221'.
    :ivar energy_baseline_s: seconds of idle measured at load to subtract an idle baseline
        (only when a counter exists; 0 disables).
    :ivar profile_window: frames kept in the rolling runtime profile (budget policy, diagnostics).
    :ivar measure_iters: frames per candidate when 'auto' measures backends, heads or schedules.

    """

    backend: str = DEFAULT_BACKEND
    precision: str = DEFAULT_PRECISION
    schedule: str = DEFAULT_SCHEDULE
    exit_workers: int = EXIT_WORKERS.default
    top_k: int = TOP_K.default
    warmup: int = WARMUP.default
    engine_cache_dir: Optional[str] = None
    threads: int = THREADS.default
    head_impl: str = DEFAULT_HEAD_IMPL
    energy: str = DEFAULT_ENERGY
    energy_baseline_s: float = 0.5
    profile_window: int = 64
    measure_iters: int = 20

    def __post_init__(self):
        _choice('backend', self.backend, BACKENDS)
        _choice('precision', self.precision, PRECISIONS)
        _choice('schedule', self.schedule, SCHEDULES)
        _choice('head_impl', self.head_impl, HEAD_IMPLS)
        _choice('energy', self.energy, ENERGY_SOURCES)
        _int_range('exit_workers', self.exit_workers, EXIT_WORKERS.low, EXIT_WORKERS.high)
        _int_range('top_k', self.top_k, TOP_K.low, TOP_K.high)
        _int_range('warmup', self.warmup, WARMUP.low, WARMUP.high)
        _int_range('threads', self.threads, THREADS.low, THREADS.high)
        _int_range('profile_window', self.profile_window, 1, 100000)
        _int_range('measure_iters', self.measure_iters, 1, 100000)
        baseline = float(self.energy_baseline_s)
        if not 0.0 <= baseline <= 60.0:
            raise ConfigError(f'energy_baseline_s must be in [0, 60] s, got {baseline}')
        object.__setattr__(self, 'energy_baseline_s', baseline)
        if self.engine_cache_dir is not None:
            object.__setattr__(self, 'engine_cache_dir', str(self.engine_cache_dir))

    @property
    def cache_dir(self) -> Path:
        """Return the resolved cache directory."""
        if self.engine_cache_dir:
            return Path(self.engine_cache_dir).expanduser()
        return default_cache_dir()

    def to_dict(self) -> dict:
        """Return a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> 'RuntimeConfig':
        """Build from a mapping (YAML, ROS parameters); unknown keys are a ConfigError."""
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f'unknown runtime configuration keys: {sorted(unknown)}')
        return cls(**dict(data))


def _choice(name: str, value, choices: tuple):
    if value not in choices:
        raise ConfigError(f'{name} must be one of {choices}, got {value!r}')


def _int_range(name: str, value, low: int, high: int):
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f'{name} must be an integer in [{low}, {high}], got {value!r}')
