# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Building blocks of GFNet: global filters (FFT and deployable forms), MLP, blocks, embeddings.

Attribute names follow the reference implementation (``filter.complex_weight``, ``mlp.fc1``,
``norm1``, ``gamma``, ``proj``) so that official checkpoints load with strict key checking.
"""

from dataclasses import asdict, fields
import math
from typing import Mapping

from gfde_perception.errors import ConfigError
import torch
from torch import nn
import torch.nn.functional as F


FILTER_FORMS = ('fft', 'conv', 'dft', 'deploy')
# 'deploy' picks per grid size: circular conv up to this side, DFT matmuls above. The conv costs
# size**4 multiply-adds per channel and sums size**2 float32 terms per output (its rounding
# reached 1.1e-5 on a 56x56 grid); the DFT form costs ~6 size**3 and sums at most 2 * size
# terms. Measured in tools/bench_model.py; see docs/MODEL.md.
CONV_MAX_SIZE = 28
LAYER_NORM_EPS = 1e-6


def config_from_dict(cls, data: Mapping, what: str):
    """
    Build the frozen config dataclass ``cls`` from a JSON dict (lists become tuples).

    The tag keys ``family`` and ``kind`` (written by ``to_dict`` for the registry) are dropped;
    any other unknown key is a :class:`ConfigError` naming ``what``.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f'{what} config must be a mapping, got {type(data).__name__}')
    data = {k: v for k, v in data.items() if k not in ('family', 'kind')}
    unknown = set(data) - {f.name for f in fields(cls)}
    if unknown:
        raise ConfigError(f'unknown {what} config keys: {sorted(unknown)}')
    try:
        return cls(**{k: _tuples(v) for k, v in data.items()})
    except TypeError as exc:
        raise ConfigError(f'bad {what} config: {exc}') from None


def config_to_dict(config) -> dict:
    """Return a JSON-ready dict of a config dataclass (tuples become lists)."""
    return {k: _lists(v) for k, v in asdict(config).items()}


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _lists(value):
    return [_lists(v) for v in value] if isinstance(value, tuple) else value


def conv_init_(weight: torch.Tensor) -> None:
    """
    He initialisation (fan-out, ReLU gain) as a normal truncated at two standard deviations.

    Truncated, rather than ``kaiming_normal_``, because plain ``normal_`` on the meta device
    (where the bundle loader checks shapes) imports torch's compiler, which costs seconds.
    """
    fan_out = weight.shape[0] * math.prod(weight.shape[2:])
    std = math.sqrt(2.0 / fan_out)
    nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)


def _circular_pad(x: torch.Tensor, before: int, after: int) -> torch.Tensor:
    """
    Pad the last two dims of (B, C, H, W) circularly, by slices and concatenation.

    Written with Slice/Concat rather than ``F.pad(mode='circular')`` because every deployment
    stack (ONNX opsets without 'wrap' padding, TensorRT) supports these two ops natively.
    """
    parts = [x]
    if before:
        parts.insert(0, x[:, :, -before:])
    if after:
        parts.append(x[:, :, :after])
    x = torch.cat(parts, dim=2) if len(parts) > 1 else x
    parts = [x]
    if before:
        parts.insert(0, x[:, :, :, -before:])
    if after:
        parts.append(x[:, :, :, :after])
    return torch.cat(parts, dim=3) if len(parts) > 1 else x


@torch.no_grad()
def filter_impulse_response(complex_weight: torch.Tensor, size: int) -> torch.Tensor:
    """
    Return the spatial kernel k (C, S, S) of a global filter, ``filter(x) = x (*) k`` (circular).

    :param complex_weight: the filter's (S, S // 2 + 1, C, 2) weight (reference layout).
    :param size: grid side S.

    The filter is linear and shift-invariant on the torus, so its response to a unit impulse at
    the origin is its whole action; computing it with ``rfft2``/``irfft2`` (rather than from a
    closed formula) keeps the exact treatment of the DC and Nyquist columns that ``irfft2``
    applies to a non-Hermitian product. Float64 on the CPU: done once, at conversion time.
    """
    s = size
    dim = complex_weight.shape[2]
    delta = torch.zeros(1, s, s, dim, dtype=torch.float64)
    delta[0, 0, 0, :] = 1.0
    spec = torch.fft.rfft2(delta, dim=(1, 2), norm='ortho')
    weight = torch.view_as_complex(complex_weight.detach().to('cpu', torch.float64).contiguous())
    k = torch.fft.irfft2(spec * weight, s=(s, s), dim=(1, 2), norm='ortho')  # (1, S, S, C)
    return k[0].permute(2, 0, 1).contiguous()  # (C, S, S)


class GlobalFilter(nn.Module):
    """
    GFNet's global filter in the training (FFT) form.

    ``y = irfft2(rfft2(x) * W)`` over the token grid, with orthonormal scaling as in the
    reference. ``complex_weight`` has the reference shape (size, size // 2 + 1, dim, 2).
    """

    def __init__(self, dim: int, size: int):
        super().__init__()
        self.dim = dim
        self.size = size
        self.complex_weight = nn.Parameter(
            torch.empty(size, size // 2 + 1, dim, 2, dtype=torch.float32))
        # Truncated normal, std 0.02 (the reference draws plain normal): on the meta device,
        # which the bundle loader builds on, normal_ and randn import torch's compiler.
        nn.init.trunc_normal_(self.complex_weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        s = self.size
        x = x.view(b, s, s, c).to(torch.float32)  # (B, S, S, C)
        x = torch.fft.rfft2(x, dim=(1, 2), norm='ortho')  # (B, S, S//2+1, C) complex
        x = x * torch.view_as_complex(self.complex_weight)
        x = torch.fft.irfft2(x, s=(s, s), dim=(1, 2), norm='ortho')
        return x.reshape(b, n, c)

    @torch.no_grad()
    def impulse_response(self) -> torch.Tensor:
        """Return the spatial kernel k (dim, size, size) with ``filter(x) = x (*) k``."""
        return filter_impulse_response(self.complex_weight, self.size)


class CircularConvFilter(nn.Module):
    """
    The global filter in a deployable form: circular padding + depthwise convolution.

    ``kernel`` (dim, 1, size, size) holds the filter's spatial impulse response, flipped and
    rolled so that cross-correlation over the circularly padded grid computes the circular
    convolution that the FFT form computes. Only convolution, slicing and concatenation are
    used, all native to ONNX and TensorRT.
    """

    def __init__(self, dim: int, size: int):
        super().__init__()
        self.dim = dim
        self.size = size
        self.pad_before = size // 2
        self.pad_after = size - 1 - self.pad_before
        self.kernel = nn.Parameter(torch.zeros(dim, 1, size, size))

    @classmethod
    def from_global_filter(cls, gf: GlobalFilter) -> 'CircularConvFilter':
        """Build the conv form equal to a trained :class:`GlobalFilter`."""
        conv = cls(gf.dim, gf.size)
        k = gf.impulse_response()  # (C, S, S), k[m, n]: output at (m, n) for input at (0, 0)
        # Cross-correlation reads x[(p + j - before) mod S] * w[j]; circular convolution needs
        # x[(p - m) mod S] * k[m], hence w[j] = k[(before - j) mod S] on both axes.
        idx = (conv.pad_before - torch.arange(gf.size)) % gf.size
        w = k[:, idx][:, :, idx]
        conv.kernel.data.copy_(w.unsqueeze(1).to(conv.kernel.dtype))
        return conv.to(gf.complex_weight.device, gf.complex_weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        s = self.size
        x = x.reshape(b, s, s, c).permute(0, 3, 1, 2)  # (B, C, S, S)
        x = _circular_pad(x, self.pad_before, self.pad_after)
        x = F.conv2d(x, self.kernel, groups=c)  # (B, C, S, S)
        return x.permute(0, 2, 3, 1).reshape(b, n, c)


class DFTMatmulFilter(nn.Module):
    """
    The global filter in a deployable form: the 2-D DFT written as real matrix products.

    ``rfft2 -> * W -> irfft2`` becomes four MatMuls with fixed real DFT matrices (buffers) and an
    element-wise complex product with the trained weight. Sums run over at most 2 * size terms
    (against size ** 2 in the conv form), which keeps float32 rounding low on large grids, and
    the cost grows as size ** 3 per channel instead of size ** 4.
    """

    def __init__(self, dim: int, size: int):
        super().__init__()
        self.dim = dim
        self.size = size
        s, m = size, size // 2 + 1
        scale = 1.0 / math.sqrt(s)
        n = torch.arange(s, dtype=torch.float64)
        k = torch.arange(m, dtype=torch.float64)
        ang_w = 2 * math.pi * torch.outer(n, k) / s  # (S, M)
        # Forward real DFT along the last axis: x @ [cos | -sin] -> [re | im].
        fwd_w = torch.cat([ang_w.cos(), -ang_w.sin()], dim=1) * scale  # (S, 2M)
        ang_h = 2 * math.pi * torch.outer(n, n) / s  # (S, S)
        ch, sh = ang_h.cos() * scale, ang_h.sin() * scale
        # Complex DFT along the first axis on stacked [re; im]: (C - iS) forward, (C + iS) back.
        fwd_h = torch.cat([torch.cat([ch, sh], 1), torch.cat([-sh, ch], 1)], 0)  # (2S, 2S)
        inv_h = torch.cat([torch.cat([ch, -sh], 1), torch.cat([sh, ch], 1)], 0)
        # Inverse real DFT along the last axis (Hermitian weights c_k; the imaginary parts of
        # the DC and Nyquist bins meet sin(0) = sin(pi q) = 0, exactly as irfft drops them).
        c = torch.full((m,), 2.0, dtype=torch.float64)
        c[0] = 1.0
        if s % 2 == 0:
            c[-1] = 1.0
        inv_w = torch.cat([c[:, None] * ang_w.T.cos(), -c[:, None] * ang_w.T.sin()], 0) * scale
        self.register_buffer('fwd_w', fwd_w.float(), persistent=False)  # (S, 2M)
        self.register_buffer('fwd_h', fwd_h.float(), persistent=False)  # (2S, 2S)
        self.register_buffer('inv_h', inv_h.float(), persistent=False)  # (2S, 2S)
        self.register_buffer('inv_w', inv_w.float(), persistent=False)  # (2M, S)
        self.weight_re = nn.Parameter(torch.zeros(dim, s, m))
        self.weight_im = nn.Parameter(torch.zeros(dim, s, m))

    @classmethod
    def from_global_filter(cls, gf: GlobalFilter) -> 'DFTMatmulFilter':
        """Build the DFT-matmul form equal to a trained :class:`GlobalFilter`."""
        out = cls(gf.dim, gf.size)
        w = gf.complex_weight.detach().to('cpu', torch.float32)  # (S, M, C, 2)
        out.weight_re.data.copy_(w[..., 0].permute(2, 0, 1))
        out.weight_im.data.copy_(w[..., 1].permute(2, 0, 1))
        return out.to(gf.complex_weight.device, gf.complex_weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        s, m = self.size, self.size // 2 + 1
        x = x.reshape(b, s, s, c).permute(0, 3, 1, 2)  # (B, C, S, S)
        z = torch.matmul(x, self.fwd_w)  # (B, C, S, 2M): [re | im] along the last axis
        z = torch.cat([z[..., :m], z[..., m:]], dim=2)  # (B, C, 2S, M): [re; im]
        z = torch.matmul(self.fwd_h, z)  # (B, C, 2S, M)
        zr, zi = z[:, :, :s], z[:, :, s:]
        pr = zr * self.weight_re - zi * self.weight_im
        pi = zr * self.weight_im + zi * self.weight_re
        g = torch.matmul(self.inv_h, torch.cat([pr, pi], dim=2))  # (B, C, 2S, M)
        g = torch.cat([g[:, :, :s], g[:, :, s:]], dim=3)  # (B, C, S, 2M)
        y = torch.matmul(g, self.inv_w)  # (B, C, S, S)
        return y.permute(0, 2, 3, 1).reshape(b, n, c)


def deploy_form(size: int) -> str:
    """Return the deployable filter form used for a grid side by the 'deploy' setting."""
    return 'conv' if size <= CONV_MAX_SIZE else 'dft'


def make_filter(dim: int, size: int, form: str) -> nn.Module:
    """Create an untrained global filter of the given form."""
    if form == 'deploy':
        form = deploy_form(size)
    if form == 'fft':
        return GlobalFilter(dim, size)
    if form == 'conv':
        return CircularConvFilter(dim, size)
    if form == 'dft':
        return DFTMatmulFilter(dim, size)
    raise ValueError(f'filter_form must be one of {FILTER_FORMS}, got {form!r}')


class DropPath(nn.Module):
    """Stochastic depth: drop the residual branch per sample while training."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class Mlp(nn.Module):
    """Two-layer GELU MLP applied to every token."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class Block(nn.Module):
    """
    One GFNet block: ``x + drop_path(gamma * mlp(norm2(filter(norm1(x)))))``.

    As in the reference there is a single residual connection around filter and MLP together;
    ``gamma`` (layer scale) exists only when ``layer_scale_init`` is given (GFNet-H).
    """

    def __init__(self, dim: int, size: int, mlp_ratio: float = 4.0, drop: float = 0.0,
                 drop_path: float = 0.0, layer_scale_init: float = None,
                 filter_form: str = 'fft'):
        super().__init__()
        self.dim = dim
        self.size = size
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.filter = make_filter(dim, size, filter_form)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)
        self.drop_path = DropPath(drop_path)
        if layer_scale_init is not None:
            self.gamma = nn.Parameter(torch.full((dim,), float(layer_scale_init)))
        else:
            self.gamma = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, N, C) -> (B, N, C)
        y = self.mlp(self.norm2(self.filter(self.norm1(x))))
        if self.gamma is not None:
            y = self.gamma * y
        return x + self.drop_path(y)


class PatchEmbed(nn.Module):
    """Non-overlapping patches to tokens: (B, C_in, H, W) -> (B, N, dim)."""

    def __init__(self, patch_size: int, in_chans: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class DownLayer(nn.Module):
    """GFNet-H down-sampling between stages: 2x2 stride-2 conv on the token grid."""

    def __init__(self, size: int, dim_in: int, dim_out: int):
        super().__init__()
        self.size = size
        self.dim_out = dim_out
        self.proj = nn.Conv2d(dim_in, dim_out, kernel_size=2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, S*S, Cin) -> (B, S*S/4, Cout)
        b, _, c = x.shape
        x = x.reshape(b, self.size, self.size, c).permute(0, 3, 1, 2)
        x = self.proj(x).permute(0, 2, 3, 1)
        return x.reshape(b, -1, self.dim_out)


class StagedBackbone(nn.Module):
    """
    What the GFNet and GFNet-C backbones share: blocks in stages, addressed by a flat index.

    A subclass sets ``config`` (with ``total_depth``, ``num_features`` and ``to_dict``/
    ``from_dict``), ``blocks`` (one ``nn.Sequential`` per stage, or the blocks themselves when
    there is one stage), ``head``, ``norm`` and :meth:`embed`, :meth:`pool` and
    :meth:`_downsampler`, and calls :meth:`_index_stages` once its stages exist.
    """

    def _index_stages(self, depths) -> None:
        """Record the flat block index at which each stage after the first starts."""
        starts, acc = {}, 0
        for stage, depth in enumerate(depths):
            if stage:
                starts[acc] = stage
            acc += depth
        self._stage_starts = starts

    def _downsampler(self, stage: int) -> nn.Module:
        raise NotImplementedError

    @property
    def num_blocks(self) -> int:
        """Total number of blocks (flat index range)."""
        return self.config.total_depth

    def flat_blocks(self) -> list:
        """Blocks in execution order, across stages."""
        return [blk for stage in self.blocks
                for blk in (stage if isinstance(stage, nn.Sequential) else (stage,))]

    def downsample_before(self, index: int):
        """Return the down-sampling layer that runs before flat block ``index``, if any."""
        stage = self._stage_starts.get(index)
        return None if stage is None else self._downsampler(stage)

    def run_blocks(self, x: torch.Tensor, start: int, end: int) -> torch.Tensor:
        """Run flat blocks ``start..end-1`` (with down-sampling where a stage begins)."""
        blocks = self.flat_blocks()
        for i in range(start, end):
            down = self.downsample_before(i)
            if down is not None:
                x = down(x)
            x = blocks[i](x)
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Image -> pooled feature (B, num_features)."""
        return self.pool(self.run_blocks(self.embed(x), 0, self.num_blocks), self.norm)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Pooled feature -> logits."""
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head for ``num_classes`` outputs (transfer learning); backbone kept."""
        head = nn.Linear(self.config.num_features, num_classes).to(self.head.weight.device)
        nn.init.trunc_normal_(head.weight, std=0.02)
        nn.init.zeros_(head.bias)
        self.head = head
        self.config = type(self.config).from_dict({**self.config.to_dict(),
                                                   'num_classes': num_classes})
