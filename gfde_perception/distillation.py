# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
DeiT's distillation losses for a GFDE output (class head + distillation head + exits).

* ``none``: cross-entropy on the labels; with a distillation head, the mean of both heads'
  cross-entropies (so both heads stay useful, as inference averages them).
* ``hard``: ``(1 - alpha) * CE(cls, labels) + alpha * CE(dist, argmax(teacher))``, DeiT's
  hard-label distillation (DeiT uses alpha = 0.5).
* ``soft``: ``(1 - alpha) * CE(cls, labels) + alpha * tau^2 * KL(softmax(teacher / tau) ||
  softmax(dist / tau))``, the KL summed over classes and averaged over the batch.
* ``both``: the distillation term is the mean of the hard and the soft ones.

Early exits are trained with the same rule applied to each exit's single head (its logits play
both roles) and weighted by ``exit_weight``, averaged over exits.
"""

from typing import Optional

from gfde_perception.choices import DISTILLATION_KINDS
from gfde_perception.errors import ConfigError
import torch
import torch.nn.functional as F


def _distill_term(logits: torch.Tensor, teacher_logits: torch.Tensor, kind: str,
                  tau: float) -> torch.Tensor:
    if kind == 'hard':
        return F.cross_entropy(logits, teacher_logits.argmax(dim=1))
    if kind == 'both':
        return 0.5 * (_distill_term(logits, teacher_logits, 'hard', tau)
                      + _distill_term(logits, teacher_logits, 'soft', tau))
    log_p = F.log_softmax(logits / tau, dim=1)
    log_q = F.log_softmax(teacher_logits / tau, dim=1)
    kl = F.kl_div(log_p, log_q, reduction='sum', log_target=True) / logits.shape[0]
    return kl * (tau * tau)


def distillation_loss(output, labels: torch.Tensor, teacher_logits: Optional[torch.Tensor],
                      kind: str = 'hard', tau: float = 1.0, alpha: float = 0.5,
                      exit_weight: float = 0.0, label_smoothing: float = 0.0) -> torch.Tensor:
    """
    Compute the DeiT loss for a :class:`~gfde_perception.models.GFDEOutput`.

    :param output: the model output (``cls_logits``, ``dist_logits``, ``exit_logits``).
    :param labels: (B,) class indices.
    :param teacher_logits: (B, K) teacher outputs (ignored, may be None, for ``kind='none'``).
    :param kind: 'hard', 'soft', 'both' or 'none'.
    :param tau: softening temperature for 'soft' and 'both'.
    :param alpha: weight of the distillation term, in [0, 1].
    :param exit_weight: weight of the (mean) early-exit loss added to the final loss.
    :param label_smoothing: smoothing of the cross-entropy on the labels (never on the teacher).
    :return: scalar loss tensor.
    :raises ConfigError: unknown kind, bad tau/alpha, missing or mis-shaped teacher logits.
    """
    if kind not in DISTILLATION_KINDS:
        raise ConfigError(f'distillation kind must be one of {DISTILLATION_KINDS}, got {kind!r}')
    if not tau > 0:
        raise ConfigError(f'tau must be > 0, got {tau}')
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f'alpha must be in [0, 1], got {alpha}')
    if exit_weight < 0:
        raise ConfigError(f'exit_weight must be >= 0, got {exit_weight}')
    cls_logits, dist_logits = output.cls_logits, output.dist_logits
    if kind != 'none':
        if teacher_logits is None:
            raise ConfigError(f'kind={kind!r} needs teacher_logits')
        if tuple(teacher_logits.shape) != tuple(cls_logits.shape):
            raise ConfigError(f'teacher logits {tuple(teacher_logits.shape)} do not match '
                              f'student logits {tuple(cls_logits.shape)}')
        teacher_logits = teacher_logits.detach().to(cls_logits.device)

    def head_loss(main: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
        base = F.cross_entropy(main, labels, label_smoothing=label_smoothing)
        if kind == 'none':
            if dist is main:
                return base
            return 0.5 * (base + F.cross_entropy(dist, labels, label_smoothing=label_smoothing))
        return (1.0 - alpha) * base + alpha * _distill_term(dist, teacher_logits, kind, tau)

    loss = head_loss(cls_logits, dist_logits)
    if exit_weight > 0 and len(output.exit_logits):
        exits = torch.stack([head_loss(e, e) for e in output.exit_logits]).mean()
        loss = loss + exit_weight * exits
    return loss
