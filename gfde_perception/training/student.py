# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Step 2: train the GFNet student, with DeiT distillation from the teacher or without.

The teacher's logits are computed once over the (un-augmented) training images in step 1 and
looked up by dataset index here, so a student epoch costs no teacher forward pass. The student
sees augmented images (mirror, shift) whose teacher label is that of the original image: for hard
distillation this matches DeiT closely, because both augmentations preserve the class and the
teacher's argmax on a mirrored or 2-pixel-shifted garment rarely changes.
"""

from pathlib import Path

from gfde_perception.distillation import distillation_loss
from gfde_perception.errors import ConfigError
from gfde_perception.models import build_model
from gfde_perception.models.registry import GFNET_C_VARIANTS, GFNET_VARIANTS
from gfde_perception.training.config import StudentConfig, TrainConfig
from gfde_perception.training.loop import accuracy, fit, predict, write_json
from gfde_perception.training.teacher import load_teacher_logits
import numpy as np


def build_student(cfg: StudentConfig, num_classes: int):
    """Build the student from the registry, sized for its preprocessing and classes."""
    spec = cfg.preprocessing
    if spec.input_size[0] != spec.input_size[1]:
        raise ConfigError(f'students need a square input, got {spec.input_size}')
    overrides = dict(cfg.overrides)
    for key, value in (('num_classes', num_classes), ('in_chans', spec.channels),
                       ('img_size', spec.input_size[0])):
        if overrides.setdefault(key, value) != value:
            raise ConfigError(f'student.overrides.{key}={overrides[key]} contradicts the data '
                              f'and preprocessing ({key}={value})')
    if cfg.model in GFNET_VARIANTS or cfg.model in GFNET_C_VARIANTS:
        overrides.setdefault('distill_head', True)
    return build_model(cfg.model, **overrides)


def student_loss(cfg: StudentConfig, teacher_logits):
    """
    Loss for :func:`~gfde_perception.training.loop.fit` using precomputed teacher logits.

    Without teacher logits both heads learn the labels (the ablation, and the baselines), so a
    student has the same architecture and inference rule as its distilled twin. Early exits are
    trained jointly with weight ``cfg.exit_weight``, by the same rule as the final heads.
    """
    import torch

    table = None if teacher_logits is None else torch.from_numpy(np.asarray(teacher_logits))
    kind = cfg.distillation if table is not None else 'none'

    def loss_fn(model, inputs, labels, indices):
        out = model(inputs)
        teacher = None if table is None else table[torch.from_numpy(np.asarray(indices))]
        loss = distillation_loss(out, labels, teacher, kind=kind, tau=cfg.tau, alpha=cfg.alpha,
                                 exit_weight=cfg.exit_weight,
                                 label_smoothing=cfg.optim.label_smoothing)
        return loss, out.logits
    return loss_fn


def load_student_checkpoint(model, path):
    """Load the weights of a student checkpoint written by :func:`train_student`."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f'no student checkpoint at {path}: run the student step first')
    saved = torch.load(path, map_location='cpu', weights_only=True)
    model.load_state_dict(saved['model'])
    model.eval()
    return model


def train_student(cfg: TrainConfig, splits, out_dir, progress=True, log=print,
                  tag: str = 'student') -> dict:
    """
    Train the student; writes ``<tag>.ckpt`` and returns its metrics (val/test top-1).

    With ``student.distillation`` other than 'none' the teacher logits of step 1 are required;
    with 'none' (or no teacher) the student learns from the labels only.
    """
    out_dir = Path(out_dir)
    scfg = cfg.student
    spec = scfg.preprocessing
    model = build_student(scfg, len(splits.classes))
    kind = scfg.distillation if cfg.teacher.kind != 'none' else 'none'
    teacher = (load_teacher_logits(out_dir, 'train', splits.train, scfg.optim.augment)
               if kind != 'none' else None)
    fitted = fit(model, student_loss(scfg, teacher), splits.train, spec, scfg.optim,
                 seed=cfg.seed + 1, checkpoint=out_dir / f'{tag}.ckpt', desc=tag,
                 progress=progress, log=log)
    metrics = {'distillation': kind, 'train_seconds': fitted['seconds'],
               'history': fitted['history'], 'config': model.config.to_dict(),
               'run_config': cfg.to_dict(),
               'parameters': int(sum(p.numel() for p in model.parameters()))}
    for name in ('val', 'test'):
        data = getattr(splits, name)
        if data is None:
            continue
        cls, dist, both = predict(model, data, spec, desc=f'{tag} {name}', progress=progress,
                                  outputs=lambda m, x: _heads(m(x)))
        metrics[f'{name}_acc'] = accuracy(both, data.labels)
        metrics[f'{name}_acc_cls_head'] = accuracy(cls, data.labels)
        metrics[f'{name}_acc_dist_head'] = accuracy(dist, data.labels)
    log(f"{tag} ({kind}): val accuracy {100 * metrics['val_acc']:.2f}%"
        + (f", test {100 * metrics['test_acc']:.2f}%" if 'test_acc' in metrics else ''))
    write_json(out_dir / f'{tag}_metrics.json', metrics)
    return metrics


def _heads(out):
    return out.cls_logits, out.dist_logits, out.logits
