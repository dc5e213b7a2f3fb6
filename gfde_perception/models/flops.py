# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Cost model of any registered model: parameters and multiply-accumulates (MACs) per segment/exit.

MACs are counted like the GFNet and DeiT papers count "FLOPs": one multiply-add of a linear or
convolution layer is one unit; norms, activations and residual additions are left out. The count
runs the segments once at batch 1 with forward hooks (on the meta device when the model is there,
so even GFNet-B costs no memory), which covers every family with one code path. Global filters
are counted by form: the FFT form is an estimate (real-input FFT ~ N log2 N multiply-adds per
channel each way, plus 4 per complex product); the conv and DFT-matmul forms are exact, and a
GFNet-C folded filter counts the taps its kernel really has.
"""

import math

from gfde_perception.models.gfnet_c import FoldedFilter
from gfde_perception.models.layers import CircularConvFilter, DFTMatmulFilter, GlobalFilter
import torch
from torch import nn

# GlobalFilter2d (GFNet-C's training form) is a GlobalFilter: counted as one.
_FILTER_FORMS = ((GlobalFilter, 'fft'), (CircularConvFilter, 'conv'), (DFTMatmulFilter, 'dft'))
_COUNTED = (nn.Conv2d, nn.Linear, FoldedFilter) + tuple(cls for cls, _ in _FILTER_FORMS)


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


def _module_macs(module: nn.Module, out: torch.Tensor) -> int:
    """Count the MACs of one counted module (see ``_COUNTED``) given its output."""
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return out.numel() * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return out.numel() * module.in_features
    if isinstance(module, FoldedFilter):
        side = module.kernel.shape[-1]
        return module.dim * module.size ** 2 * side * side
    form = next(form for cls, form in _FILTER_FORMS if isinstance(module, cls))
    return filter_macs(module.dim, module.size, form)


def _dry_run(model) -> tuple:
    """Run every segment once at batch 1; return (MACs per segment, pooling work per exit)."""
    config = model.config
    param = next(model.parameters())
    x = torch.zeros(1, config.in_chans, config.img_size, config.img_size, device=param.device,
                    dtype=param.dtype)
    counter = [0]

    def hook(module, _inputs, output):
        counter[0] += int(_module_macs(module, output))

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, _COUNTED)]
    macs, pool = [], []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for segment in model.segments:
                counter[0] = 0
                x, pooled = segment(x)
                macs.append(counter[0])
                pool.append(2 * x.numel())
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return tuple(macs), tuple(pool)


def segment_macs(model) -> tuple:
    """Count the MACs of each segment (embedding, blocks, down-sampling; batch 1)."""
    macs, _ = _dry_run(model)
    return macs


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


def exit_head_cost(model, pool_macs=None) -> tuple:
    """
    Per exit: parameters and MACs of the exit head (batch 1).

    Each entry is a dict with ``exit``, ``blocks``, ``params`` (norm + head),
    ``norm_pool_macs`` (pooling and norm, run at the end of the segment) and ``head_macs`` (the
    head proper, run on the CPU worker).
    """
    if pool_macs is None:
        _, pool_macs = _dry_run(model)
    out = []
    for k, blocks in enumerate(model.config.blocks_per_exit):
        norm = getattr(model.segments[k], 'norm', None)
        head = model.exit_heads[k]
        out.append({
            'exit': k,
            'blocks': blocks,
            'params': (count_params(norm) if norm is not None else 0) + count_params(head),
            'norm_pool_macs': int(pool_macs[k]),
            'head_macs': _linear_macs(head),
        })
    return tuple(out)


def model_summary(model) -> dict:
    """Parameter counts per part and MACs per segment/exit of any registered model, JSON-ready."""
    segs, pool = _dry_run(model)
    heads = exit_head_cost(model, pool)
    seg_params = []
    seen = {id(p) for head in model.exit_heads for p in head.parameters()}
    for segment in model.segments:
        # Count only what this segment adds; the heads (and exit norms) are listed per exit.
        n = 0
        for name, p in segment.named_parameters():
            if id(p) not in seen and not name.startswith('norm.'):
                seen.add(id(p))
                n += p.numel()
        seg_params.append(n)
    cumulative, acc = [], 0
    for k, head in enumerate(heads):
        acc += segs[k] + head['norm_pool_macs']
        cumulative.append(acc + head['head_macs'])
    backbone = getattr(model, 'backbone', None)
    form = getattr(getattr(model.config, 'backbone', None), 'filter_form', None)
    return {
        'params_total': count_params(model),
        'params_backbone': count_params(backbone if backbone is not None else model.segments),
        'params_per_segment': seg_params,
        'macs_per_segment': list(segs),
        'exit_heads': list(heads),
        'macs_to_exit': cumulative,
        'filter_form': form,
    }
