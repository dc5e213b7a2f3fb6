# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Rolling statistics of a live classifier: rates, latency percentiles, drops, exits, health.

ROS-free so that it is tested from plain numbers: the node feeds it events (a frame arrived, a
frame was dropped and why, a result with its stage timings) from its callback and worker threads
and reads a :class:`StatsSnapshot` about once a second for ``/diagnostics``. Every figure is over
a sliding time window, so a stall shows up within one window instead of being averaged away.
"""

from collections import Counter, deque
from dataclasses import dataclass, field
import math
import threading
import time
from typing import Callable, Dict, Optional, Tuple

from gfde_perception.errors import ConfigError, ImageError

PERCENTILES = (50, 90, 99)
# Samples kept per series; at 1 kHz this still covers a 4 s window (older ones fall out anyway).
MAX_SAMPLES = 4096

OK, WARN, ERROR = 0, 1, 2
LEVEL_NAMES = {OK: 'OK', WARN: 'WARN', ERROR: 'ERROR'}

# Why a frame produced no result. 'superseded' is the real-time policy, not a fault.
DROP_SUPERSEDED = 'superseded'
DROP_BAD_INPUT = 'bad_input'
DROP_INFERENCE_ERROR = 'inference_error'
DROP_NON_FINITE = 'non_finite_output'
DROP_PUBLISH_FAILED = 'publish_failed'
DROP_REASONS = (DROP_SUPERSEDED, DROP_BAD_INPUT, DROP_INFERENCE_ERROR, DROP_NON_FINITE,
                DROP_PUBLISH_FAILED)


def bad_input_kind(error: ImageError) -> str:
    """Return the stable counter name of the bad input an ImageError reports (its kind)."""
    return error.kind.value


def percentiles(values, qs=PERCENTILES) -> Tuple[float, ...]:
    """Return the ``qs`` percentiles of ``values`` (nearest-rank); NaN for an empty series."""
    data = sorted(values)
    if not data:
        return tuple(math.nan for _ in qs)
    n = len(data)
    return tuple(data[min(n - 1, max(0, math.ceil(q / 100.0 * n) - 1))] for q in qs)


class _Series:
    """Time-stamped samples of one quantity, trimmed to a window when read."""

    def __init__(self):
        self.samples = deque(maxlen=MAX_SAMPLES)  # (t, value)

    def add(self, t: float, value: float):
        self.samples.append((t, value))

    def values_since(self, t0: float) -> list:
        return [v for t, v in self.samples if t >= t0]


@dataclass(frozen=True)
class HealthBounds:
    """
    When the node's diagnostic status leaves OK.

    :ivar min_output_rate_hz: WARN when results come out slower than this (0 disables); ERROR
        when frames arrive but no result has come out in the whole window.
    :ivar max_latency_ms: WARN when the p90 end-to-end latency exceeds it, ERROR above twice it
        (0 disables).
    :ivar max_bad_input_ratio: WARN when more than this share of received frames was bad input.
    :ivar window_s: sliding window of every rate and percentile, in seconds.
    """

    min_output_rate_hz: float = 0.0
    max_latency_ms: float = 0.0
    max_bad_input_ratio: float = 0.5
    window_s: float = 5.0

    def __post_init__(self):
        for name in ('min_output_rate_hz', 'max_latency_ms', 'max_bad_input_ratio', 'window_s'):
            value = float(getattr(self, name))
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f'{name} must be a finite number >= 0, got {value}')
            object.__setattr__(self, name, value)
        if self.max_bad_input_ratio > 1:
            raise ConfigError(
                f'max_bad_input_ratio must be in [0, 1], got {self.max_bad_input_ratio}')
        if self.window_s <= 0:
            raise ConfigError(f'window_s must be > 0, got {self.window_s}')


@dataclass(frozen=True)
class StatsSnapshot:
    """
    Figures over the last window, as read for one diagnostics message.

    :ivar window_s: length of the window the rates and percentiles cover.
    :ivar input_rate_hz: frames received per second (all topics).
    :ivar output_rate_hz: results published per second.
    :ivar received: frames received since start.
    :ivar processed: results published since start.
    :ivar dropped: drops since start, by reason (see ``DROP_REASONS``).
    :ivar bad_input: bad-input drops since start, by kind.
    :ivar latency_ms: stage name -> (p50, p90, p99) over the window, NaN when no sample.
    :ivar exit_counts: exit index -> results since start that left there.
    :ivar energy_measured: True when every energy figure in the window was measured.
    :ivar energy_j_per_frame: mean measured joules per frame in the window, NaN otherwise.
    :ivar energy_source: the counter's name, or 'none'.
    :ivar energy_method: why energy is not measured (empty when it is).
    :ivar window_received: frames received within the window.
    :ivar window_processed: results within the window.
    :ivar window_bad_input: bad-input drops within the window.
    """

    window_s: float
    input_rate_hz: float
    output_rate_hz: float
    received: int
    processed: int
    dropped: Dict[str, int]
    bad_input: Dict[str, int]
    latency_ms: Dict[str, Tuple[float, float, float]]
    exit_counts: Dict[int, int]
    energy_measured: bool
    energy_j_per_frame: float
    energy_source: str
    energy_method: str
    window_received: int = 0
    window_processed: int = 0
    window_bad_input: int = 0
    extra: dict = field(default_factory=dict)


class PipelineStats:
    """
    Thread-safe event sink of a live classifier; :meth:`snapshot` reads the window.

    :param window_s: sliding window of rates and percentiles, in seconds.
    :param clock: monotonic time source in seconds (injected in tests).
    """

    def __init__(self, window_s: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self._lock = threading.Lock()
        self._clock = clock
        self.window_s = float(window_s)
        self._arrivals = _Series()
        self._outputs = _Series()
        self._bad = _Series()
        self._latency: Dict[str, _Series] = {}
        self._energy = _Series()
        self._energy_source = 'none'
        self._energy_method = 'no result yet'
        self._energy_all_measured = True
        self.received = 0
        self.processed = 0
        self.dropped = Counter(dict.fromkeys(DROP_REASONS, 0))
        self.bad_input = Counter()
        self.exit_counts = Counter()

    def frame_received(self):
        """Count one frame arriving in the node."""
        with self._lock:
            self.received += 1
            self._arrivals.add(self._clock(), 1.0)

    def frame_dropped(self, reason: str, kind: Optional[str] = None):
        """Count one frame that gave no result, with its reason (and bad-input kind)."""
        with self._lock:
            self.dropped[reason] += 1
            if reason == DROP_BAD_INPUT:
                self.bad_input[kind or 'other'] += 1
                self._bad.add(self._clock(), 1.0)

    def result_published(self, exit_index: int, latency_ms: Dict[str, float],
                         energy_measured: bool = False, energy_j: float = math.nan,
                         energy_source: str = 'none', energy_method: str = ''):
        """Count one published result with its per-stage latencies (stage name -> ms)."""
        with self._lock:
            t = self._clock()
            self.processed += 1
            self._outputs.add(t, 1.0)
            self.exit_counts[int(exit_index)] += 1
            for stage, ms in latency_ms.items():
                if ms is not None and math.isfinite(ms):
                    self._latency.setdefault(stage, _Series()).add(t, float(ms))
            self._energy_source = energy_source
            self._energy_method = energy_method
            if energy_measured and math.isfinite(energy_j):
                self._energy.add(t, float(energy_j))
            else:
                self._energy_all_measured = False
                self._energy.add(t, math.nan)

    def snapshot(self) -> StatsSnapshot:
        """Return the figures over the last ``window_s`` seconds (and totals since start)."""
        with self._lock:
            now = self._clock()
            t0 = now - self.window_s
            arrivals = len(self._arrivals.values_since(t0))
            outputs = len(self._outputs.values_since(t0))
            bad = len(self._bad.values_since(t0))
            latency = {stage: percentiles(series.values_since(t0))
                       for stage, series in sorted(self._latency.items())}
            energies = self._energy.values_since(t0)
            measured = bool(energies) and all(math.isfinite(e) for e in energies)
            return StatsSnapshot(
                window_s=self.window_s,
                input_rate_hz=arrivals / self.window_s,
                output_rate_hz=outputs / self.window_s,
                received=self.received,
                processed=self.processed,
                dropped=dict(self.dropped),
                bad_input=dict(self.bad_input),
                latency_ms=latency,
                exit_counts=dict(sorted(self.exit_counts.items())),
                energy_measured=measured,
                energy_j_per_frame=(sum(energies) / len(energies)) if measured else math.nan,
                energy_source=self._energy_source,
                energy_method='' if measured else (self._energy_method or 'not measured'),
                window_received=arrivals,
                window_processed=outputs,
                window_bad_input=bad,
            )


def evaluate_health(snapshot: StatsSnapshot, bounds: HealthBounds) -> Tuple[int, str]:
    """
    Turn a snapshot into a diagnostic level (OK, WARN, ERROR) and a one-line reason.

    :param snapshot: figures over the window.
    :param bounds: the configured limits.
    :return: ``(level, message)``; the message lists every bound that was left.
    """
    level, reasons = OK, []

    def raise_to(new_level, reason):
        nonlocal level
        level = max(level, new_level)
        reasons.append(reason)

    if snapshot.window_received == 0:
        raise_to(WARN, f'no input in the last {snapshot.window_s:g} s')
    elif snapshot.window_processed == 0:
        raise_to(ERROR, f'frames arrive but no result in {snapshot.window_s:g} s')
    elif bounds.min_output_rate_hz > 0 and snapshot.output_rate_hz < bounds.min_output_rate_hz:
        raise_to(WARN, f'output rate {snapshot.output_rate_hz:.1f} Hz is below '
                       f'{bounds.min_output_rate_hz:g} Hz')
    p90 = snapshot.latency_ms.get('total', (math.nan,) * 3)[1]
    if bounds.max_latency_ms > 0 and math.isfinite(p90) and p90 > bounds.max_latency_ms:
        raise_to(ERROR if p90 > 2 * bounds.max_latency_ms else WARN,
                 f'latency p90 {p90:.1f} ms exceeds {bounds.max_latency_ms:g} ms')
    if snapshot.window_received:
        ratio = snapshot.window_bad_input / snapshot.window_received
        if ratio > bounds.max_bad_input_ratio:
            raise_to(WARN, f'{ratio:.0%} of frames were bad input')
    return level, '; '.join(reasons) if reasons else 'ok'
