# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
On-disk cache of TensorRT engines, one per backbone segment.

An engine is only valid for the exact weights, GPU model, TensorRT and torch-tensorrt versions
and precision it was built with, so those make up its key. A restart with the same key loads the
engine (logged); a different key for the same bundle (a driver or library upgrade) is stale: it
is removed and rebuilt with a warning; an engine whose file does not match its recorded digest,
or that fails to load, is corrupt and rebuilt with a warning. Nothing is rebuilt silently: every
build is logged with its duration.
"""

import hashlib
import json
import logging
import os
from pathlib import Path
import tempfile
import time

from gfde_perception.models.deploy import DEPLOY_REVISION
import torch

LOG = logging.getLogger(__name__)


def file_sha256(path: Path) -> str:
    """Return the hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def tensorrt_version() -> str:
    """Return the TensorRT library version, or 'unknown' when it cannot be imported."""
    try:
        import tensorrt  # noqa: PLC0415 - optional stack
        return tensorrt.__version__
    except ImportError:
        return 'unknown'


class EngineCache:
    """
    Engines of one bundle for one GPU, library set and precision.

    :param root: cache directory (the runtime's ``engine_cache_dir``).
    :param bundle_checksum: the bundle's SHA-256.
    :param gpu_name: ``torch.cuda.get_device_name()``.
    :param precision: 'fp16' or 'fp32'.
    :param trt: the imported ``torch_tensorrt`` module (passed in so this module stays importable
        without it, and so tests can hand in a stand-in).
    :param trt_version: TensorRT version; None reads it from the ``tensorrt`` package.
    """

    def __init__(self, root, bundle_checksum: str, gpu_name: str, precision: str, trt,
                 trt_version: str = None):
        self.trt = trt
        self.key_fields = {
            'bundle_sha256': bundle_checksum,
            'gpu': gpu_name,
            'tensorrt': trt_version or tensorrt_version(),
            'torch_tensorrt': getattr(trt, '__version__', 'unknown'),
            'torch': torch.__version__,
            'precision': precision,
            'deploy_revision': DEPLOY_REVISION,
        }
        blob = json.dumps(self.key_fields, sort_keys=True).encode()
        self.key = hashlib.sha256(blob).hexdigest()[:16]
        self.folder = Path(root).expanduser() / 'tensorrt' / bundle_checksum[:16]
        self.build_seconds = {}
        self.loaded_from_cache = {}
        self._remove_stale()

    def _paths(self, k: int) -> tuple:
        stem = f'segment{k}-{self.key}'
        return self.folder / f'{stem}.ep', self.folder / f'{stem}.json'

    def _remove_stale(self):
        if not self.folder.is_dir():
            return
        for meta in sorted(self.folder.glob('segment*-*.json')):
            if meta.stem.endswith(self.key):
                continue
            try:
                old = json.loads(meta.read_text(encoding='utf-8')).get('key_fields', {})
            except (OSError, ValueError):
                old = {}
            changed = {f: (old.get(f), v) for f, v in self.key_fields.items()
                       if old.get(f) != v}
            LOG.warning('stale TensorRT engine %s (changed: %s); removing it, engines will be '
                        'rebuilt', meta.with_suffix('.ep').name, changed)
            meta.with_suffix('.ep').unlink(missing_ok=True)
            meta.unlink(missing_ok=True)

    def _compile(self, module, example):
        dtype = example.dtype
        kwargs = {'ir': 'dynamo', 'inputs': [example], 'min_block_size': 1}
        try:
            return self.trt.compile(module, enabled_precisions={dtype}, **kwargs)
        except TypeError:
            # Newer torch-tensorrt versions type the graph from the module's own dtype.
            return self.trt.compile(module, **kwargs)

    def _load(self, k: int, example):
        engine, meta = self._paths(k)
        if not engine.is_file() or not meta.is_file():
            return None
        try:
            recorded = json.loads(meta.read_text(encoding='utf-8'))
            if recorded.get('key_fields') != self.key_fields:
                raise ValueError('key fields differ')
            if recorded.get('sha256') != file_sha256(engine):
                raise ValueError('file digest does not match the one recorded at build time')
            module = self.trt.load(str(engine)).module()
            module(example)  # a truncated or incompatible engine fails here, not mid-stream
            return module
        except Exception as exc:
            LOG.warning('TensorRT engine cache %s is corrupt or unusable (%s: %s); rebuilding',
                        engine.name, type(exc).__name__, exc)
            engine.unlink(missing_ok=True)
            meta.unlink(missing_ok=True)
            return None

    def get_or_build(self, k: int, module, example):
        """Return the engine of segment ``k``: loaded from the cache, or built and stored."""
        cached = self._load(k, example)
        if cached is not None:
            LOG.info('TensorRT engine for segment %d loaded from cache (%s)', k,
                     self._paths(k)[0])
            self.loaded_from_cache[k] = True
            return cached
        t0 = time.perf_counter()
        engine_module = self._compile(module, example)
        seconds = time.perf_counter() - t0
        self.build_seconds[k] = seconds
        self.loaded_from_cache[k] = False
        LOG.info('built TensorRT engine for segment %d in %.1f s (%s)', k, seconds,
                 self.key_fields['precision'])
        engine, meta = self._paths(k)
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix='.ep', dir=self.folder)
        os.close(fd)
        try:
            self.trt.save(engine_module, tmp, output_format='exported_program',
                          inputs=[example])
            os.replace(tmp, engine)
            meta.write_text(json.dumps({'key_fields': self.key_fields,
                                        'sha256': file_sha256(engine),
                                        'build_seconds': seconds}, indent=1),
                            encoding='utf-8')
        except Exception as exc:  # an unsaveable engine still runs; only the cache is lost
            LOG.warning('could not cache the TensorRT engine of segment %d: %s', k, exc)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return engine_module
