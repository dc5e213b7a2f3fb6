# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
The one training loop: seeded, resumable, with progress bars, shared by the three steps.

A step supplies a ``loss_fn(model, inputs, labels, indices) -> (loss, logits)``; the loop owns the
batch order, the AdamW optimiser with warm-up + cosine schedule, gradient clipping, checkpoints
(model, optimiser, position in the epoch) and the per-epoch history.
"""

import json
import math
import os
from pathlib import Path
import time
from typing import Callable, Optional

from gfde_perception.errors import ConfigError, TrainingInterrupted
from gfde_perception.training.config import check_device, OptimConfig
from gfde_perception.training.data import iterate_batches, LabelledImages, num_batches
import numpy as np


_device = 'cpu'


def select_device(name: str = 'auto') -> str:
    """
    Choose the torch device that :func:`fit` and :func:`predict_batches` run on; return it.

    'auto' takes the first CUDA device when torch sees one, else the CPU; 'cuda' or 'cuda:N'
    insist on a GPU and say why none can be used. Models live on the CPU outside those two
    loops (checkpoints, bundles and the small head fits on cached features are CPU work), so
    everything else in training is the same on either device.

    :raises ConfigError: an unknown form, or a GPU asked for where torch sees none.
    """
    import torch

    global _device
    if check_device(name) == 'auto':
        name = 'cuda' if torch.cuda.is_available() else 'cpu'
    elif name != 'cpu':
        index = name[len('cuda:'):] if name.startswith('cuda:') else None
        if not torch.cuda.is_available():
            build = 'a CPU-only build' if torch.version.cuda is None else \
                f'built for CUDA {torch.version.cuda}'
            raise ConfigError(f'device {name!r}: torch {torch.__version__} ({build}) sees no '
                              'CUDA device; use --device cpu or auto')
        if index is not None and int(index) >= torch.cuda.device_count():
            raise ConfigError(f'device {name!r}: only {torch.cuda.device_count()} CUDA '
                              'device(s) present')
    if name != 'cpu':
        torch.backends.cudnn.benchmark = True  # fixed input sizes: pick the fastest kernels
    _device = name
    return name


def training_device() -> str:
    """Return the device chosen by :func:`select_device` ('cpu' until one is chosen)."""
    return _device


def seed_everything(seed: int, threads: Optional[int] = None):
    """Seed Python, numpy and torch; optionally pin torch's CPU thread count."""
    import random

    import torch

    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(int(threads))


def lr_at(step: int, total: int, cfg: OptimConfig) -> float:
    """Learning rate of ``step``: linear warm-up, then cosine decay to 1% of the peak."""
    warmup = int(cfg.warmup_fraction * total)
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return cfg.lr * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))


def _atomic_torch_save(obj, path: Path):
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + '.tmp')
    torch.save(obj, tmp)
    os.replace(tmp, path)


def epoch_line(desc: str, record: dict, epochs: int) -> str:
    """
    One readable line per finished epoch: loss, train accuracy, time and time left.

    ``record['train_acc']`` is one accuracy, or a list of them (one per early exit).
    """
    done = record['epoch'] + 1
    per_epoch = record['seconds'] / max(1, done - record.get('first_epoch', 0))
    left = per_epoch * (epochs - done)
    accuracy = ', '.join(f'{100 * a:.2f}%' for a in np.atleast_1d(record['train_acc']))
    return (f"{desc} epoch {done}/{epochs}: loss {record['loss']:.4f}, train accuracy "
            f"{accuracy}, {_duration(record['seconds'])} so far, about {_duration(left)} left")


def _duration(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    if seconds < 90:
        return f'{seconds:.0f} s'
    if seconds < 5400:
        return f'{seconds / 60:.1f} min'
    return f'{seconds / 3600:.1f} h'


def fit(model, loss_fn: Callable, train: LabelledImages, spec, cfg: OptimConfig, *,
        seed: int, checkpoint: Optional[Path] = None, desc: str = 'train',
        params=None, progress: bool = True, log: Optional[Callable] = None,
        frozen_norms: bool = False) -> dict:
    """
    Train ``model`` on ``train`` and return ``{'history': [...], 'steps': n, 'seconds': s}``.

    :param model: the torch module (put in train mode here).
    :param loss_fn: ``(model, inputs, labels, rows) -> (loss, logits)``, tensors; ``rows`` index
        precomputed per-image data (teacher logits: one row per image, or per augmented view).
    :param train: training images; batches are augmented per ``cfg.augment`` then preprocessed
        with ``spec`` (the one preprocessing path).
    :param spec: the model's :class:`~gfde_perception.preprocessing.PreprocessSpec`.
    :param cfg: optimisation settings.
    :param seed: fixes the batch order and augmentation of every epoch.
    :param checkpoint: file to resume from and to save to: every ``cfg.checkpoint_every``
        steps, every ``cfg.checkpoint_minutes`` minutes, at each epoch end and on Ctrl-C; a
        finished run found there is returned without training.
    :param desc: progress-bar and log label.
    :param params: parameters to optimise (default: all that require grad).
    :param progress: show a tqdm bar.
    :param log: optional callable receiving one readable line per finished epoch.
    :param frozen_norms: keep every batch-norm layer in eval mode (its running statistics
        fixed; its affine part still learns): fine-tuning a pretrained network on a few
        thousand images of another domain, whose batch statistics would replace the ones the
        pretrained features were made with.
    :raises TrainingInterrupted: on Ctrl-C, after saving the checkpoint.
    """
    import torch
    from tqdm import tqdm

    device = torch.device(_device)
    model.to(device)  # before the optimiser: its resumed state follows the parameters' device
    params = [p for p in (params if params is not None else model.parameters())
              if p.requires_grad]
    if not params:
        raise ConfigError(f'{desc}: nothing to train (no parameter requires grad)')
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    per_epoch = num_batches(len(train), cfg.batch_size)
    total = int(math.ceil(cfg.epochs * per_epoch))
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps)
    epochs = int(math.ceil(total / per_epoch))
    state = {'step': 0, 'history': [], 'seconds': 0.0, 'done': False}
    if checkpoint is not None and Path(checkpoint).is_file():
        saved = torch.load(checkpoint, map_location='cpu', weights_only=True)
        model.load_state_dict(saved['model'])
        optimizer.load_state_dict(saved['optimizer'])
        state = saved['state']
        if state['done']:
            model.to('cpu').eval()
            return {k: state[k] for k in ('history', 'step', 'seconds')} | {'resumed': True}

    def save(done=False):
        if checkpoint is not None:
            state['done'] = done
            state['seconds'] = time.perf_counter() - started
            _atomic_torch_save({'model': model.state_dict(), 'optimizer': optimizer.state_dict(),
                                'state': state}, Path(checkpoint))

    model.train()
    if frozen_norms:
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()
    step = state['step']
    first_epoch = step // per_epoch
    started = time.perf_counter() - state['seconds']
    last_save = time.monotonic()
    bar = tqdm(total=total, initial=step, desc=desc, disable=not progress, dynamic_ncols=True,
               mininterval=2.0)
    try:
        for epoch in range(first_epoch, epochs):
            sums = {'loss': 0.0, 'correct': 0, 'seen': 0}
            batches = iterate_batches(train, spec, cfg.batch_size, shuffle=True,
                                      seed=seed * 1000 + epoch, augment_cfg=cfg.augment,
                                      start_batch=step - epoch * per_epoch)
            for inputs, labels, rows in batches:
                if step >= total:
                    break
                for group in optimizer.param_groups:
                    group['lr'] = lr_at(step, total, cfg)
                y = torch.from_numpy(labels).to(device, non_blocking=True)
                x = torch.from_numpy(inputs).to(device, non_blocking=True)
                loss, logits = loss_fn(model, x, y, rows)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f'{desc}: loss became {loss.item()} at step {step}')
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                optimizer.step()
                step += 1
                state['step'] = step
                sums['loss'] += loss.item() * len(y)
                sums['correct'] += int((logits.argmax(1) == y).sum())
                sums['seen'] += len(y)
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{sums['loss'] / sums['seen']:.3f}",
                                acc=f"{sums['correct'] / sums['seen']:.3f}", refresh=False)
                if step % cfg.checkpoint_every == 0 or \
                        time.monotonic() - last_save > 60.0 * cfg.checkpoint_minutes:
                    save()
                    last_save = time.monotonic()
            if sums['seen']:
                record = {'epoch': epoch, 'step': step, 'loss': sums['loss'] / sums['seen'],
                          'train_acc': sums['correct'] / sums['seen'],
                          'seconds': time.perf_counter() - started}
                state['history'].append(record)
                if log is not None:
                    log(epoch_line(desc, {**record, 'first_epoch': first_epoch}, epochs))
            save(done=step >= total)
            last_save = time.monotonic()
            if step >= total:
                break
    except KeyboardInterrupt:
        save()
        raise TrainingInterrupted(
            f'{desc} interrupted at step {step} of {total} (epoch {step // per_epoch + 1} of '
            f'{epochs}); checkpoint saved to {checkpoint}: run the same command to resume',
            checkpoint) from None
    finally:
        bar.close()
        model.to('cpu')
    model.eval()
    return {'history': state['history'], 'step': step, 'seconds': state['seconds'],
            'resumed': False}


def predict(model, data: LabelledImages, spec, batch_size: int = 256,
            outputs: Callable = None, desc: str = 'predict', progress: bool = True):
    """
    Run ``model`` over ``data`` in eval mode (no augmentation) and stack its outputs.

    ``outputs(model, inputs) -> tensor or tuple of tensors`` picks what to keep (default: the
    model's output); returns numpy arrays in dataset order.
    """
    return predict_batches(model, iterate_batches(data, spec, batch_size), outputs, desc,
                           progress, total=num_batches(len(data), batch_size))


def predict_batches(model, batches, outputs: Callable = None, desc: str = 'predict',
                    progress: bool = True, total: Optional[int] = None):
    """
    Run ``model`` in eval mode over ready ``(inputs, labels, rows)`` batches; stack its outputs.

    The one inference loop of training: :func:`predict` feeds it a split, the teacher step the
    fixed views of :func:`~gfde_perception.training.data.iterate_views`. Outputs come back in
    batch order, as :func:`predict` describes.
    """
    import torch
    from tqdm import tqdm

    device = torch.device(_device)
    model.to(device).eval()
    chunks = []
    try:
        with torch.inference_mode():
            for inputs, _labels, _rows in tqdm(batches, total=total, desc=desc,
                                               disable=not progress, dynamic_ncols=True,
                                               mininterval=2.0):
                x = torch.from_numpy(inputs).to(device, non_blocking=True)
                out = outputs(model, x) if outputs else model(x)
                chunks.append(tuple(o.float().cpu().numpy() for o in out)
                              if isinstance(out, tuple) else out.float().cpu().numpy())
    finally:
        model.to('cpu')
    if chunks and isinstance(chunks[0], tuple):
        return tuple(np.concatenate(parts) for parts in zip(*chunks))
    return np.concatenate(chunks) if chunks else np.zeros((0,), np.float32)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy in [0, 1]."""
    if len(labels) == 0:
        return float('nan')
    return float((np.asarray(logits).argmax(1) == np.asarray(labels)).mean())


def write_json(path, data: dict):
    """Write ``data`` as indented JSON atomically (metrics files)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + '.tmp')
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=_jsonable) + '\n')
    os.replace(tmp, path)


def _jsonable(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f'not JSON serialisable: {type(value).__name__}')
