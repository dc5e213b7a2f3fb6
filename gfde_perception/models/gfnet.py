# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
GFNet (isotropic) and GFNet-H (hierarchical) with the reference parameter names.

One class covers both families; ``GFNetConfig.hierarchical`` chooses the layout:

* isotropic: ``patch_embed.proj``, ``pos_embed``, ``blocks.N.*``, ``norm``, ``head``;
* hierarchical: ``patch_embed.0.proj`` (patchify) and ``patch_embed.{1,2,3}.proj``
  (down-sampling), ``pos_embed``, ``blocks.S.J.*`` (stage S, block J, with ``gamma``),
  ``norm``, ``head``.

Blocks are also addressed by a flat index 0..depth-1 across stages, which is what early exits
and segments use.
"""

from dataclasses import asdict, dataclass, fields
from typing import Mapping, Optional

from gfde_perception.errors import ConfigError
from gfde_perception.models.layers import (
    Block, DownLayer, FILTER_FORMS, LAYER_NORM_EPS, PatchEmbed, StagedBackbone)
import torch
from torch import nn
import torch.nn.functional as F


NUM_STAGES = 4
# Sane bounds (the official GFNet-H-B has 36 blocks of width <= 768 at 224-384 px): a crafted
# bundle manifest cannot make the loader build an absurd model.
LIMITS = {'img_size': 2048, 'patch_size': 64, 'in_chans': 64, 'num_classes': 100000,
          'embed_dim': 4096, 'depth': 128}


@dataclass(frozen=True)
class GFNetConfig:
    """
    Architecture of a GFNet backbone.

    :ivar img_size: square input side in pixels.
    :ivar patch_size: patch side; the token grid is ``img_size // patch_size`` (square).
    :ivar in_chans: input channels (3 for RGB, 1 for grey).
    :ivar num_classes: classifier outputs.
    :ivar embed_dim: token width (isotropic).
    :ivar depth: number of blocks (isotropic).
    :ivar embed_dims: per-stage widths (hierarchical, 4 values).
    :ivar depths: per-stage block counts (hierarchical, 4 values).
    :ivar mlp_ratio: MLP hidden width / token width.
    :ivar drop_rate: dropout after the position embedding and inside MLPs.
    :ivar drop_path_rate: stochastic depth, increasing linearly to this value over the blocks.
    :ivar hierarchical: GFNet-H layout (4 stages, 2x down-sampling between them).
    :ivar layer_scale_init: initial layer-scale ``gamma``; None = no layer scale.
    :ivar filter_form: 'fft' (training, the reference form), or a deployable form: 'conv'
        (circular depthwise convolution), 'dft' (DFT as matrix products) or 'deploy' (conv up
        to a 28x28 grid, DFT above); see :func:`gfde_perception.models.to_deployable`.
    """

    img_size: int = 224
    patch_size: int = 16
    in_chans: int = 3
    num_classes: int = 1000
    embed_dim: int = 384
    depth: int = 12
    embed_dims: Optional[tuple] = None
    depths: Optional[tuple] = None
    mlp_ratio: float = 4.0
    drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    hierarchical: bool = False
    layer_scale_init: Optional[float] = None
    filter_form: str = 'fft'

    def __post_init__(self):
        for name in ('img_size', 'patch_size', 'in_chans', 'num_classes', 'embed_dim', 'depth'):
            value = getattr(self, name)
            limit = LIMITS[name]
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
                raise ConfigError(f'{name} must be an int in [1, {limit}], got {value!r}')
        if self.img_size % self.patch_size:
            raise ConfigError(
                f'img_size {self.img_size} is not a multiple of patch_size {self.patch_size}')
        if not (self.mlp_ratio > 0):
            raise ConfigError(f'mlp_ratio must be > 0, got {self.mlp_ratio}')
        for name in ('drop_rate', 'drop_path_rate'):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f'{name} must be in [0, 1), got {getattr(self, name)}')
        if self.filter_form not in FILTER_FORMS:
            raise ConfigError(
                f'filter_form must be one of {FILTER_FORMS}, got {self.filter_form!r}')
        if self.layer_scale_init is not None and not self.layer_scale_init > 0:
            raise ConfigError(f'layer_scale_init must be > 0 or None, got '
                              f'{self.layer_scale_init}')
        if self.hierarchical:
            for name in ('embed_dims', 'depths'):
                value = getattr(self, name)
                if value is None or len(value) != NUM_STAGES:
                    raise ConfigError(f'hierarchical GFNet needs {name} with {NUM_STAGES} '
                                      f'values, got {value!r}')
                value = tuple(int(v) for v in value)
                limit = LIMITS['depth' if name == 'depths' else 'embed_dim']
                if min(value) < 1 or max(value) > limit:
                    raise ConfigError(f'{name} must lie in [1, {limit}], got {value}')
                object.__setattr__(self, name, value)
            if self.grid % (2 ** (NUM_STAGES - 1)):
                raise ConfigError(
                    f'hierarchical GFNet halves the token grid {NUM_STAGES - 1} times: '
                    f'img_size / patch_size = {self.grid} must be a multiple of 8')
        else:
            if self.embed_dims is not None or self.depths is not None:
                raise ConfigError('embed_dims/depths are for hierarchical=True; '
                                  'use embed_dim/depth for the isotropic GFNet')

    @property
    def grid(self) -> int:
        """Side of the first (or only) token grid."""
        return self.img_size // self.patch_size

    @property
    def total_depth(self) -> int:
        """Count the blocks over all stages."""
        return sum(self.depths) if self.hierarchical else self.depth

    @property
    def num_features(self) -> int:
        """Width of the pooled feature the classifier reads."""
        return self.embed_dims[-1] if self.hierarchical else self.embed_dim

    def block_layout(self) -> tuple:
        """Per flat block index: (stage, index in stage, width, grid side)."""
        if not self.hierarchical:
            return tuple((0, i, self.embed_dim, self.grid) for i in range(self.depth))
        out = []
        for stage, (dim, n) in enumerate(zip(self.embed_dims, self.depths)):
            out.extend((stage, j, dim, self.grid >> stage) for j in range(n))
        return tuple(out)

    def to_dict(self) -> dict:
        """Return a JSON-ready dict."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping) -> 'GFNetConfig':
        """Build from :meth:`to_dict` output; unknown keys are a :class:`ConfigError`."""
        if not isinstance(data, Mapping):
            raise ConfigError(f'backbone config must be a mapping, got {type(data).__name__}')
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f'unknown GFNet config keys: {sorted(unknown)}')
        try:
            return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
        except TypeError as exc:
            raise ConfigError(f'bad GFNet config: {exc}') from None


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class GFNet(StagedBackbone):
    """Global Filter Network; ``forward(x (B, C, H, W)) -> logits (B, num_classes)``."""

    def __init__(self, config: GFNetConfig):
        super().__init__()
        self.config = config
        c = config
        layout = c.block_layout()
        n = len(layout)
        # Stochastic depth grows linearly over the blocks (plain floats: works on 'meta' too).
        dpr = [c.drop_path_rate * i / (n - 1) if n > 1 else 0.0 for i in range(n)]
        blocks = [Block(dim, size, c.mlp_ratio, c.drop_rate, dpr[i], c.layer_scale_init,
                        c.filter_form) for i, (_, _, dim, size) in enumerate(layout)]
        first_dim = layout[0][2]
        if c.hierarchical:
            embeds = [PatchEmbed(c.patch_size, c.in_chans, c.embed_dims[0])]
            for s in range(1, NUM_STAGES):
                embeds.append(DownLayer(c.grid >> (s - 1), c.embed_dims[s - 1], c.embed_dims[s]))
            self.patch_embed = nn.ModuleList(embeds)
            staged, start = [], 0
            for n in c.depths:
                staged.append(nn.Sequential(*blocks[start:start + n]))
                start += n
            self.blocks = nn.ModuleList(staged)
        else:
            self.patch_embed = PatchEmbed(c.patch_size, c.in_chans, c.embed_dim)
            self.blocks = nn.ModuleList(blocks)
        self.pos_embed = nn.Parameter(torch.zeros(1, c.grid * c.grid, first_dim))
        self.pos_drop = nn.Dropout(c.drop_rate)
        self.norm = self.make_norm(c.num_features)
        self.head = nn.Linear(c.num_features, c.num_classes)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.apply(_init_weights)
        self._index_stages(c.depths if c.hierarchical else (c.depth,))

    def _downsampler(self, stage: int) -> nn.Module:
        return self.patch_embed[stage]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Image (B, C, H, W) -> tokens (B, N, C0) with position embedding."""
        first = self.patch_embed[0] if self.config.hierarchical else self.patch_embed
        return self.pos_drop(first(x) + self.pos_embed)

    @staticmethod
    def make_norm(dim: int) -> nn.Module:
        """Return the norm applied to tokens before pooling (the final one and each exit's)."""
        return nn.LayerNorm(dim, eps=LAYER_NORM_EPS)

    @staticmethod
    def exit_feature(x: torch.Tensor, norm: nn.Module) -> torch.Tensor:
        """
        Pooled feature before ``norm``'s affine part (what exit training caches).

        LayerNorm's affine part commutes with the mean over tokens
        (``mean(g * x_hat + b) = g * mean(x_hat) + b``), so the affine-free normalised mean
        token is all an exit needs: (B, N, C) -> (B, C).
        """
        return F.layer_norm(x, norm.normalized_shape, eps=norm.eps).mean(1)

    @staticmethod
    def apply_norm(norm: nn.Module, feature: torch.Tensor) -> torch.Tensor:
        """Apply an exit norm's affine part to a cached :meth:`exit_feature`."""
        return feature * norm.weight + norm.bias

    @staticmethod
    def pool(x: torch.Tensor, norm: nn.Module) -> torch.Tensor:
        """Tokens (B, N, C) -> normalised pooled feature (B, C)."""
        return norm(x).mean(1)


def _replace(config, **changes):
    data = config.to_dict()
    data.update(changes)
    return type(config).from_dict(data)
