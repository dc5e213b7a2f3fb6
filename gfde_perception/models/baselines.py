# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
The networks GFDE is measured against, and the from-scratch teacher: plain CNNs and MobileNetV2.

Both families expose the segment interface of every model in the registry, with one segment and
no early exit: ``segments[0](x) -> (features, pooled)`` and ``exit_heads[0](pooled) -> logits``,
so the runtime, the bundle and the benchmark treat them exactly like a GFDE model run to its
final exit. ``pooled`` is the last hidden vector, so each head is one linear layer, as in GFDE.

* :class:`ConvNet`: stages of 3x3 convolutions with BatchNorm and ReLU, 2x2 max-pooling between
  stages, optional residual connections, then either a flattened map into a hidden dense layer
  (the classic small CNN a user writes first) or global average pooling (the teacher).
* :class:`MobileNetV2`: inverted residual blocks with linear bottlenecks (Sandler et al., 2018),
  written from the paper's description, with a stage table and width multiplier sized for small
  inputs.
"""

from dataclasses import dataclass
from typing import Mapping

from gfde_perception.errors import ConfigError
from gfde_perception.models.gfde import GFDEOutput
from gfde_perception.models.layers import config_from_dict, config_to_dict, conv_init_
import torch
from torch import nn

MAX_WIDTH = 4096
MAX_LAYERS = 64
MAX_IMG_SIZE = 1024
POOLS = ('flatten', 'avg')


def _ints(name: str, value, low: int, high: int) -> tuple:
    try:
        out = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f'{name} must be a list of integers, got {value!r}') from None
    if any(isinstance(v, bool) for v in value) or any(not low <= v <= high for v in out):
        raise ConfigError(f'{name} values must lie in [{low}, {high}], got {value!r}')
    return out


def check_io_fields(config) -> None:
    for name, limit in (('img_size', MAX_IMG_SIZE), ('in_chans', MAX_WIDTH),
                        ('num_classes', 100000)):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
            raise ConfigError(f'{name} must be an int in [1, {limit}], got {value!r}')
    if not 0.0 <= config.drop_rate < 1.0:
        raise ConfigError(f'drop_rate must be in [0, 1), got {config.drop_rate}')


class SingleExitConfig:
    """Shared parts of the configs of models without early exits."""

    exit_blocks = ()
    num_exits = 1

    @property
    def blocks_per_exit(self) -> tuple:
        """One 'block' (the whole network) at the only exit."""
        return (1,)

    def to_dict(self) -> dict:
        """Return a JSON-ready dict with the ``family`` the registry reads."""
        return {'family': self.family, **config_to_dict(self)}

    @classmethod
    def from_dict(cls, data: Mapping):
        """Build from :meth:`to_dict` output; unknown keys are a :class:`ConfigError`."""
        return config_from_dict(cls, data, cls.family)


@dataclass(frozen=True)
class ConvNetConfig(SingleExitConfig):
    """
    A plain CNN.

    :ivar img_size: square input side in pixels.
    :ivar in_chans: input channels.
    :ivar num_classes: classifier outputs.
    :ivar widths: channels of each stage; a 2x2 max-pool follows every stage but the last
        (and the last too with ``pool='flatten'``).
    :ivar convs: 3x3 convolutions per stage.
    :ivar residual: add an identity (or 1x1 projection) shortcut around each stage's pairs of
        convolutions (a ResNet-style teacher); False for the plain CNN.
    :ivar pool: 'flatten' (the last map flattened into the hidden layer) or 'avg' (global
        average pooling).
    :ivar hidden: width of the hidden dense layer before the classifier (0: none).
    :ivar drop_rate: dropout before the classifier.
    """

    img_size: int = 28
    in_chans: int = 1
    num_classes: int = 10
    widths: tuple = (32, 64)
    convs: int = 2
    residual: bool = False
    pool: str = 'flatten'
    hidden: int = 128
    drop_rate: float = 0.3

    family = 'convnet'

    def __post_init__(self):
        check_io_fields(self)
        object.__setattr__(self, 'widths', _ints('widths', self.widths, 1, MAX_WIDTH))
        if not 1 <= len(self.widths) <= 6:
            raise ConfigError(f'widths needs 1 to 6 stages, got {self.widths}')
        if isinstance(self.convs, bool) or not isinstance(self.convs, int) \
                or not 1 <= self.convs * len(self.widths) <= MAX_LAYERS:
            raise ConfigError(f'convs must be an int >= 1 (at most {MAX_LAYERS} convolutions '
                              f'in all), got {self.convs!r}')
        if self.pool not in POOLS:
            raise ConfigError(f'pool must be one of {POOLS}, got {self.pool!r}')
        if isinstance(self.hidden, bool) or not isinstance(self.hidden, int) \
                or not 0 <= self.hidden <= MAX_WIDTH:
            raise ConfigError(f'hidden must be an int in [0, {MAX_WIDTH}], got {self.hidden!r}')
        if not isinstance(self.residual, bool):
            raise ConfigError(f'residual must be a bool, got {self.residual!r}')
        pools = len(self.widths) if self.pool == 'flatten' else len(self.widths) - 1
        if self.img_size % (2 ** pools):
            raise ConfigError(f'img_size {self.img_size} must be a multiple of {2 ** pools} '
                              f'({pools} max-pools)')

    @property
    def num_features(self) -> int:
        """Width of the pooled vector the classifier reads."""
        if self.hidden:
            return self.hidden
        if self.pool == 'avg':
            return self.widths[-1]
        side = self.img_size // 2 ** len(self.widths)
        return self.widths[-1] * side * side


@dataclass(frozen=True)
class MobileNetV2Config(SingleExitConfig):
    """
    MobileNetV2 for small inputs.

    :ivar img_size: square input side.
    :ivar in_chans: input channels.
    :ivar num_classes: classifier outputs.
    :ivar width_mult: multiplies every width (rounded to a multiple of 8, as in the paper).
    :ivar stem_stride: stride of the first 3x3 convolution (1 keeps small inputs' detail).
    :ivar stages: rows (t expansion, c channels, n repeats, s stride of the first block).
    :ivar last_channels: width of the final 1x1 convolution (the paper's 1280 for ImageNet;
        widened, never narrowed, by a width_mult above 1, as in the paper).
    :ivar drop_rate: dropout before the classifier.
    """

    img_size: int = 28
    in_chans: int = 1
    num_classes: int = 10
    width_mult: float = 1.0
    stem_stride: int = 1
    stages: tuple = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 1),
                     (6, 96, 3, 1))
    last_channels: int = 1280
    drop_rate: float = 0.2

    family = 'mobilenetv2'

    def __post_init__(self):
        check_io_fields(self)
        if not 0.0 < self.width_mult <= 4.0:
            raise ConfigError(f'width_mult must be in (0, 4], got {self.width_mult}')
        if self.stem_stride not in (1, 2):
            raise ConfigError(f'stem_stride must be 1 or 2, got {self.stem_stride!r}')
        try:
            rows = tuple(tuple(int(v) for v in row) for row in self.stages)
        except (TypeError, ValueError):
            raise ConfigError(f'stages must be rows of 4 integers, got {self.stages!r}') \
                from None
        if not 1 <= len(rows) <= 12 or any(len(r) != 4 for r in rows):
            raise ConfigError(f'stages needs 1 to 12 rows of (t, c, n, s), got {self.stages!r}')
        for t, c, n, s in rows:
            if not (1 <= t <= 16 and 1 <= c <= MAX_WIDTH and 1 <= n <= 16 and s in (1, 2)):
                raise ConfigError(f'bad stage row (t={t}, c={c}, n={n}, s={s})')
        if sum(r[2] for r in rows) > MAX_LAYERS:
            raise ConfigError(f'at most {MAX_LAYERS} blocks in all')
        object.__setattr__(self, 'stages', rows)
        if not 1 <= self.last_channels <= MAX_WIDTH:
            raise ConfigError(f'last_channels must be in [1, {MAX_WIDTH}]')
        stride = self.stem_stride * 2 ** sum(1 for r in rows if r[3] == 2)
        if self.img_size % stride:
            raise ConfigError(f'img_size {self.img_size} must be a multiple of {stride}')

    @property
    def num_features(self) -> int:
        """Width of the pooled vector the classifier reads."""
        return _round8(self.last_channels * max(1.0, self.width_mult))


def _round8(value: float) -> int:
    """Round a width to a multiple of 8, never below 90% of it (the paper's rule)."""
    out = max(8, int(value + 4) // 8 * 8)
    return out + 8 if out < 0.9 * value else out


def _conv_bn_relu(c_in: int, c_out: int, kernel: int = 3, stride: int = 1,
                  groups: int = 1, relu6: bool = False) -> list:
    return [nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(c_out), nn.ReLU6() if relu6 else nn.ReLU()]


class _Stage(nn.Module):
    """Convolutions of one ConvNet stage, with an optional shortcut per pair."""

    def __init__(self, c_in: int, c_out: int, convs: int, residual: bool):
        super().__init__()
        self.residual = residual
        layers, ch = [], c_in
        for _ in range(convs):
            layers.append(nn.Sequential(*_conv_bn_relu(ch, c_out)))
            ch = c_out
        self.convs = nn.ModuleList(layers)
        self.shortcut = (nn.Conv2d(c_in, c_out, 1, bias=False) if residual and c_in != c_out
                         else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.residual:
            for conv in self.convs:
                x = conv(x)
            return x
        x = self.convs[0](x)
        for i in range(1, len(self.convs), 2):
            y = self.convs[i](x)
            if i + 1 < len(self.convs):
                y = self.convs[i + 1](y)
            x = x + y
        return x


class _InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise, 1x1 linear projection; skip if it fits."""

    def __init__(self, c_in: int, c_out: int, stride: int, expand: int):
        super().__init__()
        hidden = c_in * expand
        layers = [] if expand == 1 else _conv_bn_relu(c_in, hidden, 1, relu6=True)
        layers += _conv_bn_relu(hidden, hidden, 3, stride, groups=hidden, relu6=True)
        layers += [nn.Conv2d(hidden, c_out, 1, bias=False), nn.BatchNorm2d(c_out)]
        self.block = nn.Sequential(*layers)
        self.skip = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.skip else self.block(x)


class _Features(nn.Module):
    """The single segment of a baseline: image -> (last map, pooled vector)."""

    def __init__(self, body: nn.Module, pool: str, neck: nn.Module):
        super().__init__()
        self.body = body
        self.pool = pool
        self.neck = neck

    def forward(self, x: torch.Tensor):
        x = self.body(x)  # (B, C, h, w)
        flat = x.flatten(1) if self.pool == 'flatten' else x.mean((2, 3))
        return x, self.neck(flat)  # (B, C, h, w), (B, F)


class SingleExitModel(nn.Module):
    """
    A classifier with one segment and no early exit (the baselines and teachers).

    ``forward(x)`` returns a :class:`GFDEOutput` whose class and distillation logits are the
    logits and whose early exits are empty, so every training and evaluation path that handles a
    GFDE handles it too.
    """

    def __init__(self, config, features: _Features, head: nn.Module):
        super().__init__()
        self.config = config
        self.features = features
        self.head = head
        object.__setattr__(self, 'segments', nn.ModuleList([features]))
        object.__setattr__(self, 'exit_heads', nn.ModuleList([head]))
        self.exits = nn.ModuleList()

    @property
    def num_exits(self) -> int:
        """One: the final classifier."""
        return 1

    @property
    def blocks_per_exit(self) -> tuple:
        """One 'block' (the whole network) at the only exit."""
        return (1,)

    def forward(self, x: torch.Tensor) -> GFDEOutput:
        _, pooled = self.features(x)
        logits = self.head(pooled)
        return GFDEOutput(logits, logits, logits, ())

    def train(self, mode: bool = True):
        super().train(mode)
        return self


def _init(module: nn.Module) -> None:
    if isinstance(module, nn.Conv2d):
        conv_init_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.01)
        nn.init.zeros_(module.bias)


class ConvNet(SingleExitModel):
    """A plain CNN (see :class:`ConvNetConfig`)."""

    def __init__(self, config: ConvNetConfig):
        c = config
        stages, ch = [], c.in_chans
        for s, width in enumerate(c.widths):
            stages.append(_Stage(ch, width, c.convs, c.residual))
            ch = width
            if s < len(c.widths) - 1 or c.pool == 'flatten':
                stages.append(nn.MaxPool2d(2))
        neck = nn.Identity()
        if c.hidden:
            flat = c.widths[-1] * (c.img_size // 2 ** len(c.widths)) ** 2 \
                if c.pool == 'flatten' else c.widths[-1]
            neck = nn.Sequential(nn.Linear(flat, c.hidden), nn.ReLU())
        head = nn.Sequential(nn.Dropout(c.drop_rate), nn.Linear(c.num_features, c.num_classes))
        super().__init__(config, _Features(nn.Sequential(*stages), c.pool, neck), head)
        self.apply(_init)


class MobileNetV2(SingleExitModel):
    """MobileNetV2 (see :class:`MobileNetV2Config`)."""

    def __init__(self, config: MobileNetV2Config):
        c = config
        ch = _round8(32 * c.width_mult)
        layers = _conv_bn_relu(c.in_chans, ch, 3, c.stem_stride, relu6=True)
        for t, width, n, s in c.stages:
            out = _round8(width * c.width_mult)
            for i in range(n):
                layers.append(_InvertedResidual(ch, out, s if i == 0 else 1, t))
                ch = out
        layers += _conv_bn_relu(ch, c.num_features, 1, relu6=True)
        head = nn.Sequential(nn.Dropout(c.drop_rate), nn.Linear(c.num_features, c.num_classes))
        super().__init__(config, _Features(nn.Sequential(*layers), 'avg', nn.Identity()), head)
        self.apply(_init)
