# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""TensorRT engine cache logic with a stand-in for torch_tensorrt (runs without CUDA)."""

import json
import logging

from gfde_perception.runtime.engine_cache import EngineCache
import pytest
import torch


class FakeTorchTensorRT:
    """Compile = identity, save = write a marker, load = look the module up by file content."""

    def __init__(self, version='2.13.0'):
        self.__version__ = version
        self.compiled = 0
        self._saved = {}

    def compile(self, module, **kwargs):  # noqa: A003 - torch_tensorrt's name
        assert kwargs['ir'] == 'dynamo'
        self.compiled += 1
        return module

    def save(self, module, path, output_format, inputs):
        assert output_format == 'exported_program' and len(inputs) == 1
        token = f'engine-{len(self._saved)}'
        self._saved[token] = module
        with open(path, 'w', encoding='ascii') as f:
            f.write(token)

    def load(self, path):
        with open(path, encoding='ascii') as f:
            module = self._saved[f.read()]

        class Program:
            def module(self):
                return module
        return Program()


def _cache(tmp_path, trt, trt_version='10.0', precision='fp16', gpu='Fake GPU'):
    return EngineCache(tmp_path, 'ab' * 32, gpu, precision, trt, trt_version=trt_version)


def test_build_then_reuse_from_disk(tmp_path, caplog):
    trt, seg, x = FakeTorchTensorRT(), torch.nn.Linear(4, 4), torch.zeros(1, 4)
    with caplog.at_level(logging.INFO):
        first = _cache(tmp_path, trt)
        assert first.get_or_build(0, seg, x) is seg
    assert trt.compiled == 1 and 0 in first.build_seconds
    assert any('built TensorRT engine for segment 0' in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        second = _cache(tmp_path, trt)
        second.get_or_build(0, seg, x)
    assert trt.compiled == 1 and second.loaded_from_cache[0]
    assert any('loaded from cache' in r.getMessage() for r in caplog.records)
    meta = json.loads(next(tmp_path.rglob('segment0-*.json')).read_text())
    assert meta['key_fields']['tensorrt'] == '10.0' and meta['key_fields']['gpu'] == 'Fake GPU'


def test_key_covers_gpu_versions_and_precision(tmp_path):
    trt = FakeTorchTensorRT()
    keys = {_cache(tmp_path, trt).key, _cache(tmp_path, trt, precision='fp32').key,
            _cache(tmp_path, trt, gpu='Other GPU').key,
            _cache(tmp_path, trt, trt_version='10.1').key,
            _cache(tmp_path, FakeTorchTensorRT('2.14.0')).key}
    assert len(keys) == 5


def test_corrupt_engine_is_rebuilt_with_a_warning(tmp_path, caplog):
    trt, seg, x = FakeTorchTensorRT(), torch.nn.Linear(4, 4), torch.zeros(1, 4)
    _cache(tmp_path, trt).get_or_build(0, seg, x)
    engine = next(tmp_path.rglob('segment0-*.ep'))
    engine.write_text('truncated')
    with caplog.at_level(logging.WARNING):
        _cache(tmp_path, trt).get_or_build(0, seg, x)
    assert trt.compiled == 2
    assert any('corrupt or unusable' in r.getMessage() and r.levelno == logging.WARNING
               for r in caplog.records)


def test_stale_engines_are_removed_with_a_warning(tmp_path, caplog):
    trt, seg, x = FakeTorchTensorRT(), torch.nn.Linear(4, 4), torch.zeros(1, 4)
    _cache(tmp_path, trt, trt_version='10.0').get_or_build(0, seg, x)
    with caplog.at_level(logging.WARNING):
        upgraded = _cache(tmp_path, trt, trt_version='10.3')
    assert any('stale TensorRT engine' in r.getMessage() and "'10.0', '10.3'" in r.getMessage()
               for r in caplog.records)
    assert not list(tmp_path.rglob('segment0-*.ep'))
    upgraded.get_or_build(0, seg, x)
    assert trt.compiled == 2 and len(list(tmp_path.rglob('segment0-*.ep'))) == 1


def test_unloadable_engine_fails_its_probe_and_is_rebuilt(tmp_path):
    trt, seg, x = FakeTorchTensorRT(), torch.nn.Linear(4, 4), torch.zeros(1, 4)
    _cache(tmp_path, trt).get_or_build(0, seg, x)
    trt._saved.clear()  # e.g. an engine serialized by an incompatible runtime
    rebuilt = _cache(tmp_path, trt).get_or_build(0, seg, x)
    assert rebuilt is seg and trt.compiled == 2


@pytest.mark.parametrize('bad_meta', ['{not json', '{"key_fields": {}, "sha256": "0"}'])
def test_damaged_metadata_is_treated_as_corrupt(tmp_path, bad_meta):
    trt, seg, x = FakeTorchTensorRT(), torch.nn.Linear(4, 4), torch.zeros(1, 4)
    _cache(tmp_path, trt).get_or_build(0, seg, x)
    next(tmp_path.rglob('segment0-*.json')).write_text(bad_meta)
    _cache(tmp_path, trt).get_or_build(0, seg, x)
    assert trt.compiled == 2
