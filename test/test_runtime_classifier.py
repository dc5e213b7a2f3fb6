# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""Classifier on a tiny GFDE: backends agree, thresholds, speculation, fallback, steady state."""

import json
import logging
import sys
import threading
import time
import tracemalloc

from gfde_perception.bundle import save_bundle
from gfde_perception.errors import BackendError, ConfigError, ImageError
from gfde_perception.gating import confidence
from gfde_perception.preprocessing import preprocess
from gfde_perception.runtime import (
    BudgetPolicy, Classifier, EnergyMeter, FinalExitPolicy, ForceExitPolicy, RuntimeConfig,
    ThresholdPolicy)
from gfde_perception.runtime.backends import CHOICE_FILE
from gfde_perception.runtime.energy import EnergySource
import numpy as np
import pytest
from runtime_fixtures import make_tiny_bundle, random_images
import torch

N_IMAGES = 24


@pytest.fixture(scope='module')
def bundle(tmp_path_factory):
    return make_tiny_bundle(tmp_path_factory.mktemp('bundle'))


@pytest.fixture(scope='module')
def images():
    return random_images(N_IMAGES, seed=1)


def _config(tmp_path, **kw):
    base = {'engine_cache_dir': str(tmp_path), 'threads': 1, 'warmup': 2, 'measure_iters': 3,
            'energy': 'none'}
    base.update(kw)
    return RuntimeConfig(**base)


def _reference(bundle, image):
    """Logits of every exit from the plain model (the ground truth the runtime must match)."""
    model = bundle.build_model()
    x = torch.from_numpy(preprocess(image, bundle.preprocessing))[None]
    with torch.no_grad():
        out = model(x)
    return [e[0].numpy() for e in out.exit_logits] + [out.logits[0].numpy()]


def _run(clf, images):
    return [clf.classify(im) for im in images]


def test_result_matches_the_model_at_every_exit(bundle, images, tmp_path):
    with Classifier(bundle, _config(tmp_path, backend='torch')) as clf:
        for k in range(clf.num_exits):
            clf.set_policy(ForceExitPolicy(k))
            for image in images[:6]:
                result = clf.classify(image)
                logits = _reference(bundle, image)
                probs = np.exp(logits[k] - logits[k].max())
                probs /= probs.sum()
                assert result.exit_index == k
                assert result.class_id == int(np.argmax(logits[k]))
                assert result.score == pytest.approx(float(probs.max()), abs=1e-5)
                expected = [confidence(logits[j], 'max_softmax') for j in range(k + 1)]
                assert result.gate_confidence == pytest.approx(expected, abs=1e-5)


def test_every_cpu_backend_predicts_the_same(bundle, images, tmp_path):
    outputs = {}
    for backend in ('torch', 'onnxruntime'):
        with Classifier(bundle, _config(tmp_path, backend=backend)) as clf:
            assert clf.backend == f'{backend}-cpu' and clf.backend_reason == \
                'forced by configuration'
            for policy in (ThresholdPolicy(), FinalExitPolicy()):
                clf.set_policy(policy)
                outputs[backend, policy.name] = _run(clf, images)
    for name in ('calibrated', 'final'):
        a, b = outputs['torch', name], outputs['onnxruntime', name]
        assert [r.class_id for r in a] == [r.class_id for r in b]
        assert [r.exit_index for r in a] == [r.exit_index for r in b]
        for ra, rb in zip(a, b):
            assert ra.gate_confidence == pytest.approx(rb.gate_confidence, abs=1e-4)
            assert [s.score for s in ra.top_k] == pytest.approx([s.score for s in rb.top_k],
                                                                abs=1e-4)
    # The bundle thresholds must really mix exits, or the comparison above proves little.
    assert len({r.exit_index for r in outputs['torch', 'calibrated']}) > 1


def test_torch_compile_backend_predicts_the_same(bundle, images, tmp_path):
    with Classifier(bundle, _config(tmp_path, backend='torch')) as clf:
        eager = _run(clf, images[:8])
    with Classifier(bundle, _config(tmp_path, backend='torch-compile')) as clf:
        if clf.backend != 'torch-compile-cpu':
            pytest.fail(f'torch.compile did not load here: {clf.backend_reason}')
        compiled = _run(clf, images[:8])
    assert [r.class_id for r in eager] == [r.class_id for r in compiled]
    assert [r.exit_index for r in eager] == [r.exit_index for r in compiled]


def test_thresholds_zero_and_one_give_first_and_final_exit(bundle, images, tmp_path):
    with Classifier(bundle, _config(tmp_path, backend='torch')) as clf:
        clf.set_policy(ThresholdPolicy((0.0, 0.0, 0.0)))
        first = _run(clf, images)
        clf.set_policy(ThresholdPolicy((1.0, 1.0, 1.0)))
        final = _run(clf, images)
        clf.set_policy(FinalExitPolicy())
        final_policy = _run(clf, images)
    assert all(r.exit_index == 0 and r.blocks_run == 1 for r in first)
    assert all(len(r.gate_confidence) == 1 and r.speculative_segments == 0 for r in first)
    assert all(r.exit_index == 3 and r.blocks_run == r.blocks_total == 4 for r in final)
    assert [r.class_id for r in final] == [r.class_id for r in final_policy]
    assert all(r.policy == 'final' and r.gate_threshold == (1.0, 1.0, 1.0)
               for r in final_policy)
    assert all(len(r.gate_confidence) == 4 for r in final)


@pytest.mark.parametrize('backend', ['torch', 'onnxruntime'])
def test_speculation_never_changes_a_prediction(bundle, images, tmp_path, backend):
    runs = {}
    for schedule in ('speculative', 'sequential'):
        with Classifier(bundle, _config(tmp_path, backend=backend, schedule=schedule)) as clf:
            assert clf.schedule == schedule
            runs[schedule] = []
            for thresholds in ((0.5, 0.5, 0.5), (0.7, 0.3, 0.9), (0.0, 1.0, 0.5)):
                clf.set_policy(ThresholdPolicy(thresholds))
                runs[schedule] += _run(clf, images)
    spec, seq = runs['speculative'], runs['sequential']
    for a, b in zip(spec, seq):
        assert (a.class_id, a.exit_index, a.top_k, a.gate_confidence, a.gate_threshold) == \
            (b.class_id, b.exit_index, b.top_k, b.gate_confidence, b.gate_threshold)
        assert b.speculative_segments == 0
        # A segment past the exit was computed and dropped exactly when speculation could run.
        early = a.exit_index < a.num_exits - 1
        assert a.speculative_segments == (1 if early and a.gate_threshold[-1] > 0 else 0)
        assert len(a.timings.segment_ms) == a.exit_index + 1 + a.speculative_segments
        assert len(a.timings.exit_head_ms) == a.exit_index + 1
    assert any(r.speculative_segments for r in spec)


def test_inline_exit_heads_predict_the_same(bundle, images, tmp_path):
    runs = {}
    for workers in (0, 2):
        config = _config(tmp_path, backend='torch', exit_workers=workers, schedule='sequential')
        with Classifier(bundle, config, ThresholdPolicy((0.5, 0.5, 0.5))) as clf:
            runs[workers] = _run(clf, images)
            if workers == 0:
                assert clf.schedule == 'sequential' and 'inline' in clf.schedule_reason
    for a, b in zip(runs[0], runs[2]):
        assert (a.class_id, a.exit_index, a.gate_confidence) == \
            (b.class_id, b.exit_index, b.gate_confidence)
        assert a.exit_device == 'cpu-inline' and b.exit_device == 'cpu-worker'
        assert a.speculative_segments == 0


def test_auto_schedule_times_three_plans_and_keeps_predictions(bundle, images, tmp_path):
    thresholds = ThresholdPolicy((0.5, 0.5, 0.5))
    with Classifier(bundle, _config(tmp_path, backend='torch', schedule='sequential',
                                    exit_workers=0), thresholds) as clf:
        reference = _run(clf, images)
    with Classifier(bundle, _config(tmp_path, backend='torch', schedule='auto'),
                    thresholds) as clf:
        reason = clf.schedule_reason
        for plan in ('speculative', 'sequential', 'inline heads'):
            assert f'ms {plan}' in reason
        chosen = reason.split(':')[0]
        assert chosen in ('speculative', 'sequential', 'inline heads')
        assert clf.schedule == ('speculative' if chosen == 'speculative' else 'sequential')
        assert clf.exit_device == ('cpu-inline' if chosen == 'inline heads' else 'cpu-worker')
        results = _run(clf, images)
    assert all(r.exit_device == clf.exit_device for r in results)
    for a, b in zip(results, reference):
        assert (a.class_id, a.exit_index, a.gate_confidence) == \
            (b.class_id, b.exit_index, b.gate_confidence)
    # Start-up time: the next load on this host reads the decision back instead of measuring.
    with Classifier(bundle, _config(tmp_path, backend='torch', schedule='auto'),
                    thresholds) as again:
        assert again.schedule_reason.startswith('cached decision')
        assert chosen in again.schedule_reason
        assert (again.schedule, again.exit_device) == (clf.schedule, clf.exit_device)
        assert 'schedule' in again.load_seconds


def test_result_fields(bundle, images, tmp_path):
    config = _config(tmp_path, backend='torch', top_k=3, schedule='sequential')
    with Classifier(bundle, config) as clf:
        result = clf.classify(images[0])
        assert clf.labels == bundle.labels and clf.num_exits == 4
    assert result.num_exits == 4 and result.blocks_total == 4
    assert result.model_id == f'tiny@{bundle.checksum[:12]}'
    assert result.backend == 'torch-cpu' and result.exit_device == 'cpu-worker'
    assert result.gate_metric == 'max_softmax' and result.policy == 'calibrated'
    assert len(result.top_k) == 3 and result.top_k[0].class_id == result.class_id
    assert result.label == f'class{result.class_id}'
    scores = [s.score for s in result.top_k]
    assert scores == sorted(scores, reverse=True) and 0 < scores[0] <= 1
    assert len(result.gate_threshold) == min(result.exit_index + 1, 3)
    t = result.timings
    assert t.inference_ms >= t.preprocess_ms + sum(t.segment_ms[:result.exit_index + 1])
    assert not result.energy.measured and result.energy.source == 'none'
    assert 'disabled' in result.energy.method
    data = json.loads(json.dumps(result.to_dict()))
    assert data['energy']['joules'] is None and data['top_k'][0]['class_id'] == result.class_id


def test_onnxruntime_failure_falls_back_to_torch(bundle, images, tmp_path, monkeypatch,
                                                 caplog):
    monkeypatch.setitem(sys.modules, 'onnxruntime', None)  # import onnxruntime -> ImportError
    with caplog.at_level(logging.ERROR):
        with Classifier(bundle, _config(tmp_path, backend='onnxruntime')) as clf:
            assert clf.backend == 'torch-cpu'
            assert 'onnxruntime was requested but failed to load' in clf.backend_reason
            assert clf.classify(images[0]).backend == 'torch-cpu'
    assert any('onnxruntime' in r.getMessage() for r in caplog.records
               if r.levelno == logging.ERROR)


def test_gpu_backends_fall_back_without_cuda(bundle, images, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    for forced in ('tensorrt', 'cuda'):
        with Classifier(bundle, _config(tmp_path, backend=forced)) as clf:
            assert clf.backend == 'torch-cpu'
            assert 'needs CUDA' in clf.backend_reason
            assert clf.classify(images[0]).class_id >= 0


def test_engine_build_error_falls_back(bundle, tmp_path, monkeypatch):
    from gfde_perception.runtime import backends

    def broken(self):
        raise MemoryError('out of memory while building')
    monkeypatch.setattr(backends.OnnxRuntimeBackend, '_load', broken)
    with Classifier(bundle, _config(tmp_path, backend='onnxruntime')) as clf:
        assert clf.backend == 'torch-cpu'
        assert 'MemoryError: out of memory' in clf.backend_reason


def test_auto_measures_once_and_caches_the_decision(bundle, tmp_path):
    with Classifier(bundle, _config(tmp_path)) as clf:
        first = clf.backend
        assert 'measured full-backbone median' in clf.backend_reason
        assert 'torch' in clf.backend_reason and 'onnxruntime' in clf.backend_reason
    stored = json.loads((tmp_path / CHOICE_FILE).read_text())
    assert len(stored) == 1
    with Classifier(bundle, _config(tmp_path)) as clf:
        assert clf.backend == first
        assert clf.backend_reason.startswith('cached decision')


def test_cached_onnx_segments_load_without_building_the_model(
        bundle, images, tmp_path, monkeypatch):
    # Start-up time: with every segment in the cache there is nothing to export, so the
    # deployable model (built and converted only to be exported) must not be built at all.
    from gfde_perception.runtime import backends
    with Classifier(bundle, _config(tmp_path, backend='onnxruntime')) as clf:
        expected = [r.class_id for r in _run(clf, images[:4])]

    def refuse(_):
        raise RuntimeError('the deployable model was built although every segment is cached')
    monkeypatch.setattr(backends, '_deployable_model', refuse)
    with Classifier(bundle, _config(tmp_path, backend='onnxruntime')) as clf:
        assert clf.backend == 'onnxruntime-cpu', clf.backend_reason
        assert [r.class_id for r in _run(clf, images[:4])] == expected
        assert list(clf.load_seconds)[:3] == ['backend', 'exit heads', 'pool and energy counter']
        assert all(s >= 0 for s in clf.load_seconds.values())


@pytest.mark.parametrize('backend', ['torch', 'onnxruntime'])
def test_steady_state_buffers_and_memory(bundle, images, tmp_path, backend):
    config = _config(tmp_path, backend=backend, schedule='speculative', profile_window=16)
    # Only allocations made by the runtime's own code count: torch and the re module keep
    # caches that swing by kilobytes between snapshots and would drown a real leak.
    only_runtime = [tracemalloc.Filter(True, '*/gfde_perception/runtime/*')]
    growth = []
    with Classifier(bundle, config) as clf:
        buffer = clf._backend.input
        start = clf._backend.start()
        tracemalloc.start()
        try:
            # The bounded profile and one-off caches fill in the first frames; after that a
            # leak adds up window after window while noise cancels out.
            for i in range(300):
                clf.classify(images[i % len(images)])
            before = tracemalloc.take_snapshot().filter_traces(only_runtime)
            for _ in range(4):
                for i in range(200):
                    clf.classify(images[i % len(images)])
                after = tracemalloc.take_snapshot().filter_traces(only_runtime)
                growth.append(sum(d.size_diff for d in after.compare_to(before, 'filename')))
                before = after
        finally:
            tracemalloc.stop()
        assert clf._backend.input is buffer
        if backend == 'torch':
            assert clf._backend.start().data_ptr() == start.data_ptr()
        else:
            assert np.shares_memory(clf._backend.start(), buffer)
        assert len(clf.profile) == 16
    # Keeping one float per frame would add 800 x 24 B = 19 KB over the four windows (seen
    # when a leak is injected: about 23 KB; without one the sum stays within +-2 KB).
    assert sum(growth) < 8192, f'the runtime kept memory frame after frame: {growth} bytes'


def test_policy_swap_is_atomic_between_frames(bundle, images, tmp_path):
    with Classifier(bundle, _config(tmp_path, backend='torch')) as clf:
        policies = [ThresholdPolicy((0.0, 0.0, 0.0)), FinalExitPolicy()]
        stop = threading.Event()

        def swapper():
            i = 0
            while not stop.is_set() and i < 2000:
                clf.set_policy(policies[i % 2])
                i += 1
        thread = threading.Thread(target=swapper)
        thread.start()
        try:
            results = [clf.classify(images[i % len(images)]) for i in range(60)]
        finally:
            stop.set()
            thread.join()
    for r in results:
        # Each frame ran under one policy from start to end, never a mix.
        if r.policy == 'final':
            assert r.exit_index == 3 and r.gate_threshold == (1.0, 1.0, 1.0)
        else:
            assert r.exit_index == 0 and r.gate_threshold == (0.0,)


def test_bad_policy_is_refused_and_the_old_one_stays(bundle, tmp_path):
    with Classifier(bundle, _config(tmp_path, backend='torch')) as clf:
        before = clf.policy
        with pytest.raises(ConfigError, match='cannot force exit 7'):
            clf.set_policy(ForceExitPolicy(7))
        with pytest.raises(ConfigError, match='need 3 thresholds'):
            clf.set_policy(ThresholdPolicy((0.5, 0.5)))
        assert clf.policy is before


def test_any_image_size_grey_bundle_and_mlp_heads(tmp_path):
    bundle = make_tiny_bundle(tmp_path, name='grey', gray=True, exit_hidden_dim=8,
                              exit_blocks=(2,), thresholds=(0.5,))
    images = random_images(6, seed=3, size=(31, 47), gray=True)
    results = {}
    for impl in ('numpy', 'torch'):
        with Classifier(bundle, _config(tmp_path, backend='torch', head_impl=impl)) as clf:
            assert set(clf.head_impls) == {impl}
            results[impl] = _run(clf, images) + [clf.classify(np.zeros((5, 900), np.uint8))]
    for a, b in zip(results['numpy'], results['torch']):
        assert (a.class_id, a.exit_index) == (b.class_id, b.exit_index)
        assert a.gate_confidence == pytest.approx(b.gate_confidence, abs=1e-5)


def test_bad_images_raise_image_error_and_closed_classifier_refuses(bundle, tmp_path):
    clf = Classifier(bundle, _config(tmp_path, backend='torch'))
    with pytest.raises(ImageError):
        clf.classify(np.zeros((0, 4, 3), np.uint8))
    assert clf.classify(np.zeros((8, 8, 3), np.uint8)).num_exits == 4  # still running
    clf.close()
    with pytest.raises(BackendError, match='closed'):
        clf.classify(np.zeros((8, 8, 3), np.uint8))


def test_classifier_loads_a_bundle_path(bundle, tmp_path, images):
    path = tmp_path / 'tiny.gfde'
    save_bundle(bundle, path)  # the same content, so the same checksum
    with Classifier(str(path), _config(tmp_path, backend='torch', warmup=0)) as clf:
        assert clf.bundle.checksum == bundle.checksum
        assert clf.classify(images[0]).model_id.endswith(bundle.checksum[:12])
        assert list(clf.load_seconds)[0] == 'bundle'  # reading the file is timed too


class _FakeCounter(EnergySource):
    """A counter that rises at 5 W, so each frame costs energy in proportion to its time."""

    name = 'rapl'

    def energy_j(self):
        return 5.0 * time.monotonic()


def test_measured_energy_and_budget_policies_in_the_loop(bundle, images, tmp_path):
    meter = EnergyMeter(_FakeCounter(), 'rapl')
    # No idle baseline: the fake counter draws 5 W idle too, so above-baseline would be ~0.
    config = _config(tmp_path, backend='torch', schedule='sequential', energy_baseline_s=0.0)
    with Classifier(bundle, config, energy_meter=meter) as clf:
        result = clf.classify(images[0])
        assert result.energy.measured and result.energy.source == 'rapl'
        assert result.energy.joules == pytest.approx(
            5.0 * result.timings.inference_ms / 1e3, rel=0.5, abs=5e-4)
        # An unreachable latency target drives the thresholds to the lower bound; a generous
        # one keeps the most accurate setting; an energy target moves off it once measured.
        for policy, expected in (
                (BudgetPolicy(target_latency_ms=1e-6, replan_every=4, min_frames=4), 'low'),
                (BudgetPolicy(target_latency_ms=1e6, replan_every=4, min_frames=4), 'high'),
                (BudgetPolicy(target_energy_j=1e-9, replan_every=4, min_frames=4), 'low')):
            clf.set_policy(policy)
            results = [clf.classify(images[i % len(images)]) for i in range(24)]
            assert results[-1].policy == 'budget'
            if expected == 'low':
                assert policy.thresholds() == (0.0, 0.0, 0.0)
                assert results[-1].exit_index == 0
                assert 'not reachable' in policy.status
            else:
                assert policy.thresholds() == (1.0, 1.0, 1.0)
                assert results[-1].exit_index == 3
    assert meter.available  # the caller's meter is not closed by the classifier
    meter.close()
