# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Analytic cost model: parameters and multiply-accumulates (MACs) per segment and exit.

MACs are counted like the GFNet and DeiT papers count "FLOPs": one multiply-add of a linear or
convolution layer is one unit; LayerNorm, GELU and residual additions are left out. The FFT form
of the global filter is an estimate (real-input FFT ~ N log2 N multiply-adds per channel each
way, plus 4 per complex product); the conv form (N x N per channel) and the DFT-matmul form
(four real matrix products and the complex product) are exact.
"""

import math

from torch import nn


def filter_macs(dim: int, size: int, form: str) -> int:
    """Count the MACs of one global filter on a size x size grid of width ``dim``."""
    n = size * size
    if form == 'conv':
        return dim * n * n
    if form == 'dft':
        m = size // 2 + 1
        # x @ (S, 2M); (2S, 2S) @ (2S, M) twice; (S, 2M) @ (2M, S); 4 per complex product.
        return dim * (size * size * 2 * m * 2 + 2 * (2 * size) ** 2 * m + 4 * size * m)
    return int(dim * (2 * n * math.log2(max(n, 2)) + 4 * size * (size // 2 + 1)))


def block_macs(dim: int, size: int, mlp_ratio: float, form: str) -> int:
    """Count the MACs of one GFNet block."""
    n = size * size
    return filter_macs(dim, size, form) + 2 * n * dim * int(dim * mlp_ratio)


def _filter_form(module) -> str:
    from gfde_perception.models.layers import CircularConvFilter, DFTMatmulFilter
    if isinstance(module, CircularConvFilter):
        return 'conv'
    return 'dft' if isinstance(module, DFTMatmulFilter) else 'fft'


def _form_of(model) -> str:
    return model.config.backbone.filter_form


def segment_macs(model, form: str = None) -> tuple:
    """Count the MACs of each segment of a GFDE (embedding, blocks, down-sampling; batch 1)."""
    cfg = model.config.backbone
    blocks = model.backbone.flat_blocks()
    layout = cfg.block_layout()
    bounds = (0,) + model.config.blocks_per_exit
    out = []
    for k in range(model.config.num_exits):
        macs = 0
        if bounds[k] == 0:
            first_dim = layout[0][2]
            macs += cfg.grid * cfg.grid * first_dim * cfg.in_chans * cfg.patch_size ** 2
        for i in range(bounds[k], bounds[k + 1]):
            stage, j, dim, size = layout[i]
            if stage and j == 0:  # 2x2 stride-2 conv from the previous stage
                macs += size * size * layout[i - 1][2] * dim * 4
            macs += block_macs(dim, size, cfg.mlp_ratio, form or _filter_form(blocks[i].filter))
        out.append(macs)
    return tuple(out)


def count_params(module: nn.Module) -> int:
    """Count distinct parameters (shared ones counted once)."""
    seen, total = set(), 0
    for p in module.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


def _linear_macs(module: nn.Module) -> int:
    return sum(m.in_features * m.out_features for m in module.modules()
               if isinstance(m, nn.Linear))


def exit_head_cost(model) -> tuple:
    """Per exit: params, norm/pool MACs and head MACs (see :meth:`GFDE.head_cost`)."""
    cfg = model.config
    layout = cfg.backbone.block_layout()
    out = []
    for k, blocks in enumerate(cfg.blocks_per_exit):
        _, _, dim, size = layout[blocks - 1]
        norm = model.segments[k].norm
        head = model.exit_heads[k]
        out.append({
            'exit': k,
            'blocks': blocks,
            'params': count_params(norm) + count_params(head),
            'norm_pool_macs': 2 * size * size * dim,
            'head_macs': _linear_macs(head),
        })
    return tuple(out)


def model_summary(model) -> dict:
    """Parameter counts per part and MACs per segment/exit of a GFDE, JSON-ready."""
    segs = segment_macs(model)
    heads = exit_head_cost(model)
    seg_params = []
    seen = set()
    for segment in model.segments:
        # Count only what this segment adds (the final norm is listed with the heads).
        n = 0
        for p in segment.layers.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                n += p.numel()
        if segment.first:
            n += count_params(segment.patch_embed) + segment.pos_embed.numel()
        seg_params.append(n)
    cumulative, acc = [], 0
    for k, head in enumerate(heads):
        acc += segs[k] + head['norm_pool_macs']
        cumulative.append(acc + head['head_macs'])
    return {
        'params_total': count_params(model),
        'params_backbone': count_params(model.backbone),
        'params_per_segment': seg_params,
        'macs_per_segment': list(segs),
        'exit_heads': list(heads),
        'macs_to_exit': cumulative,
        'filter_form': _form_of(model),
    }
