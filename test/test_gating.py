# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""Exit gates: confidence metrics, threshold convention, vectorisation, GateConfig."""

import math

from gfde_perception.errors import ConfigError
from gfde_perception.gating import (
    confidence, first_exit, GateConfig, should_exit, softmax, uncertainty_features)
import numpy as np
import pytest


LOG3 = math.log(3.0)


def _probs_logits(p):
    """Logits whose softmax is ``p`` (log-probabilities)."""
    return np.log(np.asarray(p, dtype=np.float64))


# (name, logits, metric, expected confidence) worked out by hand from the definitions.
CONFIDENCE_TABLE = [
    ('uniform max_softmax', [0.0, 0.0, 0.0, 0.0], 'max_softmax', 0.25),
    ('uniform margin', [1.0, 1.0, 1.0], 'margin', 0.0),
    ('uniform entropy', [5.0, 5.0, 5.0], 'entropy', 0.0),
    ('certain max_softmax', [100.0, 0.0, 0.0], 'max_softmax', 1.0),
    ('certain margin', [0.0, 100.0, 0.0], 'margin', 1.0),
    ('certain entropy', [0.0, 0.0, 100.0], 'entropy', 1.0),
    ('0.5/0.3/0.2 max', _probs_logits([0.5, 0.3, 0.2]), 'max_softmax', 0.5),
    ('0.5/0.3/0.2 margin', _probs_logits([0.2, 0.5, 0.3]), 'margin', 0.2),
    ('0.5/0.3/0.2 entropy', _probs_logits([0.5, 0.3, 0.2]), 'entropy',
     1 + (0.5 * math.log(0.5) + 0.3 * math.log(0.3) + 0.2 * math.log(0.2)) / LOG3),
    ('two classes 0.8', _probs_logits([0.2, 0.8]), 'margin', 0.6),
    ('shift invariant', [1000.0, 1000.0, 1000.0], 'max_softmax', 1 / 3),
    ('one class', [3.0], 'entropy', 1.0),
]


@pytest.mark.parametrize('name, logits, metric, expected', CONFIDENCE_TABLE,
                         ids=[row[0] for row in CONFIDENCE_TABLE])
def test_confidence_table(name, logits, metric, expected):
    value = confidence(np.asarray(logits), metric)
    assert isinstance(value, float)
    assert value == pytest.approx(expected, abs=1e-9)


# (threshold, confidence, decision): the contract's convention, including its edges.
EXIT_TABLE = [
    (0.0, 0.0, True), (-1.0, 0.0, True), (0.0, 1.0, True),
    (1.0, 1.0, False), (1.5, 1.0, False), (float('inf'), 1.0, False),
    (0.7, 0.7, True), (0.7, 0.6999, False), (0.7, 0.95, True), (0.5, 0.0, False),
]


@pytest.mark.parametrize('threshold, conf, decision', EXIT_TABLE)
def test_should_exit_table(threshold, conf, decision):
    assert should_exit(conf, threshold) is decision


def test_should_exit_vectorised_matches_scalar():
    thresholds = np.array([row[0] for row in EXIT_TABLE])
    confs = np.array([row[1] for row in EXIT_TABLE])
    expected = np.array([row[2] for row in EXIT_TABLE])
    np.testing.assert_array_equal(should_exit(confs, thresholds), expected)
    with pytest.raises(ConfigError, match='NaN'):
        should_exit(0.5, float('nan'))


@pytest.mark.parametrize('metric', ['max_softmax', 'margin', 'entropy'])
def test_batch_equals_rows_and_range(metric):
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(64, 10))
    batch = confidence(logits, metric)
    assert batch.shape == (64,)
    rows = np.array([confidence(row, metric) for row in logits])
    np.testing.assert_allclose(batch, rows, rtol=0, atol=1e-12)
    assert (batch >= 0).all() and (batch <= 1).all()


def test_sharper_logits_are_more_confident():
    base = np.array([2.0, 1.0, 0.5, -1.0])
    for metric in ('max_softmax', 'margin', 'entropy'):
        assert confidence(base * 3, metric) > confidence(base, metric)


def test_learned_gate():
    logits = np.array([[3.0, 0.0, 0.0], [0.1, 0.0, 0.0]])
    feats = uncertainty_features(logits)
    w = (2.0, -1.0, 0.5, -0.3)
    expected = 1 / (1 + np.exp(-(feats @ np.array(w[:3]) + w[3])))
    np.testing.assert_allclose(confidence(logits, 'learned', w), expected, rtol=1e-12)
    big = confidence(logits, 'learned', (1e4, 0, 0, 0))
    assert np.isfinite(big).all() and big.max() == pytest.approx(1.0)
    with pytest.raises(ConfigError, match='learned_weights'):
        confidence(logits, 'learned')
    with pytest.raises(ConfigError, match='4 finite'):
        confidence(logits, 'learned', (1.0, 2.0))


@pytest.mark.parametrize('logits, metric', [
    (np.zeros((2, 3, 4)), 'margin'), (np.zeros(0), 'margin'),
    (np.array([1.0, np.nan]), 'entropy'), (np.array([1.0, 2.0]), 'variance'),
])
def test_confidence_rejects_bad_input(logits, metric):
    with pytest.raises(ConfigError):
        confidence(logits, metric)


def test_softmax_is_stable():
    p = softmax(np.array([1e4, 0.0]))
    assert np.isfinite(p).all() and p[0] == pytest.approx(1.0)


# (confidences per early exit, thresholds, exit taken).
FIRST_EXIT_TABLE = [
    ([0.9, 0.95], [0.8, 0.8], 0),
    ([0.5, 0.95], [0.8, 0.8], 1),
    ([0.5, 0.6], [0.8, 0.8], 2),
    ([0.99, 0.99], [1.0, 1.0], 2),
    ([0.0, 0.0], [0.5, 0.0], 1),
    ([], [], 0),
]


@pytest.mark.parametrize('confs, thresholds, taken', FIRST_EXIT_TABLE)
def test_first_exit_table(confs, thresholds, taken):
    assert first_exit(np.asarray(confs), thresholds) == taken


def test_first_exit_batch():
    confs = np.array([[0.9, 0.1, 0.1], [0.9, 0.9, 0.1]])  # (E=2, B=3)
    np.testing.assert_array_equal(first_exit(confs, [0.8, 0.8]), [0, 1, 2])
    with pytest.raises(ConfigError, match='thresholds'):
        first_exit(confs, [0.8])


def test_gate_config():
    gate = GateConfig('entropy', [0.5, 0.7])
    assert gate.thresholds == (0.5, 0.7)
    assert GateConfig.from_dict(gate.to_dict()) == gate
    assert gate.should_exit(0, np.array([10.0, 0.0, 0.0])) is True
    assert gate.should_exit(1, np.array([0.0, 0.0, 0.0])) is False
    assert gate.with_thresholds((0.1, 0.2)).thresholds == (0.1, 0.2)
    learned = GateConfig('learned', (0.5,), (1, 1, 1, 0))
    assert GateConfig.from_dict(learned.to_dict()) == learned
    with pytest.raises(ConfigError):
        gate.should_exit(2, np.zeros(3))


@pytest.mark.parametrize('kwargs', [
    {'metric': 'variance'}, {'thresholds': ('x',)}, {'thresholds': (float('nan'),)},
    {'metric': 'learned', 'thresholds': (0.5,)},
    {'metric': 'learned', 'learned_weights': (1.0, 2.0, float('inf'), 0.0)},
])
def test_gate_config_validation(kwargs):
    with pytest.raises(ConfigError):
        GateConfig(**kwargs)
    with pytest.raises(ConfigError):
        GateConfig.from_dict({'metric': 'margin', 'thresholds': [0.5], 'extra': 1})
