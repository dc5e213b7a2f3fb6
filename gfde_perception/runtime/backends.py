# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Backbone backends: run GFDE segment k on an input and hand back (features, pooled).

Each backend owns the model copy it runs, a preallocated host input buffer that preprocessing
writes into, and a way to bring the pooled feature of an exit to the host for the CPU worker.

* ``torch-cpu``: eager torch on the training (FFT) form.
* ``torch-compile-cpu``: ``torch.compile`` of each segment (FFT form; compile time is paid at
  every load, so 'auto' never picks it: force it to use it).
* ``onnxruntime-cpu``: each segment of the deployable (conv) form exported to ONNX once, cached
  on disk, run by onnxruntime.
* ``cuda`` / ``cuda-fp16``: plain CUDA torch, asynchronous: segments are queued on the GPU
  stream while the host goes on, which is what lets the CPU decide exit k while the GPU already
  runs segment k+1.
* ``tensorrt-fp16`` / ``tensorrt-fp32``: each segment of the deployable form compiled by
  torch-tensorrt (TensorRT has no FFT), engines cached on disk (:mod:`engine_cache`).

Optional stacks (onnxruntime, CUDA, torch-tensorrt) are imported inside the backend that needs
them. Every load failure is a :class:`~gfde_perception.errors.BackendError` with the reason,
which :func:`load_backend` logs before falling back to the next backend of the chain.
"""

import functools
import json
import logging
import os
from pathlib import Path
import platform
import tempfile
import time
from typing import Callable, NamedTuple, Optional, Sequence
import warnings

from gfde_perception.errors import BackendError
from gfde_perception.models.deploy import DEPLOY_REVISION
from gfde_perception.runtime.config import RuntimeConfig
from gfde_perception.runtime.engine_cache import EngineCache
import numpy as np
import torch

LOG = logging.getLogger(__name__)

# Fallback chains: what is tried, in order, when a backend is forced.
CHAINS = {
    'tensorrt': ('tensorrt', 'cuda', 'torch'),
    'cuda': ('cuda', 'torch'),
    'torch': ('torch',),
    'torch-compile': ('torch-compile', 'torch'),
    'onnxruntime': ('onnxruntime', 'torch'),
}
# CPU candidates 'auto' measures against each other.
AUTO_CPU = ('torch', 'onnxruntime')
AUTO_GPU = ('tensorrt', 'cuda')
CHOICE_FILE = 'backend_choice.json'
SCHEDULE_FILE = 'schedule_choice.json'


class SegmentRun(NamedTuple):
    """One executed segment: its outputs (backend-native) and how long it took."""

    features: object
    pooled: object
    elapsed_ms: Callable  # () -> float; may wait for the device
    finished: Callable  # () -> bool without waiting


def _done() -> bool:
    return True


class Backend:
    """A loaded backbone; subclasses implement :meth:`_load` and :meth:`run_segment`."""

    kind = ''
    device = 'cpu'

    def __init__(self, bundle, config: RuntimeConfig):
        self.bundle = bundle
        self.config = config
        self.name = self.kind
        self.num_exits = bundle.config.num_exits
        self.input = np.empty(bundle.preprocessing.input_shape, np.float32)  # (C, H, W)

    def load(self):
        """Build what the backend runs; raises BackendError on any failure."""
        try:
            self._load()
        except BackendError:
            raise
        except Exception as exc:  # a missing library, a build error, out of memory...
            raise BackendError(f'{self.kind} backend failed to load: '
                               f'{type(exc).__name__}: {exc}') from exc

    def _load(self):
        raise NotImplementedError

    def start(self):
        """Make the filled :attr:`input` buffer the input of segment 0; return it."""
        raise NotImplementedError

    def run_segment(self, k: int, x) -> SegmentRun:
        """Run segment ``k`` on ``x`` (the start handle or the previous segment's features)."""
        raise NotImplementedError

    def pooled_to_numpy(self, pooled) -> np.ndarray:
        """Bring the pooled feature (1, C) to the host as (C,) float32; may block."""
        raise NotImplementedError

    def run_all(self) -> list:
        """Run every segment on the current input; return pooled features on the host."""
        x = self.start()
        pooled = []
        for k in range(self.num_exits):
            run = self.run_segment(k, x)
            pooled.append(self.pooled_to_numpy(run.pooled).copy())
            x = run.features
        return pooled

    def close(self):
        """Release device memory and sessions."""


class TorchBackend(Backend):
    """Eager torch on the CPU, training (FFT) form."""

    kind = 'torch'

    def _load(self):
        self.name = 'torch-cpu'
        self.model = self.bundle.build_model(deployable=False).eval()
        self.segments = list(self.model.segments)
        self._x = torch.from_numpy(self.input)[None]  # (1, C, H, W), shares the buffer

    def start(self):
        return self._x

    def run_segment(self, k, x):
        t0 = time.perf_counter()
        with torch.inference_mode():
            features, pooled = self.segments[k](x)
        ms = (time.perf_counter() - t0) * 1e3
        return SegmentRun(features, pooled, lambda: ms, _done)

    def pooled_to_numpy(self, pooled):
        return pooled[0].numpy()


class TorchCompileBackend(TorchBackend):
    """``torch.compile`` of each segment on the CPU (compiled at load, on a sample input)."""

    kind = 'torch-compile'

    def _load(self):
        super()._load()
        self.name = 'torch-compile-cpu'
        compiled = [torch.compile(seg, dynamic=False) for seg in self.segments]
        t0 = time.perf_counter()
        x = self._x
        with torch.inference_mode():
            for seg in compiled:
                x, _ = seg(x)
        LOG.info('torch.compile of %d segments took %.1f s', len(compiled),
                 time.perf_counter() - t0)
        self.segments = compiled


def host_signature(config: RuntimeConfig) -> str:
    """Identify the machine and software a measured decision holds for."""
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo', encoding='ascii', errors='replace') as f:
            for line in f:
                if line.startswith('model name'):
                    cpu = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import onnxruntime  # noqa: PLC0415 - optional stack: its version, if installed
        ort = onnxruntime.__version__
    except ImportError:
        ort = 'none'
    return (f'{cpu}|cores={os.cpu_count()}|threads={config.threads}|torch={torch.__version__}'
            f'|ort={ort}')


def _segment_inputs(model, input_shape: Sequence[int]) -> list:
    """Return an example input of every segment (batch 1), from one dry run on the CPU."""
    x = torch.zeros((1, *input_shape), dtype=torch.float32)
    inputs = []
    # no_grad, not inference_mode: exporters and compilers refuse inference tensors.
    with torch.no_grad():
        for seg in model.segments:
            inputs.append(x.clone())
            x, _ = seg(x)
    return inputs


def _deployable_model(bundle):
    return bundle.build_model(deployable=True).eval()


def _atomic_write(path: Path, write: Callable):
    """Write through a temporary file and rename, so a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + '.', suffix='.tmp', dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _export_segment(segment, example, path: str, opset: int):
    # TorchScript-based exporter on purpose: the conv form has no FFT, so it exports, in a
    # fraction of the dynamo exporter's time and without its console output. Static batch of
    # 1: the runtime classifies one frame at a time and a static graph lets onnxruntime fold.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)  # "legacy exporter": known, chosen
        torch.onnx.export(segment, (example,), path, input_names=['x'],
                          output_names=['features', 'pooled'], opset_version=opset, dynamo=False)


class OnnxRuntimeBackend(Backend):
    """onnxruntime on the CPU, each segment of the deployable (conv) form as one ONNX graph."""

    kind = 'onnxruntime'
    opset = 17

    def _load(self):
        import onnxruntime as ort  # noqa: PLC0415 - optional stack
        self.name = 'onnxruntime-cpu'
        folder = (self.config.cache_dir / 'onnx'
                  / f'{self.bundle.checksum[:16]}-d{DEPLOY_REVISION}-torch{torch.__version__}'
                    f'-op{self.opset}')
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.config.threads:
            options.intra_op_num_threads = self.config.threads
            options.inter_op_num_threads = self.config.threads
        exportable = []  # (segments, example inputs): built only if a segment must be exported

        def export(k: int, path: Path):
            if not exportable:
                model = _deployable_model(self.bundle)
                exportable.extend((list(model.segments),
                                   _segment_inputs(model, self.bundle.preprocessing.input_shape)))
            segments, inputs = exportable
            t0 = time.perf_counter()
            _atomic_write(path, functools.partial(_export_segment, segments[k], inputs[k],
                                                  opset=self.opset))
            LOG.info('exported segment %d to %s in %.2f s', k, path, time.perf_counter() - t0)

        self.sessions = []
        for k in range(self.num_exits):
            path = folder / f'segment{k}.onnx'
            if not path.is_file():
                export(k, path)
            try:
                session = ort.InferenceSession(str(path), options,
                                               providers=['CPUExecutionProvider'])
            except Exception as exc:
                # A damaged cache file: export again once, with a warning.
                LOG.warning('cached ONNX segment %s is unreadable (%s); exporting again', path,
                            exc)
                path.unlink(missing_ok=True)
                export(k, path)
                session = ort.InferenceSession(str(path), options,
                                               providers=['CPUExecutionProvider'])
            self.sessions.append(session)
        self._x = self.input[None]  # (1, C, H, W) view of the buffer
        self._bind(ort)

    def _bind(self, ort):
        """
        Bind every segment's input and outputs to preallocated buffers, chained.

        Shapes are static (batch 1), so segment k reads segment k-1's output buffer in place and
        each call is one ``run_with_iobinding``: no feed dict, no output allocation, no copy.
        """
        self._buffers, self._bindings = [], []
        source = self._x
        for session in self.sessions:
            outputs = [np.empty([int(d) for d in o.shape], np.float32)
                       for o in session.get_outputs()]
            binding = session.io_binding()
            binding.bind_ortvalue_input('x', ort.OrtValue.ortvalue_from_numpy(source))
            for meta, array in zip(session.get_outputs(), outputs):
                binding.bind_ortvalue_output(meta.name, ort.OrtValue.ortvalue_from_numpy(array))
            self._buffers.append((source, *outputs))  # (input, features, pooled)
            self._bindings.append(binding)
            source = outputs[0]

    def start(self):
        return self._x

    def run_segment(self, k, x):
        source, features, pooled = self._buffers[k]
        if x is not source:  # not the chained buffer (a caller's own array): copy it in
            np.copyto(source, x)
        t0 = time.perf_counter()
        self.sessions[k].run_with_iobinding(self._bindings[k])
        ms = (time.perf_counter() - t0) * 1e3
        # The buffers are reused by the next frame: whoever keeps a result beyond the frame
        # copies it (run_all does).
        return SegmentRun(features, pooled, lambda: ms, _done)

    def pooled_to_numpy(self, pooled):
        return pooled[0]

    def close(self):
        self.sessions = []


class CudaBackend(Backend):
    """Plain CUDA torch; FP16 unless the configuration asks for FP32. Asynchronous."""

    kind = 'cuda'
    device = 'cuda'

    def _require_cuda(self):
        if not torch.cuda.is_available():
            raise BackendError(f'{self.kind} backend needs CUDA, and torch '
                               f'{torch.__version__} sees no CUDA device')

    def _dtype(self):
        return torch.float16 if self.config.precision == 'fp16' else torch.float32

    def _load(self):
        self._require_cuda()
        fp16 = self.config.precision == 'fp16'
        self.name = 'cuda-fp16' if fp16 else 'cuda'
        # FP16 runs the conv form: cuFFT does half precision only for power-of-two sizes and
        # the FFT filter's complex weights have no half type worth using. FP32 keeps the FFT.
        model = _deployable_model(self.bundle) if fp16 else self.bundle.build_model()
        model = model.eval().to('cuda', self._dtype())
        self.segments = list(model.segments)
        self._setup_buffers(model)

    def _setup_buffers(self, model):
        # Pinned host memory makes the copies asynchronous; preprocessing writes into it.
        pinned = torch.empty(self.input.shape, dtype=torch.float32).pin_memory()
        self._host = pinned
        self.input = pinned.numpy()
        self._dev = torch.empty((1, *self.input.shape), dtype=self._dtype(), device='cuda')
        feats = [_pooled_width(model, k) for k in range(self.num_exits)]
        self._pooled_host = [torch.empty(c, dtype=torch.float32).pin_memory() for c in feats]
        self._pooled_ready = [torch.cuda.Event() for _ in feats]
        self._events = [(torch.cuda.Event(enable_timing=True),
                         torch.cuda.Event(enable_timing=True)) for _ in feats]
        self.gpu_name = torch.cuda.get_device_name()

    def start(self):
        self._dev[0].copy_(self._host, non_blocking=True)
        return self._dev

    def run_segment(self, k, x):
        begin, end = self._events[k]
        begin.record()
        with torch.inference_mode():
            features, pooled = self.segments[k](x)
            self._pooled_host[k].copy_(pooled[0], non_blocking=True)
        end.record()
        self._pooled_ready[k].record()

        def elapsed(b=begin, e=end):
            e.synchronize()
            return b.elapsed_time(e)
        return SegmentRun(features, k, elapsed, end.query)

    def pooled_to_numpy(self, pooled):
        k = pooled  # the handle is the exit index: the copy lands in a pinned buffer
        self._pooled_ready[k].synchronize()
        return self._pooled_host[k].numpy()

    def close(self):
        self.segments = []
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _pooled_width(model, k: int) -> int:
    head = model.exit_heads[k]
    for module in head.modules():
        if isinstance(module, torch.nn.Linear):
            return module.in_features
    raise BackendError(f'cannot tell the feature width of exit head {k}')


class TensorRTBackend(CudaBackend):
    """torch-tensorrt engines per segment, built from the deployable form and cached on disk."""

    kind = 'tensorrt'

    def _load(self):
        self._require_cuda()
        import torch_tensorrt  # noqa: PLC0415 - optional stack
        self.name = f'tensorrt-{self.config.precision}'
        model = _deployable_model(self.bundle)
        inputs = _segment_inputs(model, self.bundle.preprocessing.input_shape)
        model = model.to('cuda', self._dtype())
        cache = EngineCache(self.config.cache_dir, self.bundle.checksum,
                            torch.cuda.get_device_name(), self.config.precision,
                            torch_tensorrt)
        self.segments = [
            cache.get_or_build(k, seg, inputs[k].to('cuda', self._dtype()))
            for k, seg in enumerate(model.segments)]
        self.cache = cache  # build times and cache hits, for logs, tests and benchmarks
        self._setup_buffers(model)


BACKENDS = {cls.kind: cls for cls in (TorchBackend, TorchCompileBackend, OnnxRuntimeBackend,
                                      CudaBackend, TensorRTBackend)}


def _try_load(kind: str, bundle, config: RuntimeConfig, errors: list) -> Optional[Backend]:
    backend = BACKENDS[kind](bundle, config)
    try:
        backend.load()
        return backend
    except BackendError as exc:
        LOG.error('backend %s failed to load: %s', kind, exc)
        errors.append(f'{kind}: {exc}')
        return None


def _median_ms(backend: Backend, iters: int) -> float:
    backend.input[...] = 0.0
    with torch.inference_mode():
        backend.run_all()  # first call pays lazy initialisation
        samples = []
        for _ in range(iters):
            t0 = time.perf_counter()
            backend.run_all()
            samples.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(samples))


def _read_choices(path: Path) -> dict:
    try:
        with open(path, encoding='utf-8') as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def cached_decision(config: RuntimeConfig, file_name: str, key: str) -> Optional[dict]:
    """Return the load-time decision cached under ``key`` in ``file_name`` (None if none)."""
    value = _read_choices(config.cache_dir / file_name).get(key)
    return value if isinstance(value, dict) else None


def cache_decision(config: RuntimeConfig, file_name: str, key: str, value: dict):
    """Cache a measured load-time decision; a cache that cannot be written only warns."""
    path = config.cache_dir / file_name
    try:
        choices = _read_choices(path)
        choices[key] = value
        _atomic_write(path, lambda tmp: Path(tmp).write_text(
            json.dumps(choices, indent=1), encoding='utf-8'))
    except OSError as exc:
        LOG.warning('cannot cache the decision in %s: %s', path, exc)


def _auto_cpu(bundle, config: RuntimeConfig, errors: list) -> tuple:
    """Measure the CPU candidates (or reuse the cached decision); return (backend, reason)."""
    key = f'{bundle.checksum}|{host_signature(config)}'
    cached = cached_decision(config, CHOICE_FILE, key)
    if cached and cached.get('backend') in AUTO_CPU:
        order = [cached['backend']] + [c for c in AUTO_CPU if c != cached['backend']]
        for kind in order:
            backend = _try_load(kind, bundle, config, errors)
            if backend is not None:
                if kind == cached['backend']:
                    return backend, f'cached decision for this bundle and host: {cached["why"]}'
                return backend, (f'cached choice {cached["backend"]} failed to load; '
                                 f'fell back to {kind}')
    timings, loaded = {}, {}
    for kind in AUTO_CPU:
        backend = _try_load(kind, bundle, config, errors)
        if backend is not None:
            loaded[kind] = backend
            timings[kind] = _median_ms(backend, config.measure_iters)
    if not loaded:
        raise BackendError('no CPU backend could be loaded: ' + '; '.join(errors))
    best = min(timings, key=timings.get)
    for kind, backend in loaded.items():
        if kind != best:
            backend.close()
    why = ('measured full-backbone median over %d frames: %s' % (
        config.measure_iters, ', '.join(f'{k} {v:.3f} ms' for k, v in sorted(timings.items()))))
    if len(timings) == 1:
        why = f'only {best} loaded ({"; ".join(errors)})'
    else:
        cache_decision(config, CHOICE_FILE, key, {'backend': best, 'why': why, 'ms': timings})
    return loaded[best], why


def load_backend(bundle, config: RuntimeConfig) -> tuple:
    """
    Load the configured backend, falling back along its chain on failure.

    :returns: (backend, reason): the reason says why this backend runs (measured, forced,
        cached, or which failures led to it).
    :raises BackendError: no backend at all could be loaded.
    """
    errors = []
    if config.backend == 'auto':
        if torch.cuda.is_available():
            for kind in AUTO_GPU:
                backend = _try_load(kind, bundle, config, errors)
                if backend is not None:
                    why = f'CUDA device {torch.cuda.get_device_name()}: {kind} preferred'
                    if errors:
                        why += f' after failures ({"; ".join(errors)})'
                    return backend, why
        else:
            errors.append('no CUDA device')
        backend, why = _auto_cpu(bundle, config, errors)
        return backend, why
    for kind in CHAINS[config.backend]:
        backend = _try_load(kind, bundle, config, errors)
        if backend is not None:
            if kind == config.backend:
                return backend, 'forced by configuration'
            return backend, (f'{config.backend} was requested but failed to load; fell back to '
                             f'{kind} ({"; ".join(errors)})')
    raise BackendError(f'no backend in the chain {CHAINS[config.backend]} could be loaded: '
                       + '; '.join(errors))
