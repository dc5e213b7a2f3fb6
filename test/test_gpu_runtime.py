# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
GPU backends (CUDA torch, torch-tensorrt) against the CPU reference; skipped without CUDA.

Run on a CUDA machine with ``pytest -m gpu test/test_gpu_runtime.py -s``; the last test prints
TensorRT vs eager latency per segment (also ``tools/bench_runtime.py --segments``).
"""

from conftest import tool_module
from gfde_perception.runtime import Classifier, FinalExitPolicy, RuntimeConfig, ThresholdPolicy
import numpy as np
import pytest
from runtime_fixtures import make_tiny_bundle, random_images
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(),
                       reason=f'needs a CUDA device; torch {torch.__version__} sees none'),
]


@pytest.fixture(scope='module')
def bundle(tmp_path_factory):
    return make_tiny_bundle(tmp_path_factory.mktemp('gpu'))


@pytest.fixture(scope='module')
def images():
    return random_images(24, seed=5)


def _config(tmp_path, **kw):
    base = {'engine_cache_dir': str(tmp_path), 'warmup': 2, 'measure_iters': 3,
            'energy': 'none'}
    base.update(kw)
    return RuntimeConfig(**base)


def _results(bundle, config, images, policy):
    with Classifier(bundle, config, policy) as clf:
        return clf.backend, [clf.classify(im) for im in images]


def test_cuda_fp32_matches_cpu(bundle, images, tmp_path):
    _, cpu = _results(bundle, _config(tmp_path, backend='torch'), images, ThresholdPolicy())
    name, gpu = _results(bundle, _config(tmp_path, backend='cuda', precision='fp32'), images,
                         ThresholdPolicy())
    assert name == 'cuda'
    assert [r.class_id for r in cpu] == [r.class_id for r in gpu]
    assert [r.exit_index for r in cpu] == [r.exit_index for r in gpu]
    for a, b in zip(cpu, gpu):
        assert a.gate_confidence == pytest.approx(b.gate_confidence, abs=1e-3)


def test_cuda_fp16_agrees_with_cpu_at_the_final_exit(bundle, images, tmp_path):
    _, cpu = _results(bundle, _config(tmp_path, backend='torch'), images, FinalExitPolicy())
    name, gpu = _results(bundle, _config(tmp_path, backend='cuda'), images, FinalExitPolicy())
    assert name == 'cuda-fp16'
    agree = np.mean([a.class_id == b.class_id for a, b in zip(cpu, gpu)])
    assert agree >= 0.9
    for a, b in zip(cpu, gpu):
        assert a.score == pytest.approx(b.score, abs=2e-2)


def test_speculation_never_changes_a_prediction_on_cuda(bundle, images, tmp_path):
    runs = {}
    for schedule in ('speculative', 'sequential'):
        _, runs[schedule] = _results(
            bundle, _config(tmp_path, backend='cuda', precision='fp32', schedule=schedule),
            images, ThresholdPolicy((0.5, 0.5, 0.5)))
    for a, b in zip(runs['speculative'], runs['sequential']):
        assert (a.class_id, a.exit_index, a.gate_confidence) == \
            (b.class_id, b.exit_index, b.gate_confidence)


def test_tensorrt_builds_caches_and_matches_cpu(bundle, images, tmp_path):
    pytest.importorskip('torch_tensorrt', reason='torch-tensorrt is not installed')
    config = _config(tmp_path, backend='tensorrt', precision='fp32')
    with Classifier(bundle, config, FinalExitPolicy()) as clf:
        if clf.backend != 'tensorrt-fp32':
            pytest.fail(f'TensorRT did not load: {clf.backend_reason}')
        assert not any(clf._backend.cache.loaded_from_cache.values())
        trt = [clf.classify(im) for im in images]
    with Classifier(bundle, config, FinalExitPolicy()) as clf:
        assert all(clf._backend.cache.loaded_from_cache.values())  # a restart reuses engines
    _, cpu = _results(bundle, _config(tmp_path, backend='torch'), images, FinalExitPolicy())
    assert [r.class_id for r in cpu] == [r.class_id for r in trt]


@pytest.mark.benchmark
def test_segment_latency_tensorrt_vs_eager(bundle, tmp_path):
    pytest.importorskip('torch_tensorrt', reason='torch-tensorrt is not installed')
    table = tool_module('bench_runtime').segment_table(
        bundle, ('torch', 'cuda', 'tensorrt'), tmp_path, iters=50)
    print(table)  # the figures, for the person running it; not judged here
    lines = table.splitlines()
    # Every backend loaded (a silent fall-back would drop its column) and timed every segment.
    for name in ('torch-cpu', 'cuda', 'tensorrt'):
        assert name in lines[0], lines[0]
    assert len(lines) == 1 + bundle.config.num_exits + 1  # header, segments, total
    assert 'nan' not in table
