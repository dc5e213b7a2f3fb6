# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
GFNet-C: a GFNet for robot-scale inputs with a convolutional stem, in NCHW with BatchNorm.

GFNet's patch embedding throws away everything inside a 4x4 patch but its mean projection, and
its LayerNorms on (B, N, C) tokens cost a transpose around every global filter once the filter
runs as a convolution. GFNet-C keeps the GFNet block (``x + mlp(norm2(filter(norm1(x))))``, one
residual, the same learnable complex global filter over the whole grid) and changes what
surrounds it, for small inputs on CPUs and TensorRT:

* a stem of 3x3 convolutions (BatchNorm, activation) brings the image down to the token grid, so
  local texture is seen at full resolution before the global filters mix the grid;
* features stay (B, C, H, W) and the norms are BatchNorm: at export both norms of a block and
  the filter fold into ONE depthwise convolution with bias (``norm2(filter(norm1(x)))`` is affine
  in ``x`` per channel and shift-invariant on the torus), the MLP is two 1x1 convolutions;
* stages after the first start with a 2x2 stride-2 convolution (GFNet-H's down-sampling);
* pooled features are ``BatchNorm1d(mean over H, W)``, which commutes with the cached exit
  features that step 3 of training uses.

The deployable form (``filter_form='conv'``) is built by
:func:`gfde_perception.models.deploy.to_deployable`; it equals the training form to float32
rounding in eval mode.
"""

from dataclasses import dataclass
import math
from typing import Mapping, Optional

from gfde_perception.errors import ConfigError
from gfde_perception.models.layers import (
    config_from_dict, config_to_dict, conv_init_, DropPath, GlobalFilter,
    StagedBackbone)
import torch
from torch import nn
import torch.nn.functional as F

ACTIVATIONS = ('relu', 'gelu')
FORMS = ('fft', 'conv')
# Sane bounds: a crafted manifest cannot make the loader build an absurd model.
MAX_STAGES = 4
MAX_STEM = 4
MAX_DEPTH = 64
MAX_WIDTH = 4096
MAX_IMG_SIZE = 1024
MAX_MLP_RATIO = 16.0
# Up to this grid side the filter runs as one zero-padded convolution with a (2S-1)^2 kernel
# (a single native op; at 128 x 7 x 7 on onnxruntime 0.74x the time of the wrapped form);
# above it, the wrapped grid and an S x S kernel cost about 4x fewer multiply-adds.
FULL_KERNEL_MAX_SIZE = 8


def _positive_ints(name: str, value, limit: int) -> tuple:
    try:
        out = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f'{name} must be a list of integers, got {value!r}') from None
    if any(isinstance(v, bool) for v in value) or any(v < 1 or v > limit for v in out):
        raise ConfigError(f'{name} values must lie in [1, {limit}], got {value!r}')
    return out


@dataclass(frozen=True)
class GFNetCConfig:
    """
    Architecture of a GFNet-C backbone.

    :ivar img_size: square input side in pixels.
    :ivar in_chans: input channels (1 grey, 3 colour).
    :ivar num_classes: classifier outputs.
    :ivar stem_channels: output width of each 3x3 stem convolution.
    :ivar stem_strides: stride (1 or 2) of each stem convolution; the token grid is
        ``img_size`` divided by their product.
    :ivar embed_dims: width of each stage.
    :ivar depths: GFNet blocks of each stage.
    :ivar stage_strides: for each stage after the first, 2 (halve the grid with a 2x2 stride-2
        convolution, as in GFNet-H) or 1 (keep the grid, change the width with a 1x1
        convolution); default: all 2.
    :ivar mlp_ratio: MLP hidden width / stage width.
    :ivar act: 'relu' (fuses into convolutions on every runtime) or 'gelu'.
    :ivar drop_rate: dropout before the classifier heads.
    :ivar drop_path_rate: stochastic depth, growing linearly to this value over the blocks.
    :ivar filter_form: 'fft' (training) or 'conv' (deployable: norms folded into one depthwise
        convolution per filter).
    """

    img_size: int = 28
    in_chans: int = 1
    num_classes: int = 10
    stem_channels: tuple = (24, 64)
    stem_strides: tuple = (2, 2)
    embed_dims: tuple = (64,)
    depths: tuple = (4,)
    stage_strides: Optional[tuple] = None
    mlp_ratio: float = 2.0
    act: str = 'relu'
    drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    filter_form: str = 'fft'

    kind = 'gfnet-c'

    def __post_init__(self):
        for name, limit in (('img_size', MAX_IMG_SIZE), ('in_chans', MAX_WIDTH),
                            ('num_classes', 100000)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
                raise ConfigError(f'{name} must be an int in [1, {limit}], got {value!r}')
        stem = _positive_ints('stem_channels', self.stem_channels, MAX_WIDTH)
        strides = _positive_ints('stem_strides', self.stem_strides, 2)
        dims = _positive_ints('embed_dims', self.embed_dims, MAX_WIDTH)
        depths = _positive_ints('depths', self.depths, MAX_DEPTH)
        for name, value in (('stem_channels', stem), ('embed_dims', dims)):
            object.__setattr__(self, name, value)
        object.__setattr__(self, 'stem_strides', strides)
        object.__setattr__(self, 'depths', depths)
        if not 1 <= len(stem) <= MAX_STEM or len(strides) != len(stem):
            raise ConfigError(f'stem_channels and stem_strides need the same length in '
                              f'[1, {MAX_STEM}], got {stem} and {strides}')
        if not 1 <= len(dims) <= MAX_STAGES or len(depths) != len(dims):
            raise ConfigError(f'embed_dims and depths need the same length in [1, {MAX_STAGES}]'
                              f', got {dims} and {depths}')
        if sum(depths) > MAX_DEPTH:
            raise ConfigError(f'at most {MAX_DEPTH} blocks, got {sum(depths)}')
        transitions = (2,) * (len(dims) - 1) if self.stage_strides is None else \
            _positive_ints('stage_strides', self.stage_strides, 2)
        if len(transitions) != len(dims) - 1:
            raise ConfigError(f'stage_strides needs {len(dims) - 1} values (one per stage after '
                              f'the first), got {self.stage_strides!r}')
        object.__setattr__(self, 'stage_strides', transitions)
        reduction = math.prod(strides) * math.prod(transitions)
        if self.img_size % reduction:
            raise ConfigError(f'img_size {self.img_size} must be a multiple of {reduction} '
                              f'(stem strides {strides} and {len(dims) - 1} down-sampling(s))')
        if not 0 < self.mlp_ratio <= MAX_MLP_RATIO:
            raise ConfigError(f'mlp_ratio must be in (0, {MAX_MLP_RATIO}], got {self.mlp_ratio}')
        if self.act not in ACTIVATIONS:
            raise ConfigError(f'act must be one of {ACTIVATIONS}, got {self.act!r}')
        for name in ('drop_rate', 'drop_path_rate'):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f'{name} must be in [0, 1), got {getattr(self, name)}')
        if self.filter_form not in FORMS:
            raise ConfigError(f'filter_form must be one of {FORMS} for gfnet-c, '
                              f'got {self.filter_form!r}')

    @property
    def grid(self) -> int:
        """Return the side of the first stage's token grid, after the stem."""
        return self.img_size // math.prod(self.stem_strides)

    @property
    def total_depth(self) -> int:
        """Count the blocks over all stages."""
        return sum(self.depths)

    @property
    def num_features(self) -> int:
        """Width of the pooled feature the classifier reads."""
        return self.embed_dims[-1]

    def block_layout(self) -> tuple:
        """Per flat block index: (stage, index in stage, width, grid side)."""
        out, side = [], self.grid
        for stage, (dim, n) in enumerate(zip(self.embed_dims, self.depths)):
            if stage:
                side //= self.stage_strides[stage - 1]
            out.extend((stage, j, dim, side) for j in range(n))
        return tuple(out)

    def to_dict(self) -> dict:
        """Return a JSON-ready dict (with ``kind``, which :func:`backbone_config` reads)."""
        return {'kind': self.kind, **config_to_dict(self)}

    @classmethod
    def from_dict(cls, data: Mapping) -> 'GFNetCConfig':
        """Build from :meth:`to_dict` output; unknown keys are a :class:`ConfigError`."""
        return config_from_dict(cls, data, 'GFNet-C')


def make_activation(name: str) -> nn.Module:
    """Return the activation module named by the config."""
    return nn.ReLU() if name == 'relu' else nn.GELU()


class GlobalFilter2d(GlobalFilter):
    """
    GFNet's global filter on (B, C, S, S) features (the training form).

    ``y = irfft2(rfft2(x) * W)`` over the grid with orthonormal scaling; the weight and its
    impulse response are :class:`~gfde_perception.models.layers.GlobalFilter`'s, only the
    layout of the features differs (channels first: no transpose around the filter).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, S, S) -> (B, C, S, S)
        s = self.size
        spec = torch.fft.rfft2(x.to(torch.float32), dim=(2, 3), norm='ortho')  # (B, C, S, M)
        weight = torch.view_as_complex(self.complex_weight).permute(2, 0, 1)  # (C, S, M)
        y = torch.fft.irfft2(spec * weight, s=(s, s), dim=(2, 3), norm='ortho')
        return y.to(x.dtype)


class FoldedFilter(nn.Module):
    """
    Deployable form of ``norm2(filter(norm1(x)))``: one depthwise convolution with bias.

    Small grids (side <= ``FULL_KERNEL_MAX_SIZE``) use a zero-padded (2S-1)^2 kernel, whose
    taps repeat the circular kernel so that the result is the circular convolution with a
    single native op; larger grids wrap S-1 rows and columns around (:func:`_wrap_grid`) and use
    an S x S kernel.
    """

    def __init__(self, dim: int, size: int):
        super().__init__()
        self.dim = dim
        self.size = size
        self.full = size <= FULL_KERNEL_MAX_SIZE
        side = 2 * size - 1 if self.full else size
        self.kernel = nn.Parameter(torch.zeros(dim, 1, side, side))
        self.bias = nn.Parameter(torch.zeros(dim))

    @classmethod
    def fold(cls, norm1: nn.BatchNorm2d, gf: GlobalFilter2d,
             norm2: nn.BatchNorm2d) -> 'FoldedFilter':
        """Fold two eval-mode BatchNorms and a trained global filter into one convolution."""
        out = cls(gf.dim, gf.size)
        s = gf.size
        k = gf.impulse_response()  # (C, S, S) float64, k[m, n]: response at (m, n) to (0, 0)
        a1, b1 = _bn_affine(norm1)
        a2, b2 = _bn_affine(norm2)
        # filter(a1 x + b1) = a1 filter(x) + b1 * sum(k): the circular kernel sees the whole grid.
        k_sum = k.sum(dim=(1, 2))
        # Either way the input sees s - 1 rows and columns before the grid (zeros or wrapped).
        taps = (s - 1 - torch.arange(out.kernel.shape[-1])) % s
        w = k[:, taps][:, :, taps] * (a1 * a2)[:, None, None]
        out.kernel.data.copy_(w.unsqueeze(1).to(out.kernel.dtype))
        out.bias.data.copy_((a2 * b1 * k_sum + b2).to(out.bias.dtype))
        return out.to(gf.complex_weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, S, S) -> (B, C, S, S)
        if self.full:
            return F.conv2d(x, self.kernel, self.bias, padding=self.size - 1, groups=self.dim)
        return F.conv2d(_wrap_grid(x), self.kernel, self.bias, groups=self.dim)


def _wrap_grid(x: torch.Tensor) -> torch.Tensor:
    """
    Return (B, C, S, S) with its last S-1 rows and columns wrapped before it: (B, C, 2S-1, 2S-1).

    Same values, the cheaper ops for each stack (32 x 14 x 14, one thread, against the four slices
    and two concatenations of a centred padding): in an ONNX graph one Tile and one Slice
    (onnxruntime: 0.84x the time of the whole first segment); in PyTorch (eager, and the graph
    torch-tensorrt compiles) two concatenations of views (eager: 0.91x the filter's time; a
    tile was 1.2x there).
    """
    if torch.onnx.is_in_onnx_export():
        return x.repeat(1, 1, 2, 2)[:, :, 1:, 1:]
    x = torch.cat([x[:, :, 1:], x], dim=2)
    return torch.cat([x[:, :, :, 1:], x], dim=3)


def _bn_affine(bn: nn.modules.batchnorm._BatchNorm) -> tuple:
    """Per-channel (scale, shift) of an eval-mode BatchNorm, in float64."""
    var = bn.running_var.detach().to('cpu', torch.float64)
    mean = bn.running_mean.detach().to('cpu', torch.float64)
    scale = 1.0 / torch.sqrt(var + bn.eps)
    if bn.affine:
        scale = scale * bn.weight.detach().to('cpu', torch.float64)
        shift = bn.bias.detach().to('cpu', torch.float64) - mean * scale
    else:
        shift = -mean * scale
    return scale, shift


class BlockC(nn.Module):
    """
    One GFNet-C block: ``x + drop_path(mlp(norm2(filter(norm1(x)))))`` on (B, C, S, S).

    In the deployable form (``form='conv'``) ``norm1``, ``filter`` and ``norm2`` are one
    :class:`FoldedFilter` named ``folded``.
    """

    def __init__(self, dim: int, size: int, mlp_ratio: float, act: str,
                 drop_path: float = 0.0, form: str = 'fft'):
        super().__init__()
        self.dim = dim
        self.size = size
        if form == 'fft':
            self.norm1 = nn.BatchNorm2d(dim)
            self.filter = GlobalFilter2d(dim, size)
            self.norm2 = nn.BatchNorm2d(dim)
        else:
            self.folded = FoldedFilter(dim, size)
        hidden = int(dim * mlp_ratio)
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.act = make_activation(act)
        self.fc2 = nn.Conv2d(hidden, dim, 1)
        self.drop_path = DropPath(drop_path)

    def mix(self, x: torch.Tensor) -> torch.Tensor:
        """Mix the tokens: the normalised global filter of the block."""
        if hasattr(self, 'folded'):
            return self.folded(x)
        return self.norm2(self.filter(self.norm1(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.fc2(self.act(self.fc1(self.mix(x)))))


class ConvNormAct(nn.Sequential):
    """3x3 convolution, BatchNorm, activation (the stem); folded: the norm is in the conv."""

    def __init__(self, c_in: int, c_out: int, stride: int, act: str, folded: bool = False):
        super().__init__(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=folded),
                         nn.Identity() if folded else nn.BatchNorm2d(c_out),
                         make_activation(act))


class DownSample(nn.Sequential):
    """
    Between stages: BatchNorm, then a stride x stride convolution of that stride.

    Stride 2 halves the grid (GFNet-H's down-sampling); stride 1 is a 1x1 convolution that only
    changes the width. Folded (deployable form): the norm is inside the convolution.
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 2, folded: bool = False):
        super().__init__(nn.Identity() if folded else nn.BatchNorm2d(c_in),
                         nn.Conv2d(c_in, c_out, stride, stride=stride))


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        conv_init_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.modules.batchnorm._BatchNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class GFNetC(StagedBackbone):
    """
    GFNet-C backbone; ``forward(x (B, C, H, W)) -> logits (B, num_classes)``.

    Implements the backbone interface that :class:`gfde_perception.models.GFDE` uses:
    :meth:`embed`, :meth:`flat_blocks`, :meth:`downsample_before`, :meth:`pool`,
    :meth:`make_norm`, :meth:`exit_feature` and :meth:`apply_norm`.
    """

    def __init__(self, config: GFNetCConfig):
        super().__init__()
        self.config = c = config
        folded = c.filter_form != 'fft'
        layers, ch = [], c.in_chans
        for width, stride in zip(c.stem_channels, c.stem_strides):
            layers.append(ConvNormAct(ch, width, stride, c.act, folded))
            ch = width
        self.stem = nn.Sequential(*layers)
        self.proj = nn.Conv2d(ch, c.embed_dims[0], 1) if ch != c.embed_dims[0] else \
            nn.Identity()
        layout = c.block_layout()
        n = len(layout)
        dpr = [c.drop_path_rate * i / (n - 1) if n > 1 else 0.0 for i in range(n)]
        blocks = [BlockC(dim, size, c.mlp_ratio, c.act, dpr[i], c.filter_form)
                  for i, (_, _, dim, size) in enumerate(layout)]
        self.downsamples = nn.ModuleList(
            [nn.Identity()] + [DownSample(c.embed_dims[s - 1], c.embed_dims[s],
                                          c.stage_strides[s - 1], folded)
                               for s in range(1, len(c.embed_dims))])
        staged, start = [], 0
        for depth in c.depths:
            staged.append(nn.Sequential(*blocks[start:start + depth]))
            start += depth
        self.blocks = nn.ModuleList(staged)
        self.norm = self.make_norm(c.num_features)
        self.head_drop = nn.Dropout(c.drop_rate)
        self.head = nn.Linear(c.num_features, c.num_classes)
        self.apply(_init_weights)
        self._index_stages(c.depths)

    def _downsampler(self, stage: int) -> nn.Module:
        return self.downsamples[stage]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Image (B, C, H, W) -> first-stage features (B, C0, S, S)."""
        return self.proj(self.stem(x))

    @staticmethod
    def make_norm(dim: int) -> nn.Module:
        """Return the norm of a pooled feature (the final one and each exit's)."""
        return nn.BatchNorm1d(dim)

    @staticmethod
    def exit_feature(x: torch.Tensor, norm: nn.Module) -> torch.Tensor:
        """Pooled feature before ``norm`` (what exit training caches): (B, C, H, W) -> (B, C)."""
        return x.mean((2, 3))

    @staticmethod
    def apply_norm(norm: nn.Module, feature: torch.Tensor) -> torch.Tensor:
        """Apply an exit's norm to a cached :meth:`exit_feature` (differentiable)."""
        return norm(feature)

    def pool(self, x: torch.Tensor, norm: nn.Module) -> torch.Tensor:
        """Features (B, C, H, W) -> normalised pooled feature (B, C)."""
        return self.head_drop(norm(x.mean((2, 3))))


@torch.no_grad()
def fold_norm_into_conv(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> nn.Conv2d:
    """Return a conv with bias equal to ``norm(conv(x))`` (eval-mode statistics)."""
    scale, shift = _bn_affine(norm)
    out = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                    conv.padding, conv.dilation, conv.groups, bias=True)
    w = conv.weight.detach().to('cpu', torch.float64) * scale[:, None, None, None]
    b = shift if conv.bias is None else conv.bias.detach().to('cpu', torch.float64) * scale + shift
    out.weight.copy_(w.to(conv.weight.dtype))
    out.bias.copy_(b.to(conv.weight.dtype))
    return out.to(conv.weight.device)


@torch.no_grad()
def fold_norm_before_conv(norm: nn.BatchNorm2d, conv: nn.Conv2d) -> nn.Conv2d:
    """Return a conv equal to ``conv(norm(x))`` for an unpadded conv (eval-mode statistics)."""
    if any(p != 0 for p in conv.padding):
        raise ValueError('a norm folds before a convolution only when it is not padded')
    scale, shift = _bn_affine(norm)
    w = conv.weight.detach().to('cpu', torch.float64)  # (O, I, kh, kw)
    out = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, 0,
                    conv.dilation, conv.groups, bias=True)
    bias = (w * shift[None, :, None, None]).sum(dim=(1, 2, 3))
    if conv.bias is not None:
        bias = bias + conv.bias.detach().to('cpu', torch.float64)
    out.weight.copy_((w * scale[None, :, None, None]).to(conv.weight.dtype))
    out.bias.copy_(bias.to(conv.weight.dtype))
    return out.to(conv.weight.device)


def deployable_gfnet_c(backbone: GFNetC) -> GFNetC:
    """
    Return a new GFNet-C in the deployable form, equal to ``backbone`` in eval mode.

    Every block's ``norm1 -> filter -> norm2`` becomes one :class:`FoldedFilter`, each stem
    ``conv -> norm`` one conv with bias and each down-sampling ``norm -> conv`` one conv. The
    pooled-feature norms stay (BatchNorm1d on a vector costs nothing).
    """
    if backbone.config.filter_form != 'fft':
        raise ValueError('the backbone is already in the deployable form')
    data = backbone.config.to_dict()
    data['filter_form'] = 'conv'
    out = GFNetC(GFNetCConfig.from_dict(data)).to(next(backbone.parameters()).device)
    out.load_state_dict(_folded_state(backbone), strict=True)
    return out.eval()


@torch.no_grad()
def _folded_state(backbone: GFNetC) -> dict:
    """State dict of the deployable twin of a training-form GFNet-C."""
    state = {}

    def put(prefix: str, module: nn.Module):
        for name, value in module.state_dict().items():
            state[f'{prefix}.{name}'] = value

    for i, seq in enumerate(backbone.stem):
        conv, norm, _act = seq
        fused = fold_norm_into_conv(conv, norm)
        state[f'stem.{i}.0.weight'] = fused.weight
        state[f'stem.{i}.0.bias'] = fused.bias
    for name, value in backbone.state_dict().items():
        if name.startswith(('proj.', 'norm.', 'head.')):
            state[name] = value
    for s, down in enumerate(backbone.downsamples):
        if isinstance(down, DownSample):
            norm, conv = down
            fused = fold_norm_before_conv(norm, conv)
            state[f'downsamples.{s}.1.weight'] = fused.weight
            state[f'downsamples.{s}.1.bias'] = fused.bias
    for s, stage in enumerate(backbone.blocks):
        for j, blk in enumerate(stage):
            prefix = f'blocks.{s}.{j}'
            folded = FoldedFilter.fold(blk.norm1, blk.filter, blk.norm2)
            put(f'{prefix}.folded', folded)
            put(f'{prefix}.fc1', blk.fc1)
            put(f'{prefix}.fc2', blk.fc2)
    return state
