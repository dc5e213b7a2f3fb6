# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Split inference: a head on the robot, a learned quantised bottleneck, a tail on a server.

Written against the segment interface every model family of this package exposes
(``segments[k](x) -> (features, pooled)``, ``exit_heads[k](pooled) -> logits``, ``num_exits``),
never against a family's internals:

* **robot**: the head model's segments ``0 .. split-1`` with their early exits (gated outside
  the module, by :mod:`gfde_perception.gating`), then the bottleneck *encoder*: a normalisation
  and a strided 1x1-style convolution to fewer channels, and a per-channel affine *quantiser*
  to ``bits`` <= 8 whose scale and zero point travel with every packet;
* **server**: the *decoder* (dequantised codes back to the features the tail expects, also
  resampling the grid) and a *tail*: either the head model's remaining segments (``tail =
  'student'``), or, following head-network distillation, a teacher's segments from
  ``teacher_split`` on (``tail = 'teacher'``), the robot side having been trained to reproduce
  the teacher's features there.

Features between segments are (B, N, C) tokens for GFNet and (B, C, H, W) maps for CNNs; one
adapter (:func:`to_nchw` / :func:`from_nchw`, described by :class:`FeatureShape`) turns either
into maps for the bottleneck and back for the tail.

The state dict names each part once: ``head.*`` (the whole head model: the robot also answers
locally with it, and a student tail reuses it), ``encoder.*``, ``quantiser.*``, ``decoder.*``
and ``teacher_tail.*``. :data:`ROBOT_PARTS` and :func:`server_parts` say which parts each side
builds, so a robot never holds the teacher and a server never holds the encoder.
"""

from dataclasses import dataclass, field
import math
from typing import Mapping, NamedTuple, Optional

from gfde_perception.errors import ConfigError
from gfde_perception.models.efficientnet_segments import segment_count, staged
from gfde_perception.models.registry import build_from_config, config_from_dict, FAMILIES
import torch
from torch import nn
import torch.nn.functional as F

FAMILY = 'gfde-split'
LAYOUTS = ('tokens', 'nchw')
TAILS = ('student', 'teacher')
ROBOT_PARTS = ('head', 'encoder', 'quantiser')
MAX_BITS = 8
_MAX_DIM = 65536


def _check_int(name: str, value, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f'{name} must be an int in [{low}, {high}], got {value!r}')


def _check_keys(what: str, data, allowed: tuple, required: tuple = ()) -> None:
    if not isinstance(data, Mapping):
        raise ConfigError(f'{what} must be a mapping, got {type(data).__name__}')
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ConfigError(f'unknown {what} keys: {unknown}')
    missing = [k for k in required if k not in data]
    if missing:
        raise ConfigError(f'{what} lacks {missing}')


def _check_model_config(name: str, config) -> None:
    if not any(type(config) is family[0] for family in FAMILIES.values()):
        raise ConfigError(f'{name} must be the config of a registered model family, got '
                          f'{type(config).__name__}')


@dataclass(frozen=True)
class FeatureShape:
    """
    Shape of the features between two segments, batch excluded.

    :ivar layout: 'tokens' (B, N, C) with N = height * width in row-major grid order, or
        'nchw' (B, C, H, W).
    :ivar channels: C.
    :ivar height: grid rows.
    :ivar width: grid columns.
    """

    layout: str
    channels: int
    height: int
    width: int

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ConfigError(f'feature layout must be one of {LAYOUTS}, got {self.layout!r}')
        for name in ('channels', 'height', 'width'):
            _check_int(f'feature {name}', getattr(self, name), 1, _MAX_DIM)

    @property
    def numel(self) -> int:
        """Values per frame."""
        return self.channels * self.height * self.width

    @classmethod
    def of(cls, features: torch.Tensor) -> 'FeatureShape':
        """Describe a (B, N, C) token tensor (on a square grid) or a (B, C, H, W) map."""
        if features.dim() == 4:
            _, c, h, w = features.shape
            return cls('nchw', int(c), int(h), int(w))
        if features.dim() == 3:
            _, n, c = features.shape
            side = math.isqrt(int(n))
            if side * side != n:
                raise ConfigError(f'{n} tokens do not form a square grid')
            return cls('tokens', int(c), side, side)
        raise ConfigError(f'features must be (B, N, C) or (B, C, H, W), got '
                          f'{tuple(features.shape)}')

    def to_dict(self) -> dict:
        """Return a JSON-ready dict."""
        return {'layout': self.layout, 'channels': self.channels, 'height': self.height,
                'width': self.width}

    @classmethod
    def from_dict(cls, data: Mapping) -> 'FeatureShape':
        """Build from :meth:`to_dict` output."""
        keys = ('layout', 'channels', 'height', 'width')
        _check_keys('feature shape', data, keys, keys)
        return cls(**data)


def to_nchw(features: torch.Tensor, shape: FeatureShape) -> torch.Tensor:
    """Adapter in: features of ``shape``'s layout -> (B, C, H, W)."""
    if shape.layout == 'nchw':
        return features
    b = features.shape[0]
    # (B, N, C) -> (B, C, N) -> (B, C, H, W)
    return features.transpose(1, 2).reshape(b, shape.channels, shape.height, shape.width)


def from_nchw(maps: torch.Tensor, shape: FeatureShape) -> torch.Tensor:
    """Adapter out: (B, C, H, W) -> features of ``shape``'s layout."""
    if shape.layout == 'nchw':
        return maps
    return maps.flatten(2).transpose(1, 2)  # (B, H*W, C)


@dataclass(frozen=True)
class BottleneckConfig:
    """
    The learned bottleneck between robot and server.

    :ivar channels: channels sent (fewer than the features at the split).
    :ivar bits: bits per value after quantisation, 1 to 8.
    :ivar stride: spatial down-sampling of the grid by the encoder (1 = none), 1 to 4.
    :ivar hidden: width of the server-side decoder.
    """

    channels: int = 8
    bits: int = 8
    stride: int = 1
    hidden: int = 128

    def __post_init__(self):
        _check_int('bottleneck channels', self.channels, 1, 1024)
        _check_int('bottleneck bits', self.bits, 1, MAX_BITS)
        _check_int('bottleneck stride', self.stride, 1, 4)
        _check_int('bottleneck hidden', self.hidden, 1, 4096)

    def code_grid(self, shape: FeatureShape) -> tuple:
        """Grid (rows, columns) of the codes for features of ``shape``."""
        return (-(-shape.height // self.stride), -(-shape.width // self.stride))

    def to_dict(self) -> dict:
        """Return a JSON-ready dict."""
        return {'channels': self.channels, 'bits': self.bits, 'stride': self.stride,
                'hidden': self.hidden}

    @classmethod
    def from_dict(cls, data: Mapping) -> 'BottleneckConfig':
        """Build from :meth:`to_dict` output (missing keys take the defaults)."""
        _check_keys('bottleneck', data, ('channels', 'bits', 'stride', 'hidden'))
        return cls(**data)


@dataclass(frozen=True)
class SplitConfig:
    """
    Architecture of a split model (registered family ``'gfde-split'``).

    :ivar head: config of the robot's model (any registered family: the distilled student); its
        segments ``0 .. split-1`` run on the robot.
    :ivar split: segments run on the robot, in [1, head num_exits - 1].
    :ivar input_shape: (C, H, W) the head takes (after preprocessing).
    :ivar head_features: what segment ``split - 1`` of the head returns.
    :ivar tail: 'student' (the head's remaining segments) or 'teacher'.
    :ivar tail_features: what the tail's first segment takes (for a student tail, the same as
        ``head_features``).
    :ivar bottleneck: encoder, quantisation and decoder sizes.
    :ivar teacher: config of the teacher (any registered family), for ``tail = 'teacher'``
        only.
    :ivar teacher_split: first teacher segment run on the server (EfficientNet-Lite0 counts its
        seven stages, see ``models/efficientnet_segments.py``).
    """

    head: object
    split: int
    input_shape: tuple
    head_features: FeatureShape
    tail: str = 'student'
    tail_features: Optional[FeatureShape] = None
    bottleneck: BottleneckConfig = field(default_factory=BottleneckConfig)
    teacher: Optional[object] = None
    teacher_split: int = 0

    family = FAMILY

    def __post_init__(self):
        _check_model_config('head', self.head)
        for name, kind in (('head_features', FeatureShape), ('bottleneck', BottleneckConfig)):
            if not isinstance(getattr(self, name), kind):
                raise ConfigError(f'{name} must be a {kind.__name__}')
        try:
            shape = tuple(int(v) for v in self.input_shape)
        except (TypeError, ValueError):
            raise ConfigError(f'input_shape must be (C, H, W), got {self.input_shape!r}') \
                from None
        object.__setattr__(self, 'input_shape', shape)
        if len(shape) != 3 or not all(1 <= v <= _MAX_DIM for v in shape):
            raise ConfigError(f'input_shape must be three sizes (C, H, W), got {shape}')
        if self.tail not in TAILS:
            raise ConfigError(f'tail must be one of {TAILS}, got {self.tail!r}')
        if self.tail_features is None:
            if self.tail != 'student':
                raise ConfigError('a teacher tail needs tail_features')
            object.__setattr__(self, 'tail_features', self.head_features)
        if not isinstance(self.tail_features, FeatureShape):
            raise ConfigError('tail_features must be a FeatureShape')
        head_exits = self.head.num_exits
        _check_int('split', self.split, 1, max(1, head_exits - 1))
        if self.split >= head_exits:
            raise ConfigError(f'split must leave a segment to the tail: {head_exits} '
                              f'segments, split {self.split}')
        if self.bottleneck.channels >= self.head_features.channels:
            raise ConfigError(f'the bottleneck must have fewer channels than the features '
                              f'({self.bottleneck.channels} >= {self.head_features.channels})')
        if self.tail == 'student':
            if self.teacher is not None or self.teacher_split:
                raise ConfigError('teacher and teacher_split belong to a teacher tail only')
            if self.tail_features != self.head_features:
                raise ConfigError('a student tail takes the head features unchanged')
        else:
            if self.teacher is None:
                raise ConfigError('a teacher tail needs a teacher config')
            _check_model_config('teacher', self.teacher)
            _check_int('teacher_split', self.teacher_split, 1,
                       max(1, segment_count(self.teacher) - 1))

    @property
    def num_exits(self) -> int:
        """Robot exits plus the server's final classifier."""
        return self.split + 1

    @property
    def code_shape(self) -> tuple:
        """(channels, rows, columns) of one frame's codes."""
        return (self.bottleneck.channels,) + self.bottleneck.code_grid(self.head_features)

    def to_dict(self) -> dict:
        """Return a JSON-ready dict (with ``family``)."""
        return {
            'family': FAMILY, 'head': self.head.to_dict(), 'split': self.split,
            'input_shape': list(self.input_shape), 'head_features': self.head_features.to_dict(),
            'tail': self.tail, 'tail_features': self.tail_features.to_dict(),
            'bottleneck': self.bottleneck.to_dict(),
            'teacher': self.teacher.to_dict() if self.teacher is not None else None,
            'teacher_split': self.teacher_split,
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> 'SplitConfig':
        """Build from :meth:`to_dict` output; unknown or missing keys are a ConfigError."""
        keys = ('family', 'head', 'split', 'input_shape', 'head_features', 'tail',
                'tail_features', 'bottleneck', 'teacher', 'teacher_split')
        _check_keys('split config', data, keys, ('family', 'head', 'split', 'input_shape',
                                                 'head_features'))
        if data['family'] != FAMILY:
            raise ConfigError(f"not a {FAMILY} config: family {data['family']!r}")
        if not isinstance(data['input_shape'], (list, tuple)):
            raise ConfigError(f"input_shape must be a list, got {data['input_shape']!r}")
        teacher = data.get('teacher')
        tail_features = data.get('tail_features')
        return cls(
            head=_model_config(data['head'], 'head'), split=data['split'],
            input_shape=tuple(data['input_shape']),
            head_features=FeatureShape.from_dict(data['head_features']),
            tail=data.get('tail', 'student'),
            tail_features=(FeatureShape.from_dict(tail_features)
                           if tail_features is not None else None),
            bottleneck=BottleneckConfig.from_dict(data.get('bottleneck', {})),
            teacher=_model_config(teacher, 'teacher') if teacher is not None else None,
            teacher_split=data.get('teacher_split', 0))


def _model_config(data, name: str):
    if not isinstance(data, Mapping) or 'family' not in data:
        raise ConfigError(f'{name} must be a model config with a "family"')
    return config_from_dict(data)


def server_parts(config: SplitConfig) -> tuple:
    """Parts the server builds: the decoder and its tail."""
    return ('decoder', 'head' if config.tail == 'student' else 'teacher_tail')


class Quantiser(nn.Module):
    """
    Per-channel affine quantisation to ``bits`` with a straight-through gradient.

    In training mode the range of each channel follows the batches (a running min and max); in
    eval mode it is frozen. ``scale`` and ``zero_point`` derive from that range the usual way:
    ``code = clamp(round(x / scale) + zero_point, 0, 2**bits - 1)``,
    ``x ~ (code - zero_point) * scale``.
    """

    def __init__(self, channels: int, bits: int, momentum: float = 0.05):
        super().__init__()
        self.bits = bits
        self.levels = 2 ** bits - 1
        self.momentum = momentum
        self.register_buffer('low', torch.zeros(channels))
        self.register_buffer('high', torch.ones(channels))
        self.register_buffer('observed', torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def _observe(self, z: torch.Tensor) -> None:
        low = z.amin(dim=(0, 2, 3))
        high = z.amax(dim=(0, 2, 3))
        if not bool(self.observed):
            self.low.copy_(low)
            self.high.copy_(high)
            self.observed.fill_(True)
        else:
            self.low.lerp_(low, self.momentum)
            self.high.lerp_(high, self.momentum)

    def params(self) -> tuple:
        """Return ``(scale, zero_point)``, one float each per channel, as (C,) tensors."""
        # The range always holds 0, so that zero features are coded exactly.
        low = torch.clamp(self.low, max=0.0)
        span = torch.clamp(torch.clamp(self.high, min=0.0) - low, min=1e-6)
        scale = span / self.levels
        zero_point = torch.clamp(torch.round(-low / scale), 0, self.levels)
        return scale, zero_point

    def quantise(self, z: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) float -> (B, C, H, W) uint8 codes."""
        scale, zero_point = (p.view(1, -1, 1, 1) for p in self.params())
        codes = torch.clamp(torch.round(z / scale) + zero_point, 0, self.levels)
        return codes.to(torch.uint8)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Fake-quantise: the dequantised codes forward, the identity backward."""
        if self.training:
            self._observe(z)
        scale, zero_point = (p.view(1, -1, 1, 1) for p in self.params())
        codes = torch.clamp(torch.round(z / scale) + zero_point, 0, self.levels)
        return z + ((codes - zero_point) * scale - z).detach()


def dequantise(codes: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) codes with per-channel (C,) scale and zero point -> float."""
    return (codes.float() - zero_point.view(1, -1, 1, 1)) * scale.view(1, -1, 1, 1)


class Encoder(nn.Module):
    """Robot side: features -> (B, channels, rows, cols) floats, ready to quantise."""

    def __init__(self, shape: FeatureShape, cfg: BottleneckConfig):
        super().__init__()
        self.shape = shape
        self.stride = cfg.stride
        self.norm = nn.BatchNorm2d(shape.channels)
        self.proj = nn.Conv2d(shape.channels, cfg.channels, cfg.stride, stride=cfg.stride)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.norm(to_nchw(features, self.shape))  # (B, C, H, W)
        pad_h = -x.shape[2] % self.stride
        pad_w = -x.shape[3] % self.stride
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        return self.proj(x)  # (B, c, ceil(H / s), ceil(W / s))


class Decoder(nn.Module):
    """Server side: dequantised codes -> the features the tail's first segment takes."""

    def __init__(self, cfg: BottleneckConfig, out: FeatureShape):
        super().__init__()
        self.out = out
        self.expand = nn.Sequential(
            nn.Conv2d(cfg.channels, cfg.hidden, 1), nn.GELU(),
            nn.Conv2d(cfg.hidden, cfg.hidden, 3, padding=1), nn.GELU())
        self.proj = nn.Conv2d(cfg.hidden, out.channels, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.expand(z)  # (B, hidden, h, w)
        if tuple(x.shape[2:]) != (self.out.height, self.out.width):
            x = F.interpolate(x, size=(self.out.height, self.out.width), mode='bilinear',
                              align_corners=False)
        return from_nchw(self.proj(x), self.out)


class TeacherTail(nn.Module):
    """A model's segments from ``start`` on and its final classifier."""

    def __init__(self, model: nn.Module, start: int):
        super().__init__()
        self.segments = nn.ModuleList(list(model.segments)[start:])
        self.head = model.exit_heads[-1]

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        for segment in self.segments:
            features, pooled = segment(features)
        return self.head(pooled)


class SplitOutput(NamedTuple):
    """
    One training/evaluation pass of a whole split model (robot and server together).

    :ivar exit_logits: tuple of (B, K), the robot's exits ``0 .. split-1``.
    :ivar logits: (B, K) the server tail's classification of the decoded bottleneck.
    :ivar features: the head's features at the split.
    :ivar decoded: the decoder's output (what the tail took).
    """

    exit_logits: tuple
    logits: torch.Tensor
    features: torch.Tensor
    decoded: torch.Tensor


class SplitModel(nn.Module):
    """
    A split model, or one side of it (``parts``): see the module docstring.

    :param config: the architecture.
    :param parts: which parts to build (default all); :data:`ROBOT_PARTS` for a robot,
        :func:`server_parts` for a server. ``quantiser`` may be left out on a server: packets
        carry their own scale and zero point.
    """

    def __init__(self, config: SplitConfig, parts: Optional[tuple] = None):
        super().__init__()
        if not isinstance(config, SplitConfig):
            raise ConfigError(f'expected a SplitConfig, got {type(config).__name__}')
        self.config = config
        wanted = self.all_parts(config) if parts is None else tuple(parts)
        unknown = set(wanted) - set(self.all_parts(config))
        if unknown:
            raise ConfigError(f'a {config.tail}-tail split model has no parts {sorted(unknown)}')
        self.parts = wanted
        cfg = config.bottleneck
        self.head = build_from_config(config.head) if 'head' in wanted else None
        self.encoder = Encoder(config.head_features, cfg) if 'encoder' in wanted else None
        self.quantiser = (Quantiser(cfg.channels, cfg.bits) if 'quantiser' in wanted
                          else None)
        self.decoder = Decoder(cfg, config.tail_features) if 'decoder' in wanted else None
        self.teacher_tail = None
        if 'teacher_tail' in wanted:
            self.teacher_tail = TeacherTail(staged(build_from_config(config.teacher)),
                                            config.teacher_split)

    @staticmethod
    def all_parts(config: SplitConfig) -> tuple:
        """Every part of a split model with this config."""
        parts = ROBOT_PARTS + ('decoder',)
        return parts + (('teacher_tail',) if config.tail == 'teacher' else ())

    def _need(self, *names):
        missing = [n for n in names if getattr(self, n) is None]
        if missing:
            raise ConfigError(f'this side of the split model lacks {missing}')

    @property
    def robot_segments(self) -> list:
        """Return the head segments run on the robot."""
        self._need('head')
        return list(self.head.segments)[:self.config.split]

    @property
    def robot_exit_heads(self) -> list:
        """Return the exit heads of the robot segments."""
        self._need('head')
        return list(self.head.exit_heads)[:self.config.split]

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        """Robot: features at the split -> (B, c, h, w) uint8 codes."""
        self._need('encoder', 'quantiser')
        return self.quantiser.quantise(self.encoder(features))

    def decode(self, values: torch.Tensor) -> torch.Tensor:
        """Server: dequantised (B, c, h, w) values -> the tail's input features."""
        self._need('decoder')
        return self.decoder(values)

    def tail_logits(self, features: torch.Tensor) -> torch.Tensor:
        """Server: the tail's input features -> (B, K) logits."""
        if self.config.tail == 'teacher':
            self._need('teacher_tail')
            return self.teacher_tail(features)
        self._need('head')
        for segment in list(self.head.segments)[self.config.split:]:
            features, pooled = segment(features)
        return self.head.exit_heads[-1](pooled)

    def forward(self, x: torch.Tensor) -> SplitOutput:
        """Whole split model (all parts): image batch -> :class:`SplitOutput`."""
        self._need('head', 'encoder', 'quantiser', 'decoder')
        features, exit_logits = self.run_robot(x)
        decoded = self.decode(self.quantiser(self.encoder(features)))
        return SplitOutput(exit_logits, self.tail_logits(decoded), features, decoded)

    def run_robot(self, x: torch.Tensor) -> tuple:
        """Robot segments and all their exits: ``(features at the split, exit logits)``."""
        exit_logits = []
        features = x
        for segment, head in zip(self.robot_segments, self.robot_exit_heads):
            features, pooled = segment(features)
            exit_logits.append(head(pooled))
        return features, tuple(exit_logits)


def probe_features(model: nn.Module, input_shape: tuple, upto: int) -> FeatureShape:
    """Shape of the features after ``model.segments[:upto]`` on one (C, H, W) input."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        x = torch.zeros((1,) + tuple(input_shape))
        for segment in list(model.segments)[:upto]:
            x, _ = segment(x)
    model.train(was_training)
    return FeatureShape.of(x)
