# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""DeiT losses on GFDE outputs, checked against values computed by hand."""

import math

from gfde_perception.distillation import distillation_loss
from gfde_perception.errors import ConfigError
from gfde_perception.models import build_model, GFDEOutput
import pytest
import torch


def _output(cls, dist=None, exits=()):
    cls = torch.tensor(cls, dtype=torch.float64)
    dist = cls if dist is None else torch.tensor(dist, dtype=torch.float64)
    return GFDEOutput((cls + dist) / 2, cls, dist,
                      tuple(torch.tensor(e, dtype=torch.float64) for e in exits))


def _ce(logits, label):
    return math.log(sum(math.exp(v) for v in logits)) - logits[label]


CLS = [[2.0, 0.0, 0.0]]
DIST = [[0.0, 1.0, 0.0]]
TEACHER = torch.tensor([[0.0, 0.0, 3.0]], dtype=torch.float64)
LABELS = torch.tensor([0])


def test_none_is_cross_entropy():
    loss = distillation_loss(_output(CLS), LABELS, None, kind='none')
    assert loss.item() == pytest.approx(_ce(CLS[0], 0))
    both = distillation_loss(_output(CLS, DIST), LABELS, None, kind='none')
    assert both.item() == pytest.approx(0.5 * (_ce(CLS[0], 0) + _ce(DIST[0], 0)))


@pytest.mark.parametrize('alpha', [0.0, 0.5, 0.9])
def test_hard_uses_teacher_argmax_on_the_distillation_head(alpha):
    loss = distillation_loss(_output(CLS, DIST), LABELS, TEACHER, kind='hard', alpha=alpha)
    expected = (1 - alpha) * _ce(CLS[0], 0) + alpha * _ce(DIST[0], 2)
    assert loss.item() == pytest.approx(expected)


@pytest.mark.parametrize('tau', [1.0, 3.0])
def test_soft_is_tau_squared_kl(tau):
    loss = distillation_loss(_output(CLS, DIST), LABELS, TEACHER, kind='soft', tau=tau,
                             alpha=0.5)
    p = torch.softmax(TEACHER[0] / tau, 0)
    q = torch.softmax(torch.tensor(DIST[0], dtype=torch.float64) / tau, 0)
    kl = float((p * (p.log() - q.log())).sum())
    assert loss.item() == pytest.approx(0.5 * _ce(CLS[0], 0) + 0.5 * tau * tau * kl)


def test_both_is_the_mean_of_the_hard_and_soft_terms():
    tau = 2.0
    loss = distillation_loss(_output(CLS, DIST), LABELS, TEACHER, kind='both', tau=tau,
                             alpha=0.5)
    p = torch.softmax(TEACHER[0] / tau, 0)
    q = torch.softmax(torch.tensor(DIST[0], dtype=torch.float64) / tau, 0)
    kl = float((p * (p.log() - q.log())).sum())
    distill = 0.5 * (_ce(DIST[0], 2) + tau * tau * kl)
    assert loss.item() == pytest.approx(0.5 * _ce(CLS[0], 0) + 0.5 * distill)


def test_soft_is_zero_distillation_when_student_equals_teacher():
    out = _output(CLS, TEACHER.tolist())
    loss = distillation_loss(out, LABELS, TEACHER, kind='soft', alpha=1.0)
    assert loss.item() == pytest.approx(0.0, abs=1e-12)


def test_exit_losses_are_averaged_and_weighted():
    exits = ([[0.0, 2.0, 0.0]], [[1.0, 0.0, 0.0]])
    out = _output(CLS, DIST, exits)
    base = distillation_loss(out, LABELS, TEACHER, kind='hard')
    total = distillation_loss(out, LABELS, TEACHER, kind='hard', exit_weight=2.0)
    per_exit = [0.5 * _ce(e[0], 0) + 0.5 * _ce(e[0], 2) for e in exits]
    assert (total - base).item() == pytest.approx(2.0 * sum(per_exit) / 2)


def test_gradients_reach_both_heads_and_not_the_teacher():
    torch.manual_seed(0)
    model = build_model('gfnet-edge-28', depth=2, exit_blocks=(1,))
    x = torch.randn(4, 1, 28, 28)
    teacher = torch.randn(4, 10, requires_grad=True)
    loss = distillation_loss(model(x), torch.tensor([0, 1, 2, 3]), teacher, kind='hard',
                             exit_weight=1.0)
    loss.backward()
    assert model.head_dist.weight.grad.abs().sum() > 0
    assert model.backbone.head.weight.grad.abs().sum() > 0
    assert model.exits[0].head.weight.grad.abs().sum() > 0
    assert teacher.grad is None


@pytest.mark.parametrize('kwargs, message', [
    ({'kind': 'medium'}, 'kind'), ({'tau': 0.0}, 'tau'), ({'alpha': 1.5}, 'alpha'),
    ({'exit_weight': -1.0}, 'exit_weight'),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        distillation_loss(_output(CLS, DIST), LABELS, TEACHER, **kwargs)


def test_teacher_required_and_shape_checked():
    with pytest.raises(ConfigError, match='needs teacher_logits'):
        distillation_loss(_output(CLS, DIST), LABELS, None, kind='hard')
    with pytest.raises(ConfigError, match='do not match'):
        distillation_loss(_output(CLS, DIST), LABELS, torch.zeros(1, 4), kind='soft')
