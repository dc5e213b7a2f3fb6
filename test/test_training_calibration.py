# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""Exit-threshold calibration, the training config and the learning-rate schedule."""

from gfde_perception.errors import ConfigError
from gfde_perception.gating import first_exit
from gfde_perception.preprocessing import PreprocessSpec
from gfde_perception.training.calibration import (
    calibrate_threshold, calibrate_thresholds, cascade, cascade_report)
from gfde_perception.training.config import OptimConfig, TrainConfig
from gfde_perception.training.loop import lr_at
import numpy as np
import pytest


def test_threshold_takes_the_largest_prefix_within_budget():
    conf = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    exit_ok = np.array([1, 1, 1, 0, 0], bool)
    final_ok = np.ones(5, bool)
    t, taken = calibrate_threshold(conf, exit_ok, final_ok, budget_points=0.0)
    assert t == 0.7 and taken.tolist() == [1, 1, 1, 0, 0]
    # A 25-point budget also admits the fourth image (3/4 right vs 4/4): exactly 25 points.
    t, taken = calibrate_threshold(conf, exit_ok, final_ok, budget_points=25.0)
    assert t == 0.6 and taken.sum() == 4


def test_threshold_never_splits_ties_and_respects_min_samples():
    conf = np.array([0.9, 0.9, 0.5])
    exit_ok = np.array([1, 0, 1], bool)
    final_ok = np.ones(3, bool)
    # Taking only the first 0.9 would be within budget but a threshold cannot split a tie.
    t, taken = calibrate_threshold(conf, exit_ok, final_ok, budget_points=0.0)
    assert t == 1.0 and not taken.any()
    t, _ = calibrate_threshold(np.array([0.9, 0.8]), np.ones(2, bool), np.ones(2, bool), 0.0,
                               min_samples=3)
    assert t == 1.0


def test_exit_may_take_images_the_final_exit_gets_wrong():
    conf = np.array([0.9, 0.8])
    t, taken = calibrate_threshold(conf, np.array([0, 1], bool), np.array([0, 1], bool), 0.0)
    assert t == 0.8 and taken.all()


def _draw(rng, n):
    """Draw n images: the exit right with probability 0.8 + 0.2 * confidence, the final always."""
    conf = rng.random(n)
    return conf, rng.random(n) < 0.8 + 0.2 * conf, np.ones(n, bool)


def _true_loss_points(threshold):
    # Over confidences in [t, 1] the exit is right 0.9 + 0.1 t of the time: 10 (1 - t) points lost.
    return 10.0 * (1.0 - threshold)


def test_confidence_bound_keeps_the_budget_on_unseen_images():
    # Budget 0.5 points: the true threshold is 0.95. Calibrate 300 times on 4,000 fresh images.
    # The plain estimate overshoots the true loss most of the time (the largest exit rate whose
    # estimate fits favours lucky draws) and loses more than the budget on average; the 0.9
    # bound overshoots far less often and stays within the budget on average.
    rng = np.random.default_rng(7)
    loss = {0.5: [], 0.9: []}
    for _ in range(300):
        conf, exit_ok, final_ok = _draw(rng, 4000)
        for c in loss:
            t, _ = calibrate_threshold(conf, exit_ok, final_ok, 0.5, confidence=c)
            loss[c].append(_true_loss_points(t))
    over = {c: np.mean(np.array(v) > 0.5) for c, v in loss.items()}
    assert over[0.5] > 0.5 and np.mean(loss[0.5]) > 0.5
    assert over[0.9] < over[0.5] / 2 and np.mean(loss[0.9]) < 0.5


def test_confidence_margin_shrinks_with_more_validation_images():
    rng = np.random.default_rng(3)
    rates = []
    for n in (2000, 200000):
        conf, exit_ok, final_ok = _draw(rng, n)
        t_plain, plain = calibrate_threshold(conf, exit_ok, final_ok, 0.5)
        t_bound, bound = calibrate_threshold(conf, exit_ok, final_ok, 0.5, confidence=0.9)
        assert t_bound >= t_plain
        rates.append(bound.mean() / plain.mean())
    assert rates[0] < rates[1]  # the bound comes closer to the estimate with more images
    with pytest.raises(ConfigError, match='confidence'):
        calibrate_threshold(conf, exit_ok, final_ok, 0.5, confidence=1.0)
    with pytest.raises(ConfigError, match='confidence'):
        TrainConfig.from_dict({'exits': {'confidence': 0.3}})


def test_cascade_matches_the_runtime_gate_rule():
    rng = np.random.default_rng(0)
    confs = [rng.random(50), rng.random(50)]
    thresholds = (0.7, 0.4)
    ours = cascade(confs, None, np.zeros(50), thresholds)
    np.testing.assert_array_equal(ours, first_exit(np.stack(confs), thresholds))
    assert (cascade(confs, None, np.zeros(50), (0.0, 0.5)) == 0).all()
    assert (cascade(confs, None, np.zeros(50), (1.0, 1.0)) == 2).all()


def test_calibrated_cascade_stays_within_budget_on_calibration_data():
    rng = np.random.default_rng(1)
    n, k = 400, 5
    labels = rng.integers(0, k, n)
    final = np.where(rng.random(n) < 0.9, labels, (labels + 1) % k)
    confs, preds = [], []
    for quality in (0.6, 0.8):
        conf = rng.random(n)
        right = rng.random(n) < quality + (1 - quality) * conf  # confident = more often right
        preds.append(np.where(right, labels, (labels + 2) % k))
        confs.append(conf)
    for budget in (0.0, 1.0, 5.0):
        thresholds = calibrate_thresholds(confs, preds, final, labels, budget, min_samples=5)
        report = cascade_report(confs, preds, final, labels, thresholds,
                                exit_macs=[1.0, 2.0, 4.0])
        assert report['accuracy'] >= report['final_exit_accuracy'] - budget / 100 - 1e-9
        assert abs(sum(report['exit_rates']) - 1.0) < 1e-9
        assert report['compute_ratio'] <= 1.0
    loose = calibrate_thresholds(confs, preds, final, labels, 50.0)
    tight = calibrate_thresholds(confs, preds, final, labels, 0.0)
    assert loose[0] <= tight[0]


def test_calibration_rejects_bad_input():
    with pytest.raises(ConfigError):
        calibrate_threshold(np.ones(3), np.ones(2, bool), np.ones(3, bool), 1.0)
    with pytest.raises(ConfigError):
        calibrate_threshold(np.ones(3), np.ones(3, bool), np.ones(3, bool), -1.0)


def test_config_from_dict_merges_nested_defaults_and_refuses_typos():
    cfg = TrainConfig.from_dict({'student': {'optim': {'epochs': 2}},
                                 'teacher': {'preprocessing': {'input_size': [32, 32]}}})
    assert cfg.student.optim.epochs == 2
    assert cfg.student.optim.batch_size == OptimConfig().batch_size
    assert cfg.teacher.preprocessing.input_size == (32, 32)
    assert cfg.teacher.preprocessing.channel_order == 'rgb'
    # The preprocessing is the bundle's PreprocessSpec itself, checked when the config is read.
    assert isinstance(cfg.student.preprocessing, PreprocessSpec)
    with pytest.raises(ConfigError, match='channel_order'):
        TrainConfig.from_dict({'student': {'preprocessing': {'channel_order': 'cmyk'}}})
    with pytest.raises(ConfigError, match='epoch'):
        TrainConfig.from_dict({'student': {'optim': {'epoch': 2}}})
    with pytest.raises(ConfigError, match='distillation'):
        TrainConfig.from_dict({'student': {'distillation': 'medium'}})
    with pytest.raises(ConfigError, match='rosbag'):
        TrainConfig.from_dict({'data': {'kind': 'rosbag'}})
    with pytest.raises(ConfigError, match='official-gfnet'):
        TrainConfig.from_dict({'teacher': {'kind': 'official-gfnet'}})


def test_config_yaml_files_in_repo_parse(tmp_path):
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / 'config'
    files = sorted(root.glob('train_*.yaml'))
    assert files, 'config/train_*.yaml missing'
    for path in files:
        cfg = TrainConfig.from_yaml(path)
        assert isinstance(cfg.teacher.preprocessing, PreprocessSpec)
    with pytest.raises(ConfigError, match='not found'):
        TrainConfig.from_yaml(tmp_path / 'none.yaml')


def test_lr_schedule_warms_up_then_decays():
    cfg = OptimConfig(lr=1.0, warmup_fraction=0.1)
    lrs = [lr_at(s, 100, cfg) for s in range(100)]
    assert lrs[0] < lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[-1] < 0.05


def test_an_exit_better_than_the_final_one_is_not_disabled_silently():
    # A small validation split: the first exit takes almost everything, so only 3 images reach
    # the second exit, which is more accurate than the final exit over the whole split.
    from gfde_perception.training.calibration import calibrate

    rng = np.random.default_rng(0)
    n = 60
    labels = rng.integers(0, 3, n)
    first = np.where(np.arange(n) < 57, labels, (labels + 1) % 3)  # right on 57 images
    conf_first = np.where(np.arange(n) < 57, 0.99, 0.2)
    second = labels.copy()  # always right
    conf_second = np.full(n, 0.9)
    final = np.where(np.arange(n) % 3 == 0, (labels + 1) % 3, labels)  # wrong on a third
    thresholds, reasons = calibrate([conf_first, conf_second], [first, second], final, labels,
                                    budget_points=0.5, min_samples=10)
    assert thresholds[0] < 1.0
    assert thresholds[1] < 1.0, reasons[1]  # kept: more accurate than the final exit
    assert 'calibrated on all 60' in reasons[1]
    # An exit worse than the final one everywhere is disabled, and the reason says so.
    worse = (labels + 1) % 3
    thresholds, reasons = calibrate([conf_first, conf_second], [first, worse], labels, labels,
                                    budget_points=0.5, min_samples=10)
    assert thresholds[1] == 1.0 and reasons[1].startswith('disabled:')
    assert '0.0% against 100.0%' in reasons[1]
