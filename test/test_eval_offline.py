# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
``gfde-eval`` offline, end to end.

Real Fashion-MNIST frames in bags of both storage formats, tiny bundles and a tiny torch teacher
side by side, report figures checked against a direct computation from the per-frame records,
plots, write-back and error paths.
"""

import json

from gfde_perception import recording
from gfde_perception.cli.evaluate import main
from gfde_perception.evaluation.records import EvaluationRun
from gfde_perception.recording import make_bag, MakeBagConfig
import numpy as np
import pytest
from runtime_fixtures import make_tiny_bundle

FMNIST = '/usr/share/datasets/fashion-mnist'
FRAMES = 16


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    """Build a 10-class grey tiny bundle, a tiny saved teacher and Fashion-MNIST recording."""
    import torch

    from gfde_perception.preprocessing import PreprocessSpec
    from gfde_perception.training.data import load_fashion_mnist
    from gfde_perception.bundle import Bundle, save_bundle
    from gfde_perception.models import build_model

    root = tmp_path_factory.mktemp('eval')
    bundle = make_tiny_bundle(root, gray=True, num_classes=10, img_size=16)
    data = load_fashion_mnist('test', FMNIST)
    images, labels = np.asarray(data.images[:FRAMES]), [int(v) for v in data.labels[:FRAMES]]
    paths = {}
    for storage in ('mcap', 'sqlite3'):
        paths[storage] = root / f'bag_{storage}'
        # Int32 labels: the tiny bundle's classes are class0..class9, not Fashion names.
        make_bag(paths[storage], images, labels, bundle.labels,
                 MakeBagConfig(storage=storage, label_type='int32', encoding='mono8'))
    paths['unlabelled'] = root / 'bag_unlabelled'
    make_bag(paths['unlabelled'], images, None, bundle.labels,
             MakeBagConfig(label_type='none', label_topic='', encoding='jpeg'))
    # The teacher is an ordinary bundle without early exits, like every teacher gfde-train saves.
    torch.manual_seed(1)
    teacher = build_model('gfnet-edge-32', img_size=16, patch_size=4, in_chans=1, num_classes=10,
                          embed_dim=16, depth=2, exit_blocks=()).eval()
    spec = PreprocessSpec(input_size=(16, 16), channel_order='gray', mean=(0.5,), std=(0.25,))
    save_bundle(Bundle.from_model(teacher, 'tiny-teacher', spec, bundle.labels),
                root / 'teacher.gfde')
    return {'root': root, 'bundle': root / 'tiny.gfde', 'teacher': root / 'teacher.gfde',
            'labels': labels, 'bags': paths}


def _eval(setup, bag, out, *extra):
    b = setup['bundle']
    argv = [str(bag), '--out', str(out), '--quiet', '--warmup', '2', '--threads', '1',
            '--schedule', 'sequential', '--runtime-warmup', '1',
            '--config', f'teacher=teacher:{setup["teacher"]}',
            '--config', f'full=bundle:{b}@final', '--config', f'gfde=bundle:{b}',
            '--config', f'exit0=bundle:{b}@force=0', *extra]
    return main(argv)


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_end_to_end_report_matches_direct_computation(setup, tmp_path, storage):
    out = tmp_path / 'out'
    rc = _eval(setup, setup['bags'][storage], out, '--label-topic', '/camera/label',
               '--primary', 'gfde', '--role', 'teacher=teacher', '--role', 'gfde=gfde',
               '--role', 'no_exits=full', '--write-bag', str(tmp_path / 'results'))
    assert rc == 0
    report = json.loads((out / 'report.json').read_text())
    run = EvaluationRun.load(out / 'run.json')
    labels = np.asarray(setup['labels'])
    assert run.labels == setup['labels'] and run.frames == FRAMES
    for key in ('frames', 'accuracy', 'latency_ms', 'exit_histogram', 'energy'):
        assert key in report
    summaries = {s['name']: s for s in report['configurations']}
    assert list(summaries) == ['teacher', 'full', 'gfde', 'exit0']
    for name, s in summaries.items():
        rec = run.configuration(name)
        pred = np.asarray(rec.class_id)
        lat = np.asarray(rec.latency_ms)
        assert s['frames'] == FRAMES
        assert s['accuracy'] == pytest.approx(np.mean(pred == labels))
        for p in (50, 90, 99):
            assert s['latency_ms'][f'p{p}'] == pytest.approx(np.percentile(lat, p))
        assert s['latency_ms']['mean'] == pytest.approx(lat.mean())
        counts = np.bincount(rec.exit_index, minlength=rec.num_exits).tolist()
        assert s['exit_histogram']['counts'] == counts
        matrix = np.zeros((10, 10), int)
        np.add.at(matrix, (labels, pred), 1)
        assert s['confusion_matrix'] == matrix.tolist()
        assert s['energy']['measured'] is False and s['energy']['joules_per_frame'] is None
    head = summaries['gfde']
    assert report['accuracy'] == head['accuracy'] and report['latency_ms'] == head['latency_ms']
    assert summaries['full']['exit_histogram']['counts'] == [0, 0, 0, FRAMES]
    assert summaries['exit0']['exit_histogram']['counts'] == [FRAMES, 0, 0, 0]
    assert summaries['teacher']['exit_histogram']['counts'] == [FRAMES]
    # Ratios come from the same run's means.
    cmp = next(c for c in report['comparisons']
               if c['baseline'] == 'teacher' and c['candidate'] == 'gfde')
    t_mean = np.mean(run.configuration('teacher').latency_ms)
    g_mean = np.mean(run.configuration('gfde').latency_ms)
    assert cmp['latency_reduction_pct'] == pytest.approx(100 * (1 - g_mean / t_mean))
    assert cmp['accuracy_loss_points'] == pytest.approx(
        100 * (summaries['teacher']['accuracy'] - head['accuracy']))
    assert cmp['energy_reduction_pct'] is None
    # The simulated operating point of the sweep reproduces what the runtime did.
    curve = head['tradeoff']
    assert curve['operating_point']['accuracy'] == pytest.approx(head['accuracy'])
    assert curve['operating_point']['blocks_fraction'] == pytest.approx(head['blocks_fraction'])
    assert curve['per_exit_accuracy'][0] == pytest.approx(summaries['exit0']['accuracy'])
    assert curve['per_exit_accuracy'][-1] == pytest.approx(summaries['full']['accuracy'])
    forced = [p for p in curve['curve'] if p['threshold'] == 0.0][0]
    assert forced['exit_histogram'] == [FRAMES, 0, 0, 0]
    # Plots are real PNGs of a sensible size.
    import matplotlib.image
    assert report['plots'] == ['latency.png', 'exit_histogram.png', 'tradeoff.png',
                               'confusion.png']
    for name in report['plots']:
        pixels = matplotlib.image.imread(out / name)
        assert pixels.shape[0] > 200 and pixels.shape[1] > 300 and pixels.std() > 0.01
    assert '| gfde | bundle / calibrated |' in (out / 'report.md').read_text()
    # Results written back as a bag: frames plus one Classification topic per configuration.
    topics = recording.list_topics(tmp_path / 'results')
    assert topics['/camera/image_raw'].count == FRAMES
    assert topics['/gfde_eval/gfde/classification'].count == FRAMES
    assert topics['/gfde_eval/gfde/classification'].msgtype == recording.CLASSIFICATION_TYPE
    written = _read_messages(tmp_path / 'results', '/gfde_eval/gfde/classification')
    gfde_records = run.configuration('gfde')
    # The runtime's block counts, not the share in thousandths.
    assert [(m.blocks_run, m.blocks_total) for m in written] == [
        (b, 4) for b in gfde_records.blocks_run]
    assert [m.class_id for m in written] == gfde_records.class_id
    assert {m.policy for m in written} == {'calibrated'}
    assert report['paper']['latency_reduction_pct'] == 38.87


def _read_messages(bag, topic) -> list:
    # rosbags' own reader, independent of gfde_perception.recording.
    from rosbags.rosbag2 import Reader

    store = recording.make_typestore()
    with Reader(bag) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        return [store.deserialize_cdr(raw, c.msgtype)
                for c, _, raw in reader.messages(connections=conns)]


def test_report_regenerates_from_a_saved_run(setup, tmp_path):
    first = tmp_path / 'first'
    assert _eval(setup, setup['bags']['mcap'], first, '--label-topic', '/camera/label',
                 '--no-plots') == 0
    again = tmp_path / 'again'
    assert main(['--from-run', str(first / 'run.json'), '--out', str(again), '--no-plots',
                 '--quiet']) == 0
    a = json.loads((first / 'report.json').read_text())
    b = json.loads((again / 'report.json').read_text())
    assert a == b


def test_unlabelled_bag_reports_agreement_with_reference(setup, tmp_path, capsys):
    out = tmp_path / 'out'
    assert _eval(setup, setup['bags']['unlabelled'], out, '--no-plots') == 2
    assert 'name a --reference' in capsys.readouterr().err
    assert _eval(setup, setup['bags']['unlabelled'], out, '--reference', 'full',
                 '--no-plots') == 0
    report = json.loads((out / 'report.json').read_text())
    run = EvaluationRun.load(out / 'run.json')
    assert report['accuracy'] is None and run.labels is None
    ref = np.asarray(run.configuration('full').class_id)
    for s in report['configurations']:
        pred = np.asarray(run.configuration(s['name']).class_id)
        assert s['agreement']['rate'] == pytest.approx(np.mean(pred == ref))
    assert report['configurations'][1]['agreement']['rate'] == 1.0
    gfde = next(s for s in report['configurations'] if s['name'] == 'gfde')
    assert gfde['tradeoff']['target'] == 'agreement with full'


def test_cli_errors_are_clear(setup, tmp_path, capsys):
    bag = setup['bags']['mcap']
    assert main([str(bag), '--image-topic', '/cam', '--out', str(tmp_path), '--quiet',
                 '--config', f'gfde=bundle:{setup["bundle"]}']) == 2
    assert "'/cam' is not in the bag; available topics: /camera/image_raw" in \
        capsys.readouterr().err
    assert main([str(bag), '--out', str(tmp_path), '--config', 'gfde:oops']) == 2
    assert 'NAME=KIND:PATH' in capsys.readouterr().err
    assert main([str(bag), '--out', str(tmp_path), '--config',
                 f'gfde=bundle:{setup["bundle"]}', '--label-topic', '/camera/label',
                 '--reference', 'nobody', '--no-plots', '--quiet']) == 2
    assert "'nobody' is not in this run" in capsys.readouterr().err


class _Recorder:
    """A configuration that only records which frame it was asked about, and when."""

    def __init__(self, name, log):
        from types import SimpleNamespace

        from gfde_perception.evaluation.configurations import Prediction
        self.spec = SimpleNamespace(name=name)
        self._log = log
        self._prediction = Prediction(class_id=0, score=1.0)

    def predict(self, image):
        self._log.append((self.spec.name, int(image[0, 0])))
        return self._prediction

    def describe(self):
        return {'name': self.spec.name}


def test_rotating_blocks_time_every_frame_once_per_configuration_in_blocks():
    from gfde_perception.evaluation.offline import run_offline

    frames = [(np.full((2, 2), i, np.uint8), None, i) for i in range(7)]
    log = []
    confs = [_Recorder(n, log) for n in ('a', 'b', 'c')]
    run = run_offline(frames, confs, warmup=0, order='rotating-blocks', block=3, progress=False)
    assert [len(r.latency_ms) for r in run.configurations] == [7, 7, 7]
    for name in 'abc':
        assert [i for n, i in log if n == name] == list(range(7))
    # Blocks of 3 frames per configuration; the order of configurations rotates per block.
    runs = [log[i][0] for i in range(0, 21) if i == 0 or log[i][0] != log[i - 1][0]]
    assert runs == ['a', 'b', 'c', 'b', 'c', 'a', 'c', 'a', 'b']
