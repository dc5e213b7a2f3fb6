# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Augmentation suited to the data: decide ``hflip: auto`` from the data, before training.

A mirror doubles the data for garments or cups, and is a label error for digits, letters or
arrows. Which one a data set is cannot be read from folder names, and a classifier on
ImageNet-pretrained features cannot tell either (those features were trained to ignore mirrors).
So it is measured directly: a small plain CNN (the registry's ``cnn-*`` for the student's input)
is trained for :data:`TRIAL_EPOCHS` on a sample of the training split twice, with and without
mirrors, same seed, and validated on the validation split. Flips are used (probability 0.5)
unless they cost more than :data:`MAX_LOSS_POINTS` of validation accuracy. About a minute on a
2-core CPU; the decision and its numbers are logged and recorded in the run's metrics.
"""

import dataclasses

from gfde_perception.models import build_model
from gfde_perception.training.config import OptimConfig, TrainConfig
from gfde_perception.training.data import AugmentConfig
from gfde_perception.training.loop import accuracy, fit, predict, seed_everything
from gfde_perception.training.teacher import teacher_loss
import numpy as np

MAX_LOSS_POINTS = 0.5
TRIAL_EPOCHS = 2
TRAIN_SAMPLE = 4000
VAL_SAMPLE = 2000


def _sample(data, count: int, seed: int):
    if len(data) <= count:
        return data
    return data.subset(np.sort(np.random.default_rng(seed).permutation(len(data))[:count]))


def flip_trial(splits, spec, augment: AugmentConfig, seed: int = 0) -> dict:
    """
    Measure a small CNN trained with and without mirrors (same everything else).

    :return: ``{'with': acc, 'without': acc, 'train_images': n, 'val_images': m}``.
    """
    train = _sample(splits.train, TRAIN_SAMPLE, seed)
    val = _sample(splits.val, VAL_SAMPLE, seed + 1)
    side = spec.input_size[0]
    name = 'cnn-28' if spec.channels == 1 else 'cnn-32'
    pools = 2 ** 2  # cnn-* pools twice: the input side must be a multiple of 4
    out = {'train_images': len(train), 'val_images': len(val)}
    for key, hflip in (('with', 0.5), ('without', 0.0)):
        seed_everything(seed)  # the same initial weights and dropout draws for both trials
        model = build_model(name, img_size=side - side % pools, in_chans=spec.channels,
                            num_classes=len(splits.classes))
        trial_spec = dataclasses.replace(spec, input_size=(side - side % pools,) * 2)
        optim = OptimConfig(epochs=TRIAL_EPOCHS, batch_size=64, lr=2e-3, weight_decay=0.05,
                            augment=dataclasses.replace(augment, hflip=hflip, views=0))
        fit(model, teacher_loss(0.0), train, trial_spec, optim, seed=seed, progress=False)
        out[key] = accuracy(predict(model, val, trial_spec, progress=False,
                                    outputs=lambda m, x: m(x).logits), val.labels)
    return out


def resolve_augment(cfg: TrainConfig, splits, log=print) -> tuple:
    """
    Replace every ``hflip: auto`` of ``cfg`` by the measured decision.

    :return: ``(config, decision)``; ``decision`` is None when nothing was 'auto', else a dict
        with the trial's accuracies, the chosen probability and why.
    """
    sections = [('teacher', cfg.teacher), ('student', cfg.student)]
    if not any(s.optim.augment.hflip == 'auto' for _, s in sections):
        return cfg, None
    augment = dataclasses.replace(cfg.student.optim.augment, hflip=0.0)
    trial = flip_trial(splits, cfg.student.preprocessing, augment, cfg.seed)
    cost = 100.0 * (trial['without'] - trial['with'])
    hflip = 0.5 if cost <= MAX_LOSS_POINTS else 0.0
    decision = dict(trial, hflip=hflip, why=(
        f"a small CNN trained with mirrors reached {100 * trial['with']:.1f}% and without "
        f"{100 * trial['without']:.1f}% ({trial['train_images']} training images, "
        f"{TRIAL_EPOCHS} epochs): flips {'on' if hflip else 'off'} (they may cost at most "
        f'{MAX_LOSS_POINTS:g} points)'))
    log(f"augment: hflip auto -> {hflip}: {decision['why']}")
    changes = {}
    for name, section in sections:
        section_augment = section.optim.augment
        if section_augment.hflip == 'auto':
            optim = dataclasses.replace(section.optim, augment=dataclasses.replace(
                section_augment, hflip=hflip))
            changes[name] = dataclasses.replace(section, optim=optim)
    return dataclasses.replace(cfg, **changes), decision
