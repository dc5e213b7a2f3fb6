# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
``gfde-train --step split`` on a tiny run: both tails, the bundle, and config errors.

The tiny run of test_training_pipeline.py (16 px grey images, 3 classes, a 2-block student and
an untrained-ImageNet-free EfficientNet teacher at 32 px) trains in seconds; the split step then
runs two optimiser steps per tail.
"""

import json

from gfde_perception.cli.train import main
from gfde_perception.errors import ConfigError
from gfde_perception.runtime.split import SplitRobot, SplitServer
from gfde_perception.split_bundle import load_split_bundle
from gfde_perception.training.split import SplitStepConfig
import numpy as np
import pytest
from test_training_pipeline import _tiny_config, EFFNET_TEACHER
import torch

SPLIT_STEPS = ['--set', 'split.optim.max_steps=2', '--set', 'split.optim.batch_size=32',
               '--set', 'split.bottleneck={channels: 4, bits: 4, hidden: 8}']


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('split_run')
    config = _tiny_config(tmp, EFFNET_TEACHER)
    assert main(['--config', str(config), '--no-progress']) == 0
    return tmp, config


@pytest.mark.parametrize('tail, extra', [('student', []),
                                         ('teacher', ['--set', 'split.train_head=true'])])
def test_split_step_writes_a_split_bundle_both_sides_can_serve(tiny_run, tail, extra, capsys):
    tmp, config = tiny_run
    out = tmp / f'{tail}.gfde'
    argv = ['--config', str(config), '--step', 'split', '--no-progress',
            '--set', f'split.tail={tail}', '--set', f'split.bundle={out}'] + SPLIT_STEPS + extra
    capsys.readouterr()
    assert main(argv) == 0
    # One readable line for the one epoch (two steps).
    epochs = [line for line in capsys.readouterr().out.splitlines() if 'epoch' in line]
    assert len(epochs) == 1 and epochs[0].startswith('split epoch 1/1: loss '), epochs
    metrics = json.loads((tmp / 'run' / 'split_metrics.json').read_text())
    test = metrics['test']
    for key in ('split_with_exits', 'split_without_exits', 'student_final',
                'student_with_exits', 'offload_rate'):
        assert 0.0 <= test[key] <= 1.0
    assert metrics['bytes_per_frame'] == 4 * 4 * 4 * 4 // 8  # 4 channels, 4x4 grid, 4 bits
    bundle = load_split_bundle(out)
    assert bundle.config.tail == tail and bundle.labels == ('across', 'blob', 'down')
    assert len(bundle.gate.thresholds) == 1
    assert bundle.gate.thresholds == tuple(metrics['gate']['thresholds'])
    if tail == 'teacher':
        assert bundle.config.tail_features.layout == 'nchw'
        assert all(v.dtype == torch.float16 for k, v in bundle.state_dict.items()
                   if k.startswith('teacher_tail.') and v.is_floating_point())
    image = np.random.default_rng(0).integers(0, 256, (16, 16), dtype=np.uint8)
    outcome = SplitRobot(bundle, thresholds=(1.0,)).process(image)
    assert SplitServer(bundle).process(outcome.packet).answered_by == 'server'


def test_split_step_config_errors_name_the_problem():
    with pytest.raises(ConfigError, match='tail'):
        SplitStepConfig.from_dict({'tail': 'cloud'})
    with pytest.raises(ConfigError, match='unknown'):
        SplitStepConfig.from_dict({'chanels': 4})
    with pytest.raises(ConfigError, match='bits'):
        SplitStepConfig.from_dict({'bottleneck': {'bits': 12}})
    with pytest.raises(ConfigError, match='augmentation'):
        SplitStepConfig.from_dict({'tail': 'teacher', 'optim': {'augment': {'hflip': 0.5}}})
    with pytest.raises(ConfigError, match='teacher tail only'):
        SplitStepConfig.from_dict({'train_head': True})
