# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
The one model registry: every model family, every named variant, built from names or configs.

A *family* is a config dataclass (frozen, validated, bounded, with ``to_dict``/``from_dict`` and a
``family`` name) plus the module it builds. Every module exposes the segment interface the
runtime, the bundle and the benchmark use: ``segments[k](x) -> (features, pooled)``,
``exit_heads[k](pooled) -> logits``, ``num_exits`` and ``forward(x) -> GFDEOutput``.

Families: ``gfde`` (a GFNet or GFNet-C backbone with distillation head and early exits: the
method), ``convnet`` and ``mobilenetv2`` (baselines and the from-scratch teacher) and
``efficientnet-lite0`` (the ImageNet-pretrained CNN shipped on PyPI).

Named variants: GFNet variants take the official names and hyper-parameters of the reference
implementation (raoyongming/GFNet, ``main_gfnet.py``); ``gfnet-edge-*`` are small isotropic
GFNets (patch 4); ``gfnet-c-*`` are GFNet-C students; ``cnn-*``, ``resnet-*`` and
``mobilenetv2-*`` are baselines and teachers. Any field of a variant's config can be overridden
by keyword.
"""

from typing import Mapping

from gfde_perception.errors import ConfigError
from gfde_perception.models.baselines import (
    ConvNet, ConvNetConfig, MobileNetV2, MobileNetV2Config)
from gfde_perception.models.gfde import build_backbone, GFDE, GFDEConfig
from gfde_perception.models.gfnet import GFNet, GFNetConfig
from gfde_perception.models.gfnet_c import GFNetCConfig
from gfde_perception.models.teachers import (
    build_efficientnet_lite0, EfficientNetLite0, EfficientNetLite0Config)
import torch


# family name -> (config class, module class)
FAMILIES = {
    GFDEConfig.family: (GFDEConfig, GFDE),
    ConvNetConfig.family: (ConvNetConfig, ConvNet),
    MobileNetV2Config.family: (MobileNetV2Config, MobileNetV2),
    EfficientNetLite0Config.family: (EfficientNetLite0Config, EfficientNetLite0),
}

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
# GFNet-C: convolutional stem, then GFNet blocks on a small grid (models/gfnet_c.py); sized for
# robot-scale inputs on CPUs (docs/MODEL.md says how they were chosen).
GFNET_C_VARIANTS = {
    # A stride-1 then a stride-2 3x3 convolution (local texture at full resolution), one GFNet
    # block on the 14x14 grid (the first exit reads it: cheap and, measured, accurate enough to
    # answer most frames), then four wider blocks on 7x7 after a 2x2 stride-2 down-sampling.
    'gfnet-c-28': {'img_size': 28, 'in_chans': 1, 'num_classes': 10,
                   'stem_channels': (16, 32), 'stem_strides': (1, 2), 'embed_dims': (32, 128),
                   'depths': (1, 4), 'stage_strides': (2,), 'mlp_ratio': 2.0},
    'gfnet-c-32': {'img_size': 32, 'in_chans': 3, 'num_classes': 10,
                   'stem_channels': (16, 32), 'stem_strides': (1, 2), 'embed_dims': (32, 128),
                   'depths': (1, 4), 'stage_strides': (2,), 'mlp_ratio': 2.0},
    'gfnet-c-64': {'img_size': 64, 'in_chans': 3, 'num_classes': 10,
                   'stem_channels': (16, 32, 48), 'stem_strides': (2, 1, 2),
                   'embed_dims': (48, 160), 'depths': (1, 4), 'stage_strides': (2,),
                   'mlp_ratio': 2.0},
}
# Baselines and from-scratch teachers: (family, config arguments).
OTHER_VARIANTS = {
    # The classic small CNN a user writes first: four 3x3 convolutions with BatchNorm in two
    # stages, a 128-wide hidden layer (0.47 M parameters at 28x28 grey).
    'cnn-28': (ConvNetConfig.family, {'img_size': 28, 'in_chans': 1, 'widths': (32, 64),
                                      'convs': 2, 'pool': 'flatten', 'hidden': 128}),
    'cnn-32': (ConvNetConfig.family, {'img_size': 32, 'in_chans': 3, 'widths': (32, 64),
                                      'convs': 2, 'pool': 'flatten', 'hidden': 128}),
    # A ResNet-style CNN for small inputs (a widened ResNet-20: per stage one projecting
    # convolution then two residual pairs, 15 convolutions in all): the from-scratch teacher.
    'resnet-28': (ConvNetConfig.family, {'img_size': 28, 'in_chans': 1, 'widths': (32, 64, 128),
                                         'convs': 5, 'residual': True, 'pool': 'avg',
                                         'hidden': 0, 'drop_rate': 0.2}),
    'resnet-32': (ConvNetConfig.family, {'img_size': 32, 'in_chans': 3, 'widths': (32, 64, 128),
                                         'convs': 5, 'residual': True, 'pool': 'avg',
                                         'hidden': 0, 'drop_rate': 0.2}),
    # MobileNetV2 for small inputs: the paper's stage table from 32 px on (stride-1 stem, two
    # down-samplings to a 7x7 map at 28 px), width 0.5.
    'mobilenetv2-28': (MobileNetV2Config.family, {
        'img_size': 28, 'in_chans': 1, 'width_mult': 0.5, 'stem_stride': 1,
        'stages': ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 1), (6, 96, 3, 1)),
        'last_channels': 640}),
    'mobilenetv2-32': (MobileNetV2Config.family, {
        'img_size': 32, 'in_chans': 3, 'width_mult': 0.5, 'stem_stride': 1,
        'stages': ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1)),
        'last_channels': 640}),
    'efficientnet-lite0': (EfficientNetLite0Config.family, {}),
}
OFFICIAL_NAMES = ('gfnet-ti', 'gfnet-xs', 'gfnet-s', 'gfnet-b',
                  'gfnet-h-ti', 'gfnet-h-s', 'gfnet-h-b')
_GFDE_KEYS = ('exit_blocks', 'distill_head', 'exit_hidden_dim')


def list_models() -> list:
    """Names that :func:`build_model` accepts: GFNet, GFNet-C, then the other variants."""
    return list(GFNET_VARIANTS) + list(GFNET_C_VARIANTS) + list(OTHER_VARIANTS)


def config_from_dict(data: Mapping):
    """
    Build any family's config from its dict (``family`` selects; absent means 'gfde').

    :raises ConfigError: unknown family or an invalid config.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f'model config must be a mapping, got {type(data).__name__}')
    family = data.get('family', GFDEConfig.family)
    if family not in FAMILIES:
        raise ConfigError(f'unknown model family {family!r}; known: {sorted(FAMILIES)}')
    return FAMILIES[family][0].from_dict(data)


def build_from_config(config) -> torch.nn.Module:
    """Instantiate the module a (validated) family config describes, randomly initialised."""
    for config_cls, module_cls in FAMILIES.values():
        if type(config) is config_cls:
            return module_cls(config)
    raise ConfigError(f'not a registered model config: {type(config).__name__}')


def default_exit_blocks(config) -> tuple:
    """Return the default early exits: stage ends (staged backbones) or the depth's quarters."""
    depth = config.total_depth
    if getattr(config, 'hierarchical', False) or (
            isinstance(config, GFNetCConfig) and len(config.depths) > 1):
        ends, acc = [], 0
        for n in config.depths[:-1]:
            acc += n
            ends.append(acc)
        return tuple(ends)
    points = sorted({round(depth * q) for q in (0.25, 0.5, 0.75)})
    return tuple(b for b in points if 1 <= b < depth)


def gfnet_config(name: str, **overrides):
    """Return the backbone config (GFNet or GFNet-C) of a registered variant, with overrides."""
    if name in GFNET_C_VARIANTS:
        args, config_cls = dict(GFNET_C_VARIANTS[name]), GFNetCConfig
    elif name in GFNET_VARIANTS:
        args, config_cls = dict(GFNET_VARIANTS[name]), GFNetConfig
        if args.get('hierarchical'):
            # An isotropic override name on a hierarchical variant is almost surely a mistake.
            for bad, good in (('embed_dim', 'embed_dims'), ('depth', 'depths')):
                if bad in overrides:
                    raise ConfigError(f'{name} is hierarchical: override {good}, not {bad}')
    else:
        raise ConfigError(f'unknown GFNet variant {name!r}; known: '
                          f'{list(GFNET_VARIANTS) + list(GFNET_C_VARIANTS)}')
    args.update(overrides)
    unknown = set(args) - set(config_cls.__dataclass_fields__)
    if unknown:
        raise ConfigError(f'unknown overrides for {name}: {sorted(unknown)}')
    return config_cls(**args)


def build_model(name: str, **overrides):
    """
    Build a registered model, randomly initialised (``efficientnet-lite0``: ImageNet weights).

    GFNet and GFNet-C variants return a :class:`GFDE` (exits at :func:`default_exit_blocks`
    unless ``exit_blocks`` is given; ``distill_head`` defaults to True), or the bare backbone
    with ``backbone_only=True``. Other variants return their family's module; every config
    field is an override (``efficientnet-lite0`` also takes ``pretrained``).

    :raises ConfigError: unknown name or bad override.
    """
    if name in GFNET_VARIANTS or name in GFNET_C_VARIANTS:
        backbone_only = bool(overrides.pop('backbone_only', False))
        gfde_args = {k: overrides.pop(k) for k in _GFDE_KEYS if k in overrides}
        config = gfnet_config(name, **overrides)
        if backbone_only:
            if gfde_args:
                raise ConfigError(f'{sorted(gfde_args)} need a GFDE, not backbone_only=True')
            return build_backbone(config)
        gfde_args.setdefault('exit_blocks', default_exit_blocks(config))
        return GFDE(GFDEConfig(backbone=config, **gfde_args))
    if name not in OTHER_VARIANTS:
        raise ConfigError(f'unknown model {name!r}; known: {list_models()}')
    family, args = OTHER_VARIANTS[name]
    config_cls = FAMILIES[family][0]
    if family == EfficientNetLite0Config.family:
        pretrained = bool(overrides.pop('pretrained', True))
        config = config_cls.from_dict({**args, **overrides})
        return build_efficientnet_lite0(config.num_classes, config.in_chans, pretrained,
                                        config.img_size)
    return build_from_config(config_cls.from_dict({**args, **overrides}))


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
