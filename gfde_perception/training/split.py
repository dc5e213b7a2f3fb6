# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
The split step (``gfde-train --step split``): a robot head, a bottleneck and a server tail.

Reads an existing run's outputs (the student bundle; for a teacher tail, the teacher bundle) and
writes one split bundle. The student's first ``split`` segments stay the robot's head; a learned
encoder squeezes their features to ``bottleneck.channels`` channels quantised to
``bottleneck.bits`` (quantisation-aware: fake quantisation with a straight-through gradient);
a decoder on the server restores what the tail takes.

* ``tail: student``: the student's remaining segments (frozen) finish the frame; encoder and
  decoder learn to reproduce the student's own features at the split and its final logits.
* ``tail: teacher``: head-network distillation. The teacher's segments from ``teacher_split``
  on (frozen) finish the frame; encoder and decoder (and with ``train_head`` the robot's
  segments too, their exits kept trained by a label loss) learn to reproduce the *teacher's*
  features at that point, computed from the teacher's own preprocessing of the same image, and
  its logits.

Loss: ``feature_weight`` x normalised MSE to the target features + ``logit_weight`` x
KL(target logits || tail logits) at temperature ``tau`` + ``label_weight`` x cross-entropy.
Afterwards the robot's exit thresholds are calibrated on the validation split against the
split model's own server answer (the same rule and ``exits.budget_points`` as the exits step),
and the test split is evaluated in every mode.
"""

from dataclasses import dataclass, field
import hashlib
import json
from pathlib import Path
from typing import Mapping, Optional

from gfde_perception.bundle import load_bundle
from gfde_perception.errors import ConfigError
from gfde_perception.feature_codec import packed_size
from gfde_perception.gating import GateConfig
from gfde_perception.models.efficientnet_segments import staged
from gfde_perception.models.split import (
    BottleneckConfig, probe_features, SplitConfig, SplitModel, TAILS, TeacherTail)
from gfde_perception.preprocessing import preprocess_batch
from gfde_perception.split_bundle import save_split_bundle, SplitBundle
from gfde_perception.training.calibration import calibrate_thresholds, cascade_report
from gfde_perception.training.config import _build, OptimConfig, TrainConfig
from gfde_perception.training.data import AugmentConfig, iterate_batches
from gfde_perception.training.loop import accuracy, fit, training_device, write_json
from gfde_perception.training.teacher import TEACHER_FILE
import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

METRICS_FILE = 'split_metrics.json'


@dataclass(frozen=True)
class SplitStepConfig:
    """
    The ``split:`` section of a training config.

    :ivar student_bundle: the student bundle to split (default: the run's bundle).
    :ivar teacher_bundle: the teacher bundle, for a teacher tail (default:
        ``<output_dir>/teacher.gfde``).
    :ivar bundle: output (default ``<output_dir>/<name>-split.gfde``).
    :ivar tail: 'student' or 'teacher'.
    :ivar split: student segments run on the robot.
    :ivar teacher_split: first teacher segment run on the server.
    :ivar bottleneck: channels, bits, stride, hidden (:class:`BottleneckConfig`).
    :ivar train_head: also train the robot's segments (teacher tail only).
    :ivar feature_weight: weight of the feature loss.
    :ivar logit_weight: weight of the logit distillation loss.
    :ivar label_weight: weight of the label loss.
    :ivar tau: distillation temperature.
    :ivar optim: optimisation (no augmentation by default: a teacher target is computed from
        the unaugmented image).
    """

    student_bundle: Optional[str] = None
    teacher_bundle: Optional[str] = None
    bundle: Optional[str] = None
    tail: str = 'student'
    split: int = 1
    teacher_split: int = 3
    bottleneck: Mapping = field(default_factory=dict)
    train_head: bool = False
    feature_weight: float = 1.0
    logit_weight: float = 1.0
    label_weight: float = 0.5
    tau: float = 2.0
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(
        epochs=2, lr=2e-3, weight_decay=1e-4, batch_size=128, checkpoint_every=50,
        augment=AugmentConfig(hflip=0.0, shift=0)))

    def __post_init__(self):
        if self.tail not in TAILS:
            raise ConfigError(f'split.tail must be one of {TAILS}, got {self.tail!r}')
        if isinstance(self.bottleneck, Mapping):
            object.__setattr__(self, 'bottleneck', BottleneckConfig.from_dict(self.bottleneck))
        if not isinstance(self.bottleneck, BottleneckConfig):
            raise ConfigError('split.bottleneck must be a mapping')
        for name in ('feature_weight', 'logit_weight', 'label_weight'):
            if not 0 <= getattr(self, name) <= 100:
                raise ConfigError(f'split.{name} must be in [0, 100]')
        if not 0 < self.tau <= 100:
            raise ConfigError(f'split.tau must be in (0, 100], got {self.tau}')
        if self.train_head and self.tail != 'teacher':
            raise ConfigError('split.train_head applies to a teacher tail only')
        aug = self.optim.augment
        if self.tail == 'teacher' and (aug.hflip or aug.shift or aug.brightness):
            raise ConfigError('a teacher tail trains without augmentation (its target is '
                              'computed from the unaugmented image)')

    @classmethod
    def from_dict(cls, data: Mapping) -> 'SplitStepConfig':
        """Build from the ``split:`` mapping; unknown keys raise :class:`ConfigError`."""
        return _build(cls, data or {}, 'split')


class _Trainee(nn.Module):
    """The split model under training; frozen parts stay in eval mode (no dropout, no BN)."""

    def __init__(self, model: SplitModel, frozen: list):
        super().__init__()
        self.model = model
        self.frozen = frozen
        for module in frozen:
            for p in module.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        for module in self.frozen:
            module.train(False)
        return self


def _teacher_segments(path):
    """Load the teacher bundle: model with stage-wise segments, config, preprocessing."""
    teacher = load_bundle(path)
    return staged(teacher.build_model()).eval(), teacher.config, teacher.preprocessing


def build_split_model(step: SplitStepConfig, student, student_spec, teacher_path=None):
    """
    Assemble an untrained split model around a trained student (and teacher).

    :return: ``(model, teacher_parts)`` where ``teacher_parts`` is None for a student tail,
        else ``(segmented teacher, teacher preprocessing)`` for the targets.
    """
    input_shape = (student_spec.channels,) + tuple(student_spec.input_size)
    head_features = probe_features(student, input_shape, step.split)
    teacher_parts, teacher_spec, tail_features, teacher_model = None, None, None, None
    if step.tail == 'teacher':
        teacher, teacher_config, teacher_spec = _teacher_segments(teacher_path)
        teacher_input = (teacher_spec.channels,) + tuple(teacher_spec.input_size)
        tail_features = probe_features(teacher, teacher_input, step.teacher_split)
        teacher_model = teacher_config
        teacher_parts = (teacher, teacher_spec)
    config = SplitConfig(
        head=student.config, split=step.split, input_shape=input_shape,
        head_features=head_features, tail=step.tail, tail_features=tail_features,
        bottleneck=step.bottleneck, teacher=teacher_model,
        teacher_split=step.teacher_split if step.tail == 'teacher' else 0)
    model = SplitModel(config)
    model.head.load_state_dict(student.state_dict())
    if teacher_parts is not None:
        model.teacher_tail.load_state_dict(
            TeacherTail(teacher_parts[0], step.teacher_split).state_dict())
    return model, teacher_parts


def _nmse(pred, target):
    return F.mse_loss(pred, target) / target.pow(2).mean().clamp_min(1e-6)


def split_loss(step: SplitStepConfig, model: SplitModel, teacher_parts, images):
    """Loss function for :func:`~gfde_perception.training.loop.fit`."""
    tail_needed = step.logit_weight > 0 or step.label_weight > 0

    def loss_fn(trainee, inputs, labels, indices):
        features, exit_logits = model.run_robot(inputs)
        decoded = model.decode(model.quantiser(model.encoder(features)))
        with torch.no_grad():
            if teacher_parts is None:
                target = features.detach()
            else:
                teacher, spec = teacher_parts
                target = torch.from_numpy(preprocess_batch([images[i] for i in indices], spec))
                target = target.to(inputs.device)
                for segment in list(teacher.segments)[:step.teacher_split]:
                    target, _ = segment(target)
        loss = step.feature_weight * _nmse(decoded, target)
        logits = exit_logits[-1]  # what the loop reports when the tail is not run
        if tail_needed:
            logits = model.tail_logits(decoded)
            with torch.no_grad():
                ref = model.tail_logits(target)  # the unsplit reference on the exact features
            tau = step.tau
            loss = loss + step.logit_weight * tau * tau * F.kl_div(
                F.log_softmax(logits / tau, 1), F.log_softmax(ref / tau, 1),
                reduction='batchmean', log_target=True)
            loss = loss + step.label_weight * F.cross_entropy(logits, labels)
        if step.train_head:
            for early in exit_logits:
                loss = loss + F.cross_entropy(early, labels) / len(exit_logits)
        return loss, logits
    return loss_fn


def split_outputs(model: SplitModel, data, spec, batch_size: int = 256) -> dict:
    """Robot exit logits, server logits and the unsplit student's exits over ``data``."""
    model.eval()
    exits, server, unsplit, student_exits = [], [], [], []
    with torch.inference_mode():
        for inputs, _labels, _idx in iterate_batches(data, spec, batch_size):
            out = model(torch.from_numpy(inputs))
            exits.append(np.stack([lg.numpy() for lg in out.exit_logits]))
            server.append(out.logits.numpy())
            features = out.features
            later = []
            heads = list(model.head.exit_heads)
            for k in range(model.config.split, len(heads)):
                features, pooled = model.head.segments[k](features)
                later.append(heads[k](pooled).numpy())
            unsplit.append(later[-1])
            student_exits.append(np.stack([lg.numpy() for lg in out.exit_logits] + later[:-1]))
    return {'exits': np.concatenate(exits, 1), 'server': np.concatenate(server),
            'unsplit': np.concatenate(unsplit),
            'student_exits': np.concatenate(student_exits, 1)}


def evaluate_split(outputs: dict, labels, gate: GateConfig, student_gate: GateConfig) -> dict:
    """Accuracy of every mode on one split of the data (fractions in [0, 1])."""
    exits = list(outputs['exits'])
    conf = [gate.confidence(lg) for lg in exits]
    preds = [lg.argmax(1) for lg in exits]
    report = cascade_report(conf, preds, outputs['server'].argmax(1), labels, gate.thresholds)
    student = list(outputs['student_exits'])
    unsplit = cascade_report([student_gate.confidence(lg) for lg in student],
                             [lg.argmax(1) for lg in student], outputs['unsplit'].argmax(1),
                             labels, student_gate.thresholds)
    return {
        'split_with_exits': report['accuracy'],
        'split_without_exits': accuracy(outputs['server'], labels),
        'student_final': accuracy(outputs['unsplit'], labels),
        'student_with_exits': unsplit['accuracy'],
        'offload_rate': report['exit_rates'][-1],
        'exit_rates': report['exit_rates'],
        'per_exit': report['per_exit'],
    }


def checkpoint_name(cfg: TrainConfig, student_checksum: str) -> str:
    """Checkpoint file of one split configuration: another configuration never resumes it."""
    key = json.dumps([cfg.split, student_checksum, cfg.seed, cfg.to_dict()['data']],
                     sort_keys=True, default=str)
    return f'split-{hashlib.sha256(key.encode()).hexdigest()[:12]}.ckpt'


def train_split(cfg: TrainConfig, splits, out_dir, progress=True, log=print) -> dict:
    """Train the split model, calibrate its robot exits, write the split bundle; metrics."""
    step = SplitStepConfig.from_dict(cfg.split)
    out_dir = Path(out_dir)
    student_bundle = load_bundle(step.student_bundle or cfg.bundle_path)
    student = student_bundle.build_model()
    spec = student_bundle.preprocessing
    if tuple(student_bundle.labels) != tuple(splits.classes):
        raise ConfigError(f'the student bundle labels {student_bundle.labels} are not the '
                          f'classes of the data {splits.classes}')
    teacher_path = step.teacher_bundle or out_dir / TEACHER_FILE
    model, teacher_parts = build_split_model(step, student, spec, teacher_path)
    if teacher_parts is not None:
        # The loss runs the teacher's first segments on every batch: put it where fit runs.
        teacher_parts[0].to(training_device())
    frozen = [model.head] if teacher_parts is None or not step.train_head else []
    if model.teacher_tail is not None:
        frozen.append(model.teacher_tail)
    trainee = _Trainee(model, frozen)
    log(f'split: {step.tail} tail, robot runs {step.split} segment(s), bottleneck '
        f'{model.config.code_shape} at {step.bottleneck.bits} bits')
    fitted = fit(trainee, split_loss(step, model, teacher_parts, splits.train.images),
                 splits.train, spec, step.optim, seed=cfg.seed,
                 checkpoint=out_dir / checkpoint_name(cfg, student_bundle.checksum),
                 desc='split', progress=progress, log=log)
    model.eval()
    val = split_outputs(model, splits.val, spec)
    student_gate = student_bundle.gate
    probe = GateConfig(student_gate.metric, (0.5,) * step.split, student_gate.learned_weights)
    robot_exits = list(val['exits'])
    thresholds = calibrate_thresholds(
        [probe.confidence(lg) for lg in robot_exits], [lg.argmax(1) for lg in robot_exits],
        val['server'].argmax(1), splits.val.labels, cfg.exits.budget_points,
        cfg.exits.min_exit_samples, cfg.exits.confidence)
    gate = probe.with_thresholds(thresholds)
    metrics = {'history': fitted['history'], 'train_seconds': fitted['seconds'],
               'gate': gate.to_dict(), 'budget_points': cfg.exits.budget_points,
               'bytes_per_frame': packed_size(int(np.prod(model.config.code_shape)),
                                              step.bottleneck.bits),
               'val': evaluate_split(val, splits.val.labels, gate, student_bundle.gate)}
    if splits.test is not None:
        test = split_outputs(model, splits.test, spec)
        metrics['test'] = evaluate_split(test, splits.test.labels, gate, student_bundle.gate)
    for name in ('val', 'test'):
        if name in metrics:
            m = metrics[name]
            log(f"split on {name}: with exits {100 * m['split_with_exits']:.2f}%, without "
                f"{100 * m['split_without_exits']:.2f}%; student with exits "
                f"{100 * m['student_with_exits']:.2f}%, final {100 * m['student_final']:.2f}%; "
                f"offloaded {100 * m['offload_rate']:.1f}%")
    provenance = {'tool': 'gfde-train --step split',
                  'student': f'{student_bundle.name}@{student_bundle.checksum[:12]}',
                  'teacher': str(teacher_path) if step.tail == 'teacher' else None,
                  'split_config': json.loads(json.dumps(cfg.split, default=str)),
                  'data': splits.describe(), 'seed': cfg.seed}
    bundle = SplitBundle.from_model(
        model, f'{cfg.name}-split-{step.tail}', spec, splits.classes, gate, provenance,
        json.loads(json.dumps(metrics, default=float)), half_parts=('teacher_tail',))
    path = Path(step.bundle) if step.bundle else out_dir / f'{cfg.name}-split.gfde'
    save_split_bundle(bundle, path)
    metrics['bundle'] = str(path)
    write_json(out_dir / METRICS_FILE, metrics)
    log(f'split: bundle written to {path}')
    return metrics


__all__ = ['SplitStepConfig', 'build_split_model', 'evaluate_split', 'split_loss',
           'split_outputs', 'train_split']
