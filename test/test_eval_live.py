# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
``gfde-eval --mode live``: frames published over real DDS into real classifier nodes.

The node runs as a subprocess on this run's ROS domain (conftest sets ``ROS_DOMAIN_ID`` and
loopback discovery); its answers must equal the offline replay's on the same frames.
"""

import json

from gfde_perception.cli.evaluate import main
from gfde_perception.evaluation.records import EvaluationRun, MISSING
from gfde_perception.recording import make_bag, MakeBagConfig
import numpy as np
import pytest
from runtime_fixtures import make_tiny_bundle

FMNIST = '/usr/share/datasets/fashion-mnist'
FRAMES = 12
COMMON = ['--quiet', '--threads', '1', '--schedule', 'sequential', '--runtime-warmup', '1',
          '--backend', 'torch', '--no-sweep']


@pytest.mark.ros
@pytest.mark.parametrize('storage,encoding', [('mcap', 'mono8'), ('sqlite3', 'png')])
def test_live_replay_matches_offline(tmp_path, ros_env, storage, encoding):
    from gfde_perception.training.data import load_fashion_mnist

    bundle = make_tiny_bundle(tmp_path, gray=True, num_classes=10, img_size=16)
    data = load_fashion_mnist('test', FMNIST)
    labels = [int(v) for v in data.labels[:FRAMES]]
    make_bag(tmp_path / 'bag', np.asarray(data.images[:FRAMES]), labels, bundle.labels,
             MakeBagConfig(storage=storage, encoding=encoding, label_type='int32'))
    configs = ['--config', f'gfde=bundle:{tmp_path / "tiny.gfde"}',
               '--config', f'exit0=bundle:{tmp_path / "tiny.gfde"}@force=0']
    bag = str(tmp_path / 'bag')
    assert main([bag, '--label-topic', '/camera/label', '--out', str(tmp_path / 'offline'),
                 '--no-plots', *COMMON, *configs]) == 0
    assert main([bag, '--label-topic', '/camera/label', '--out', str(tmp_path / 'live'),
                 '--mode', 'live', '--rate', '10', '--result-timeout', '10', *COMMON,
                 *configs]) == 0
    live = json.loads((tmp_path / 'live' / 'report.json').read_text())
    assert live['mode'] == 'live' and live['frames'] + live['configurations'][0]['dropped'] \
        == FRAMES
    off_run = EvaluationRun.load(tmp_path / 'offline' / 'run.json')
    live_run = EvaluationRun.load(tmp_path / 'live' / 'run.json')
    assert live_run.stamps_ns == off_run.stamps_ns and live_run.labels == labels
    for off, on in zip(off_run.configurations, live_run.configurations):
        answered = [i for i, c in enumerate(on.class_id) if c != MISSING]
        # The node drops a frame only when a newer one superseded it (its real-time policy);
        # on a loaded 2-core machine a few may go, but most must arrive.
        assert len(answered) >= FRAMES // 2
        assert [on.class_id[i] for i in answered] == [off.class_id[i] for i in answered]
        assert [on.exit_index[i] for i in answered] == [off.exit_index[i] for i in answered]
        assert [on.blocks_run[i] for i in answered] == [off.blocks_run[i] for i in answered]
        # The node's own time is part of the round trip measured here.
        assert all(on.node_total_ms[i] <= on.latency_ms[i] for i in answered)
    for summary in live['configurations']:
        assert summary['frames'] + summary['dropped'] == FRAMES
    for name in live['plots']:
        assert (tmp_path / 'live' / name).stat().st_size > 5000
    # report.md says how many frames each node dropped (0 too) and the threads the nodes had.
    markdown = (tmp_path / 'live' / 'report.md').read_text()
    table = markdown.split('## Configurations')[1].split('\n\n')[1]
    assert table.splitlines()[0].endswith('| dropped |')
    for row, summary in zip(table.splitlines()[2:], live['configurations']):
        assert row.endswith(f"| {summary['dropped']} of {FRAMES} |")
    assert ', 1 thread,' in markdown


@pytest.mark.ros
def test_live_mode_refuses_teachers(tmp_path, capsys):
    assert main([str(tmp_path), '--mode', 'live', '--config', 'teacher=teacher:t.safetensors',
                 '--out', str(tmp_path / 'o'), '--quiet']) == 2
    assert 'evaluate it offline' in capsys.readouterr().err
