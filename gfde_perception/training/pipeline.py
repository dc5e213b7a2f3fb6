# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""The three GFDE steps chained: data -> teacher -> distilled student -> exits -> bundle."""

import dataclasses
import json
from pathlib import Path
import shutil
import time

from gfde_perception.errors import ConfigError, DatasetError
from gfde_perception.training.budget import make_plan, PLAN_FILE
from gfde_perception.training.config import DataConfig, TrainConfig
from gfde_perception.training.data import (
    load_bag_frames, load_fashion_mnist, load_image_folder, make_splits)
from gfde_perception.training.exits import train_exits
from gfde_perception.training.loop import seed_everything, select_device, write_json
from gfde_perception.training.probe import resolve_augment
from gfde_perception.training.split import train_split
from gfde_perception.training.student import train_student
from gfde_perception.training.teacher import train_teacher
import numpy as np


def load_splits(cfg: DataConfig, seed: int):
    """Read the data source named by ``cfg`` and split it (train / val / untouched test)."""
    temporal = False
    if cfg.kind == 'fashion-mnist':
        train = load_fashion_mnist('train', cfg.root)
        test = load_fashion_mnist('test', cfg.root)
    elif cfg.kind == 'image-folder':
        train = load_image_folder(cfg.root, classes=cfg.classes)
        test = (load_image_folder(cfg.test_root, classes=train.classes)
                if cfg.test_root else None)
    elif cfg.kind == 'rosbag':
        train = load_bag_frames(cfg.bag, cfg.image_topic, cfg.classes,
                                label_topic=cfg.label_topic, sidecar=cfg.sidecar)
        test = None
        temporal = True
    else:
        raise ConfigError(f'unknown data.kind {cfg.kind!r}')
    if cfg.max_train is not None and cfg.max_train < len(train):
        rng = np.random.default_rng(seed)
        keep = np.sort(rng.choice(len(train), cfg.max_train, replace=False))
        train = train.subset(keep)
    if test is not None and cfg.max_test is not None and cfg.max_test < len(test):
        rng = np.random.default_rng(seed + 1)
        keep = np.sort(rng.choice(len(test), cfg.max_test, replace=False))
        test = test.subset(keep)
    splits = make_splits(train, test, cfg.val_fraction, seed, temporal=temporal)
    if len(splits.train) == 0 or len(splits.val) == 0:
        raise DatasetError(f'not enough images to split: {splits.describe()}')
    return splits


def run(cfg: TrainConfig, step: str = 'all', restart: bool = False, progress: bool = True,
        log=print) -> dict:
    """
    Run one step or all three; returns (and writes) ``<output_dir>/metrics.json``.

    Each step reads the previous step's outputs from ``output_dir`` (teacher logits, student
    checkpoint), so steps can be run separately and a killed run resumes where it stopped. A
    whole run first measures step times and prints its plan (:mod:`.budget`): with
    ``time_budget_minutes`` the plan also chooses the epochs; a single step runs the configured
    epochs.
    """
    seed_everything(cfg.seed, cfg.threads)
    device = select_device(cfg.device)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    splits = load_splits(cfg.data, cfg.seed)
    log(f'data: {_describe_splits(splits)}; training on {device}')
    metrics_path = out / 'metrics.json'
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    metrics['data'] = splits.describe()
    metrics['config'] = cfg.to_dict()
    if restart:
        names = {'teacher': ('teacher.ckpt', 'teacher_metrics.json', 'teacher.gfde'),
                 'student': ('student.ckpt',), 'exits': ('exits.ckpt',)}
        for name in (n for s, ns in names.items() if step in (s, 'all') for n in ns):
            _remove(out, name)
        _remove(out, PLAN_FILE)
    cfg, decision = resolve_augment(cfg, splits, log=log)
    if decision is not None:
        metrics['augment_decision'] = decision
    teacher_epochs = None
    if step == 'all':
        plan = make_plan(cfg, splits, out, log=log)
        log(plan.describe())
        metrics['plan'] = {'teacher_mode': plan.teacher_mode,
                           'teacher_epochs': plan.teacher_epochs,
                           'student_epochs': plan.student_epochs,
                           'estimated_seconds': plan.estimates, 'budget_seconds': plan.budget_s}
        teacher_epochs = plan.teacher_epochs
        student = dataclasses.replace(cfg.student, optim=dataclasses.replace(
            cfg.student.optim, epochs=plan.student_epochs))
        cfg = dataclasses.replace(cfg, student=student)
    if step in ('teacher', 'all') and cfg.teacher.kind != 'none':
        metrics['teacher'] = train_teacher(cfg.teacher, splits, out, seed=cfg.seed,
                                           augment=cfg.student.optim.augment,
                                           epochs=teacher_epochs, run_config=cfg.to_dict(),
                                           progress=progress, log=log)
        write_json(metrics_path, metrics)
    if step in ('student', 'all'):
        metrics['student'] = train_student(cfg, splits, out, progress=progress, log=log)
        write_json(metrics_path, metrics)
    if step in ('exits', 'all'):
        metrics['exits'] = train_exits(cfg, splits, out, progress=progress, log=log)
        metrics['bundle'] = str(cfg.bundle_path)
    if step == 'split':
        if restart:
            for path in out.glob('split-*.ckpt'):
                _remove(out, path.name)
        metrics['split'] = train_split(cfg, splits, out, progress=progress, log=log)
    metrics.setdefault('wall_seconds', {})[step] = time.perf_counter() - started
    write_json(metrics_path, metrics)
    if step == 'all':
        planned = sum(metrics['plan']['estimated_seconds'].values())
        log(f"whole run: {metrics['wall_seconds'][step] / 60:.1f} min (planned "
            f'{planned / 60:.1f} min)')
    return metrics


def _describe_splits(splits) -> str:
    d = splits.describe()
    return (f"{d['train']} train, {d['val']} validation, {d['test']} test images of "
            f"{len(d['classes'])} classes from {d['source']}")


def _remove(out: Path, name: str):
    path = out / name
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
