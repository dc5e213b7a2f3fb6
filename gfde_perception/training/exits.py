# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Step 3: train the early-exit heads on the frozen student, calibrate thresholds, bundle.

The backbone and the final classifier stay frozen, so the final exit keeps the distilled
student's accuracy. An exit reads a normalised, pooled feature; the backbone says which part of
that is fixed (``exit_feature``: the affine-free mean token of a GFNet, whose LayerNorm affine
commutes with the mean; the mean map of a GFNet-C, whose pooled-feature norm is a BatchNorm1d), so
that part is computed once per image and cached, and the exits (norm + head) train on the cache in
seconds per epoch instead of re-running the backbone. The heads start from the weights the student
step gave them (trained jointly with the backbone when ``student.exit_weight`` > 0). Exits learn
from the labels and, with weight ``self_distill``, from the frozen final exit's probabilities.
"""

import json
from pathlib import Path
import time

from gfde_perception.bundle import Bundle, save_bundle
from gfde_perception.errors import ConfigError
from gfde_perception.gating import GateConfig, uncertainty_features
from gfde_perception.models.flops import exit_head_cost, segment_macs
from gfde_perception.training.calibration import calibrate, cascade_report
from gfde_perception.training.config import TrainConfig
from gfde_perception.training.loop import epoch_line, lr_at, predict, write_json
from gfde_perception.training.student import build_student, load_student_checkpoint
import numpy as np


def exit_features(model, data, spec, batch_size: int = 256, progress=True,
                  desc: str = 'exit features') -> tuple:
    """
    Per early exit the (N, C_k) affine-free normalised mean token, and final logits.

    Returns ``(features: list of float32 arrays, final_logits (N, K))``.
    """
    n_early = len(model.exits)

    def outputs(m, tokens):
        feats = []
        for k, segment in enumerate(m.segments):
            tokens, pooled = segment(tokens)
            if k < n_early:
                feats.append(m.backbone.exit_feature(tokens, m.exits[k].norm))
        return (*feats, m.exit_heads[-1](pooled))

    *feats, finals = predict(model, data, spec, batch_size, outputs, desc, progress)
    return list(feats), finals


def _exit_logits(model, branch, feats):
    """Logits of one exit branch from cached features (torch, differentiable)."""
    return branch.head(model.backbone.apply_norm(branch.norm, feats))


def fit_exit_heads(model, features, labels, final_logits, cfg: TrainConfig, progress=True,
                   log=print) -> list:
    """Train every early exit (norm affine + head) on cached features; returns the history."""
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    ecfg = cfg.exits
    optim = ecfg.optim
    params = [p for branch in model.exits for p in branch.parameters()]
    if not params:
        raise ConfigError('the student has no early exits to train (exit_blocks is empty)')
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=optim.lr, weight_decay=optim.weight_decay)
    feats = [torch.from_numpy(f) for f in features]
    y = torch.from_numpy(np.asarray(labels))
    soft = torch.softmax(torch.from_numpy(final_logits), dim=1)
    n = len(y)
    per_epoch = (n + optim.batch_size - 1) // optim.batch_size
    total = int(np.ceil(optim.epochs * per_epoch))
    if optim.max_steps is not None:
        total = min(total, optim.max_steps)
    epochs = int(np.ceil(total / per_epoch))
    gen = torch.Generator().manual_seed(cfg.seed + 2)
    started = time.perf_counter()
    history, step = [], 0
    model.train()
    bar = tqdm(total=total, desc='exits', disable=not progress, dynamic_ncols=True,
               mininterval=2.0)
    while step < total:
        order = torch.randperm(n, generator=gen)
        loss_sum, correct = 0.0, np.zeros(len(feats))
        seen = 0
        for start in range(0, n, optim.batch_size):
            if step >= total:
                break
            idx = order[start:start + optim.batch_size]
            for group in opt.param_groups:
                group['lr'] = lr_at(step, total, optim)
            loss = 0.0
            for k, branch in enumerate(model.exits):
                logits = _exit_logits(model, branch, feats[k][idx])
                hard = F.cross_entropy(logits, y[idx], label_smoothing=optim.label_smoothing)
                kd = -(soft[idx] * F.log_softmax(logits, dim=1)).sum(1).mean()
                loss = loss + (1 - ecfg.self_distill) * hard + ecfg.self_distill * kd
                correct[k] += float((logits.argmax(1) == y[idx]).sum())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += float(loss.detach()) * len(idx)
            seen += len(idx)
            step += 1
            bar.update(1)
        record = {'step': step, 'loss': loss_sum / seen,
                  'train_acc': [float(c / seen) for c in correct],
                  'seconds': time.perf_counter() - started}
        log(epoch_line('exits', {**record, 'epoch': len(history)}, epochs))
        history.append(record)
    bar.close()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(True)
    return history


def early_exit_logits(model, features) -> list:
    """Numpy logits of every early exit from cached features."""
    import torch

    with torch.inference_mode():
        return [_exit_logits(model, branch, torch.from_numpy(f)).numpy()
                for branch, f in zip(model.exits, features)]


def fit_learned_gate(exit_logits, labels, steps: int = 500, lr: float = 0.5) -> tuple:
    """
    Logistic gate over (max_softmax, margin, entropy) predicting "this exit is right".

    Fitted by full-batch gradient descent on the training split's early exits (pooled over
    exits); returns ``(w_max_softmax, w_margin, w_entropy, bias)`` for :mod:`gating`.
    """
    x = np.concatenate([uncertainty_features(lg) for lg in exit_logits])  # (E*N, 3)
    t = np.concatenate([(lg.argmax(1) == labels) for lg in exit_logits]).astype(np.float64)
    w = np.zeros(4)
    xb = np.hstack([x, np.ones((len(x), 1))])
    for _ in range(steps):
        p = 0.5 * (1.0 + np.tanh(0.5 * (xb @ w)))
        w -= lr * xb.T @ (p - t) / len(t)
    return tuple(float(v) for v in w)


def cumulative_exit_macs(model) -> list:
    """Count the MACs to reach and run each exit under the sequential schedule (batch 1)."""
    seg = segment_macs(model)
    heads = exit_head_cost(model)
    out, acc = [], 0
    for k in range(model.num_exits):
        acc += seg[k] + heads[k].get('norm_pool_macs', 0) + heads[k].get('head_macs', 0)
        out.append(acc)
    return out


def evaluate_cascade(model, gate, data, spec, progress=True, features=None) -> dict:
    """Cascade report of ``model`` with ``gate`` on ``data`` (accuracy, exit rates, MACs)."""
    if features is None:
        features = exit_features(model, data, spec, progress=progress)
    feats, final = features
    early = early_exit_logits(model, feats)
    conf = [gate.confidence(lg) for lg in early]
    report = cascade_report(conf, [lg.argmax(1) for lg in early], final.argmax(1), data.labels,
                            gate.thresholds, cumulative_exit_macs(model))
    report['blocks_per_exit'] = list(model.blocks_per_exit)
    return report


def train_exits(cfg: TrainConfig, splits, out_dir, progress=True, log=print,
                student_tag: str = 'student') -> dict:
    """Train exits, calibrate thresholds on validation, write the bundle; return metrics."""
    import torch

    out_dir = Path(out_dir)
    spec = cfg.student.preprocessing
    model = build_student(cfg.student, len(splits.classes))
    load_student_checkpoint(model, out_dir / f'{student_tag}.ckpt')
    ckpt = out_dir / 'exits.ckpt'
    refine = len(model.exits) > 0 and cfg.exits.refine_heads and not ckpt.is_file()
    # Training-split features only where something trains on them (head refinement, the
    # learned gate): a pass over the whole training set is minutes on a CPU.
    train_f = (exit_features(model, splits.train, spec, progress=progress,
                             desc='exit features train')
               if refine or (len(model.exits) and cfg.exits.metric == 'learned') else None)
    val_f = exit_features(model, splits.val, spec, progress=progress, desc='exit features val')
    if not len(model.exits):
        history = []  # a model without early exits (a baseline): bundle it as it is
    elif ckpt.is_file():
        model.load_state_dict(torch.load(ckpt, map_location='cpu', weights_only=True)['model'])
        history = json.loads((out_dir / 'exits_history.json').read_text())
        log(f'exits: resumed trained heads from {ckpt}')
    elif not cfg.exits.refine_heads:
        history = []  # heads trained jointly with the backbone; calibration only
    else:
        history = fit_exit_heads(model, train_f[0], splits.train.labels, train_f[1], cfg,
                                 progress=progress, log=log)
        torch.save({'model': model.state_dict()}, ckpt)
        write_json(out_dir / 'exits_history.json', history)
    learned = None
    if cfg.exits.metric == 'learned':
        learned = fit_learned_gate(early_exit_logits(model, train_f[0]), splits.train.labels)
    probe = GateConfig(cfg.exits.metric, (0.5,) * len(model.exits), learned)
    val_early = early_exit_logits(model, val_f[0])
    thresholds, reasons = calibrate(
        [probe.confidence(lg) for lg in val_early], [lg.argmax(1) for lg in val_early],
        val_f[1].argmax(1), splits.val.labels, cfg.exits.budget_points,
        cfg.exits.min_exit_samples, cfg.exits.confidence)
    for k, reason in enumerate(reasons):
        log(f'exit {k}: threshold {thresholds[k]:.3f}: {reason}')
    gate = probe.with_thresholds(thresholds)
    metrics = {'history': history, 'gate': gate.to_dict(), 'calibration': list(reasons),
               'budget_points': cfg.exits.budget_points,
               'confidence': cfg.exits.confidence,
               'val': evaluate_cascade(model, gate, splits.val, spec, features=val_f)}
    if splits.test is not None:
        metrics['test'] = evaluate_cascade(model, gate, splits.test, spec, progress=progress)
    for split in ('val', 'test'):
        if split in metrics:
            log(format_report(metrics[split], f'exits on {split}'))
    write_bundle(cfg, model, gate, splits, out_dir, metrics)
    write_json(out_dir / 'exits_metrics.json', metrics)
    return metrics


def format_report(report: dict, title: str) -> str:
    """Render a cascade report as a small text table (accuracy, exit rate, compute per exit)."""
    lines = [f"{title}: accuracy {100 * report['accuracy']:.2f}% (final exit alone "
             f"{100 * report['final_exit_accuracy']:.2f}%), expected compute "
             f"{100 * report.get('compute_ratio', float('nan')):.1f}% of the full network",
             '  exit  blocks  threshold  exit rate  acc. taken  acc. alone  cumulative MMACs']
    blocks = report.get('blocks_per_exit', [None] * len(report['per_exit']))
    for row, b in zip(report['per_exit'], blocks):
        thr = '-' if row['threshold'] is None else f"{row['threshold']:.3f}"
        taken = '-' if row['accuracy_taken'] is None else f"{100 * row['accuracy_taken']:.2f}%"
        macs = row.get('cumulative_macs')
        macs = '-' if macs is None else f'{macs / 1e6:.2f}'
        lines.append(f"  {row['exit']:>4}  {str(b):>6}  {thr:>9}  {100 * row['exit_rate']:>8.2f}%"
                     f"  {taken:>10}  {100 * row['accuracy_alone']:>9.2f}%  {macs:>16}")
    return '\n'.join(lines)


def write_bundle(cfg: TrainConfig, model, gate, splits, out_dir, exit_metrics: dict):
    """Save the student with exits and calibrated gate as a ``.gfde`` bundle."""
    out_dir = Path(out_dir)

    def read(name):
        path = out_dir / name
        return json.loads(path.read_text()) if path.is_file() else {}

    teacher = read('teacher_metrics.json')
    student = read('student_metrics.json')
    metrics = {
        'dataset': splits.describe(),
        'teacher': {k: teacher.get(k) for k in ('val_acc', 'test_acc', 'parameters',
                                                'input_size', 'kind', 'train_seconds')
                    if k in teacher},
        'student': {k: student.get(k) for k in ('val_acc', 'test_acc', 'parameters',
                                                'distillation', 'train_seconds')
                    if k in student},
        'exits': {k: exit_metrics[k] for k in ('val', 'test', 'budget_points', 'confidence')
                  if k in exit_metrics},
    }
    # What each step really ran with: a step run earlier (or with other --set overrides) is
    # recorded from its own metrics, not from this invocation's configuration.
    now = cfg.to_dict()
    steps = {'teacher': teacher.get('run_config'), 'student': student.get('run_config'),
             'exits': now}
    config = dict(now)
    for section in ('teacher', 'student'):
        if steps[section]:
            config[section] = steps[section][section]
    provenance = {
        'tool': 'gfde-train',
        'config': config,
        'steps': steps,
        'data': splits.describe(),
        'teacher': teacher.get('kind'),
        'distillation': student.get('distillation'),
        'seed': cfg.seed,
    }
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    spec = cfg.student.preprocessing
    bundle = Bundle(name=cfg.name, config=model.config, preprocessing=spec,
                    labels=tuple(splits.classes), gate=gate, state_dict=state,
                    provenance=provenance, metrics=_plain(metrics), checksum='')
    path = cfg.bundle_path
    path.parent.mkdir(parents=True, exist_ok=True)
    save_bundle(bundle, path)
    return path


def _plain(value):
    """Round-trip through JSON so the manifest holds only plain types."""
    return json.loads(json.dumps(value, default=lambda v: v.item() if hasattr(v, 'item')
                                 else str(v)))


__all__ = ['train_exits', 'exit_features', 'fit_exit_heads', 'evaluate_cascade',
           'fit_learned_gate', 'cumulative_exit_macs', 'write_bundle']
