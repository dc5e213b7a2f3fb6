# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
The one model registry: every GFNet/GFDE variant and every teacher is built here.

GFNet variants take the official names and hyper-parameters of the reference implementation
(raoyongming/GFNet, ``main_gfnet.py``); the ``gfnet-edge-*`` variants are small-input models
(patch 4) for robot-scale datasets. Any :class:`GFNetConfig` or :class:`GFDEConfig` field can
be overridden by keyword.
"""

import importlib
from typing import Mapping

from gfde_perception.errors import ConfigError
from gfde_perception.models.gfde import GFDE, GFDEConfig
from gfde_perception.models.gfnet import GFNet, GFNetConfig
import torch


_ISO = {'patch_size': 16, 'img_size': 224, 'num_classes': 1000, 'mlp_ratio': 4.0}
_HIER = {'patch_size': 4, 'img_size': 224, 'num_classes': 1000, 'mlp_ratio': 4.0,
         'hierarchical': True}

# Official hyper-parameters (facts from the reference main_gfnet.py).
GFNET_VARIANTS = {
    'gfnet-ti': dict(_ISO, embed_dim=256, depth=12),
    'gfnet-xs': dict(_ISO, embed_dim=384, depth=12),
    'gfnet-s': dict(_ISO, embed_dim=384, depth=19, drop_path_rate=0.15),
    'gfnet-b': dict(_ISO, embed_dim=512, depth=19, drop_path_rate=0.25),
    'gfnet-h-ti': dict(_HIER, embed_dims=(64, 128, 256, 512), depths=(3, 3, 10, 3),
                       drop_path_rate=0.1, layer_scale_init=1e-3),
    'gfnet-h-s': dict(_HIER, embed_dims=(96, 192, 384, 768), depths=(3, 3, 10, 3),
                      drop_path_rate=0.2, layer_scale_init=1e-5),
    'gfnet-h-b': dict(_HIER, embed_dims=(96, 192, 384, 768), depths=(3, 3, 27, 3),
                      drop_path_rate=0.4, layer_scale_init=1e-6),
    # Small-input variants: patch 4, a 7x7, 8x8 or 16x16 grid; sized to train on a CPU.
    'gfnet-edge-28': {'img_size': 28, 'patch_size': 4, 'in_chans': 1, 'num_classes': 10,
                      'embed_dim': 48, 'depth': 12},
    'gfnet-edge-32': {'img_size': 32, 'patch_size': 4, 'in_chans': 3, 'num_classes': 10,
                      'embed_dim': 128, 'depth': 12},
    'gfnet-edge-64': {'img_size': 64, 'patch_size': 4, 'in_chans': 3, 'num_classes': 10,
                      'embed_dim': 192, 'depth': 12},
}
OFFICIAL_NAMES = ('gfnet-ti', 'gfnet-xs', 'gfnet-s', 'gfnet-b',
                  'gfnet-h-ti', 'gfnet-h-s', 'gfnet-h-b')
_GFDE_KEYS = ('exit_blocks', 'distill_head', 'exit_hidden_dim')


def _teachers() -> Mapping:
    """Return the training engineer's teachers (``models/teachers.py``); empty until it exists."""
    try:
        module = importlib.import_module('gfde_perception.models.teachers')
    except ModuleNotFoundError as exc:
        if exc.name != 'gfde_perception.models.teachers':
            raise
        return {}
    return dict(getattr(module, 'TEACHERS', {}))


def list_models() -> list:
    """Names that :func:`build_model` accepts: GFNet variants, then teachers."""
    return list(GFNET_VARIANTS) + sorted(set(_teachers()) - set(GFNET_VARIANTS))


def default_exit_blocks(config: GFNetConfig) -> tuple:
    """Return the default early exits: stage ends (GFNet-H) or the quarter points of the depth."""
    depth = config.total_depth
    if config.hierarchical:
        ends, acc = [], 0
        for n in config.depths[:-1]:
            acc += n
            ends.append(acc)
        return tuple(ends)
    points = sorted({round(depth * q) for q in (0.25, 0.5, 0.75)})
    return tuple(b for b in points if 1 <= b < depth)


def gfnet_config(name: str, **overrides) -> GFNetConfig:
    """Return the :class:`GFNetConfig` of a registered variant, with overrides applied."""
    if name not in GFNET_VARIANTS:
        raise ConfigError(f'unknown GFNet variant {name!r}; known: {list(GFNET_VARIANTS)}')
    args = dict(GFNET_VARIANTS[name])
    if args.get('hierarchical'):
        # An isotropic override name on a hierarchical variant is almost surely a mistake.
        for bad, good in (('embed_dim', 'embed_dims'), ('depth', 'depths')):
            if bad in overrides:
                raise ConfigError(f'{name} is hierarchical: override {good}, not {bad}')
    args.update(overrides)
    unknown = set(args) - set(GFNetConfig.__dataclass_fields__)
    if unknown:
        raise ConfigError(f'unknown overrides for {name}: {sorted(unknown)}')
    return GFNetConfig(**args)


def build_model(name: str, **overrides):
    """
    Build a registered model.

    GFNet variants return a :class:`GFDE` (exits at :func:`default_exit_blocks` unless
    ``exit_blocks`` is given; ``distill_head`` defaults to True), or the plain :class:`GFNet`
    with ``backbone_only=True``. Teachers return whatever their factory builds
    (``num_classes``, ``in_chans``, ``pretrained`` keywords).

    :raises ConfigError: unknown name or bad override.
    """
    if name not in GFNET_VARIANTS:
        teachers = _teachers()
        if name in teachers:
            return teachers[name](**overrides)
        raise ConfigError(f'unknown model {name!r}; known: {list_models()}')
    backbone_only = bool(overrides.pop('backbone_only', False))
    gfde_args = {k: overrides.pop(k) for k in _GFDE_KEYS if k in overrides}
    config = gfnet_config(name, **overrides)
    if backbone_only:
        if gfde_args:
            raise ConfigError(f'{sorted(gfde_args)} need a GFDE, not backbone_only=True')
        return GFNet(config)
    gfde_args.setdefault('exit_blocks', default_exit_blocks(config))
    return GFDE(GFDEConfig(backbone=config, **gfde_args))


def _unwrap(state_dict: Mapping) -> dict:
    if isinstance(state_dict, Mapping) and 'model' in state_dict \
            and isinstance(state_dict['model'], Mapping):
        state_dict = state_dict['model']
    if not isinstance(state_dict, Mapping):
        raise ConfigError(f'expected a state_dict mapping, got {type(state_dict).__name__}')
    return dict(state_dict)


def gfnet_from_official(state_dict: Mapping, arch: str, num_classes: int = None) -> GFNet:
    """
    Build a GFNet from an official checkpoint (reference key names), strictly.

    :param state_dict: the checkpoint's state_dict, or the ``{'model': state_dict}`` file content.
    :param arch: official name (``gfnet-ti`` ... ``gfnet-h-b``) or any registered GFNet variant.
    :param num_classes: new class count; only the head is re-initialised (transfer learning).

    The input size is read from ``pos_embed`` (so fine-tuned 384 px checkpoints load too) and
    the class count from ``head.weight``.

    :raises ConfigError: unknown arch, or keys/shapes that do not fit the architecture (the first
        few offending keys are named).
    """
    sd = _unwrap(state_dict)
    base = GFNET_VARIANTS.get(arch)
    if base is None:
        raise ConfigError(f'unknown GFNet arch {arch!r}; known: {list(GFNET_VARIANTS)}')
    overrides = {'drop_path_rate': 0.0}
    if 'head.weight' in sd:
        overrides['num_classes'] = int(sd['head.weight'].shape[0])
    proj_key = 'patch_embed.0.proj.weight' if base.get('hierarchical') else \
        'patch_embed.proj.weight'
    if 'pos_embed' in sd and sd['pos_embed'].ndim == 3:
        grid = int(round(sd['pos_embed'].shape[1] ** 0.5))
        overrides['img_size'] = grid * base['patch_size']
    proj = sd.get(proj_key)
    if proj is not None and proj.ndim == 4:
        overrides['in_chans'] = int(proj.shape[1])
    # Built on the meta device: random initialisation of 50 M weights that the checkpoint
    # replaces anyway would cost seconds.
    with torch.device('meta'):
        model = GFNet(gfnet_config(arch, **overrides))
    if proj is not None and proj.ndim < 4:
        # Early reference checkpoints stored the patch projection as a linear layer.
        sd[proj_key] = proj.reshape(model.state_dict()[proj_key].shape)
    sd = {k: torch.as_tensor(v).detach().to('cpu', torch.float32, copy=True)
          for k, v in sd.items()}
    _strict_load(model, sd, arch)
    if num_classes is not None and num_classes != model.config.num_classes:
        model.reset_classifier(num_classes)
    return model


def state_dict_problems(expected: Mapping, state_dict: Mapping) -> list:
    """
    List how ``state_dict`` differs from ``expected``, a mapping of key to shape.

    Each entry counts one kind of problem (missing keys, unexpected keys, wrong shapes) and
    names the first few; the list is empty when the keys and shapes fit exactly.
    """
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = [f'{k}: {tuple(state_dict[k].shape)} instead of {tuple(expected[k])}'
             for k in expected
             if k in state_dict and tuple(state_dict[k].shape) != tuple(expected[k])]
    kinds = (('missing', missing), ('unexpected', unexpected), ('with wrong shape', wrong))
    return [f'{len(items)} {kind} (first: {items[:5]})' for kind, items in kinds if items]


def _strict_load(model: torch.nn.Module, sd: Mapping, what: str) -> None:
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    problems = state_dict_problems(expected, sd)
    if problems:
        raise ConfigError(f'checkpoint does not fit {what}: ' + '; '.join(problems))
    model.load_state_dict(sd, strict=True, assign=True)
