# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
The time budget of a training run: measure step times first, plan the epochs, say so.

Before the first step, :func:`make_plan` times a few real batches of each model on this machine
(teacher forward and training step, student training step and forward, the augmentation and
preprocessing of a batch) and estimates every step of the run from them. Without a budget the
plan is the configuration's own; with one (``time_budget_minutes``) the epochs are chosen so
that the whole run fits: fixed costs first (the teacher's features and logits, exit
calibration), then teacher fine-tuning (``teacher.train: auto``) gets up to
:data:`TEACHER_SHARE` of what is left, and the student the rest, each capped by its configured
``epochs``. The plan is printed before anything trains, recorded in the metrics, and kept in
``plan.json`` so that a resumed run keeps the same schedule.
"""

from dataclasses import asdict, dataclass
import json
import math
from pathlib import Path
import time
from typing import Optional

from gfde_perception.errors import ConfigError
from gfde_perception.training.config import TrainConfig
from gfde_perception.training.data import iterate_batches, num_batches
from gfde_perception.training.loop import training_device
from gfde_perception.training.student import build_student
from gfde_perception.training.teacher import build_teacher
import numpy as np

# Share of the budget left after fixed costs that teacher fine-tuning may use ('auto').
TEACHER_SHARE = 0.35
PLAN_FILE = 'plan.json'


@dataclass(frozen=True)
class Plan:
    """Epochs of each step and the estimated seconds of each part of the run."""

    teacher_mode: str
    teacher_epochs: int
    student_epochs: int
    estimates: dict
    budget_s: Optional[float]
    key: str

    @property
    def total_s(self) -> float:
        """Estimated seconds of the whole run."""
        return float(sum(self.estimates.values()))

    def describe(self) -> str:
        """One paragraph for the log: what will run and how long each part should take."""
        parts = ', '.join(f'{name} {_minutes(s)}' for name, s in self.estimates.items() if s)
        budget = (f' within the budget of {_minutes(self.budget_s)}'
                  if self.budget_s is not None else ' (no time budget set)')
        teacher = {'none': 'no teacher', 'bundle': 'teacher from a bundle',
                   'head': 'teacher: classifier head on frozen features',
                   'full': f'teacher: {self.teacher_epochs} epochs',
                   'auto': (f'teacher: head on frozen features, then {self.teacher_epochs} '
                            'fine-tuning epochs' if self.teacher_epochs else
                            'teacher: head on frozen features (no time to fine-tune)')}
        return (f'plan: {teacher[self.teacher_mode]}; student: {self.student_epochs} epochs; '
                f'estimated {_minutes(self.total_s)}{budget} ({parts})')


def _minutes(seconds: float) -> str:
    return f'{seconds / 60:.1f} min' if seconds >= 60 else f'{seconds:.0f} s'


def _time(fn, repeats: int = 2) -> float:
    fn()  # warm-up: allocator, lazy initialisation
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return float(np.median(samples))


def _step_times(model, data, spec, batch_size: int, augment) -> dict:
    """Seconds per batch: data preparation, forward, and training step (forward+backward)."""
    import torch

    batches = iterate_batches(data, spec, batch_size, shuffle=True, seed=0,
                              augment_cfg=augment)
    prep = _time(lambda: next(batches))
    inputs, labels, _ = next(iterate_batches(data, spec, batch_size))
    device = torch.device(training_device())  # timed where the loops will run
    model.to(device)
    x, y = torch.from_numpy(inputs).to(device), torch.from_numpy(labels).to(device)
    # CUDA runs asynchronously: a step is timed to the end of its kernels.
    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)

    def forward():
        model.eval()
        with torch.inference_mode():
            model(x)
        sync()

    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.0)

    def train_step():
        model.train()
        out = model(x)
        logits = out.logits if hasattr(out, 'logits') else out
        loss = torch.nn.functional.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync()

    times = {'prep': prep, 'forward': _time(forward), 'train': _time(train_step)}
    model.to('cpu').eval()
    return times


def plan_key(cfg: TrainConfig, splits) -> str:
    """Return the key of a plan: a hash of the configuration and the data."""
    import hashlib

    text = json.dumps({'config': cfg.to_dict(), 'train': splits.train.fingerprint()},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def make_plan(cfg: TrainConfig, splits, out_dir, log=print) -> Plan:
    """
    Measure, estimate and (with a budget) choose the epochs of the run; reuse a saved plan.

    :raises ConfigError: the budget cannot fit even one student epoch after the fixed costs.
    """
    out_dir = Path(out_dir)
    key = plan_key(cfg, splits)
    saved = out_dir / PLAN_FILE
    if saved.is_file():
        data = json.loads(saved.read_text())
        if data.get('key') == key:
            return Plan(**data)
    t0 = time.perf_counter()
    n_train, n_eval = len(splits.train), len(splits.val) + (
        len(splits.test) if splits.test is not None else 0)
    scfg, tcfg = cfg.student, cfg.teacher
    augment = scfg.optim.augment
    rows = n_train * augment.rows_per_image
    student = build_student(scfg, len(splits.classes))
    st = _step_times(student, splits.train, scfg.preprocessing, scfg.optim.batch_size, augment)
    student_epoch = num_batches(n_train, scfg.optim.batch_size) * (st['train'] + st['prep'])
    estimates = {}
    mode = 'none' if tcfg.kind == 'none' or scfg.distillation == 'none' else (
        'bundle' if tcfg.kind == 'bundle' else tcfg.train)
    teacher_epoch = 0.0
    if mode != 'none':
        teacher, tspec = build_teacher(tcfg, len(splits.classes))
        batch = max(64, tcfg.optim.batch_size)
        tt = _step_times(teacher, splits.train, tspec, batch, tcfg.optim.augment)
        label_all = (rows + n_eval) / batch * (tt['forward'] + tt['prep'])
        teacher_epoch = num_batches(n_train, tcfg.optim.batch_size) * (tt['train'] + tt['prep'])
        estimates['teacher labels'] = label_all
        if mode in ('head', 'auto'):
            estimates['teacher features'] = label_all
    # Exit step: features of the evaluation splits through the student (and of the training
    # split when the heads are refined on them), then calibration (seconds).
    refine = cfg.exits.refine_heads or cfg.exits.metric == 'learned'
    estimates['exits'] = ((n_train if refine else 0) + n_eval) / scfg.optim.batch_size * (
        st['forward'] + st['prep'])
    teacher_epochs = {'full': int(math.ceil(tcfg.optim.epochs)), 'auto': int(
        math.ceil(tcfg.optim.epochs))}.get(mode, 0)
    student_epochs = int(math.ceil(scfg.optim.epochs))
    budget = None if cfg.time_budget_minutes is None else 60.0 * cfg.time_budget_minutes
    if budget is not None:
        left = budget - sum(estimates.values()) - (time.perf_counter() - t0)
        if mode == 'auto':
            teacher_epochs = min(teacher_epochs, max(0, int(TEACHER_SHARE * left //
                                                            teacher_epoch)))
        # A configured 'full' teacher training is the user's call: kept, and counted.
        left -= teacher_epochs * teacher_epoch
        student_epochs = min(student_epochs, int(left // student_epoch))
        if student_epochs < 1:
            raise ConfigError(
                f'a time budget of {cfg.time_budget_minutes:g} min cannot fit one student epoch '
                f'({_minutes(student_epoch)}) after the fixed costs '
                f'({_minutes(sum(estimates.values()))}): raise time_budget_minutes')
    if teacher_epochs:
        estimates['teacher training'] = teacher_epochs * teacher_epoch
    estimates['student'] = student_epochs * student_epoch
    estimates['measuring'] = time.perf_counter() - t0
    plan = Plan(mode, teacher_epochs, student_epochs,
                {k: float(v) for k, v in estimates.items()}, budget, key)
    out_dir.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(asdict(plan), indent=2) + '\n')
    return plan
