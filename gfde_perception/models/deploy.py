# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Deployable form of GFNet/GFDE and ONNX export.

The global filter is linear and shift-invariant on the token torus, so it equals a per-channel
circular convolution with its spatial impulse response, and also the 2-D DFT written as real
matrix products. :func:`to_deployable` rewrites every FFT filter into one of these forms, from
the trained complex weights, in one call. Both use only ops that every runtime has (Conv,
MatMul, Slice, Concat, Mul, Add: ONNX without DFT, TensorRT without an FFT plugin).

Which form: ``form='deploy'`` (the default) uses the circular conv for grids up to
``CONV_MAX_SIZE`` (7x7 to 28x28: one depthwise conv, the fastest measured on CPU for these
sizes) and the DFT matmuls for larger grids (GFNet-H's 56x56 first stage at 224 px), where the
conv's size**4 cost and its size**2-term float32 sums (1.1e-5 rounding at 56x56) lose to the
DFT's ~6 size**3 cost and 2 * size-term sums. ``tools/bench_model.py`` measures the forms side
by side (docs/MODEL.md).
"""

import copy
from typing import Optional, Sequence
import warnings

from gfde_perception.models.gfde import GFDE, GFDEConfig, Segment
from gfde_perception.models.gfnet import _replace, GFNet
from gfde_perception.models.gfnet_c import deployable_gfnet_c, GFNetC, GlobalFilter2d
from gfde_perception.models.layers import (
    CircularConvFilter, deploy_form, DFTMatmulFilter, GlobalFilter)
import torch
from torch import nn


DEPLOY_FORMS = ('deploy', 'conv', 'dft')
# Revision of the graphs built from a bundle (deployable form, export): cached ONNX graphs and
# TensorRT engines are keyed by it, so a package that builds them differently never runs a
# graph built by an older one. 2: GFNet-C wraps its 14x14 grid by one Tile, not slices.
DEPLOY_REVISION = 2


def _replace_filters(module: nn.Module, form: str) -> int:
    count = 0
    for name, child in list(module.named_children()):
        if isinstance(child, GlobalFilter):
            chosen = deploy_form(child.size) if form == 'deploy' else form
            cls = CircularConvFilter if chosen == 'conv' else DFTMatmulFilter
            setattr(module, name, cls.from_global_filter(child))
            count += 1
        else:
            count += _replace_filters(child, form)
    return count


def to_deployable(model: nn.Module, form: str = 'deploy') -> nn.Module:
    """
    Return a deep copy of a GFNet/GFDE whose global filters need no FFT.

    :param model: a GFNet or GFDE in the FFT form (the original is left untouched).
    :param form: 'deploy' (conv up to ``CONV_MAX_SIZE``, DFT matmuls above), 'conv' or 'dft'.
    :return: the copy, equal to the FFT form to float32 rounding (below 1e-5 for unit-scale
        activations), in the original's train/eval mode, with ``config.filter_form = form``.
    """
    if form not in DEPLOY_FORMS:
        raise ValueError(f'form must be one of {DEPLOY_FORMS}, got {form!r}')
    if isinstance(model, GFNetC):
        return deployable_gfnet_c(model).train(model.training)
    if isinstance(model, GFDE) and isinstance(model.backbone, GFNetC):
        # GFNet-C has a single deployable form: norms and filter folded into one convolution.
        out = copy.deepcopy(model)
        out.backbone = deployable_gfnet_c(model.backbone).train(model.training)
        out.config = GFDEConfig(out.backbone.config, out.config.exit_blocks,
                                out.config.distill_head, out.config.exit_hidden_dim)
        out.refresh_views()
        return out
    if any(isinstance(m, GlobalFilter2d) for m in model.modules()):
        raise ValueError('convert the whole GFNet-C or GFDE model, not a part of it: its norms '
                         'fold into the filters')
    out = copy.deepcopy(model)
    _replace_filters(out, form)
    if isinstance(out, GFDE):
        backbone_cfg = _replace(out.config.backbone, filter_form=form)
        out.backbone.config = backbone_cfg
        out.config = GFDEConfig(backbone_cfg, out.config.exit_blocks, out.config.distill_head,
                                out.config.exit_hidden_dim)
        out.refresh_views()
    elif isinstance(out, GFNet):
        out.config = _replace(out.config, filter_form=form)
    return out


class _TupleOutput(nn.Module):
    """Export wrapper: GFDE -> (logits, exit_logits_0, ...), a flat tuple of tensors."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor):
        out = self.model(x)
        return (out.logits,) + tuple(out.exit_logits)


def export_onnx(module: nn.Module, path: str, example_input: torch.Tensor,
                input_names: Sequence[str] = ('input',),
                output_names: Optional[Sequence[str]] = None,
                dynamic_batch: bool = True, deployable: bool = True,
                opset_version: Optional[int] = None, external_data: bool = False) -> str:
    """
    Export a GFNet, a GFDE, one segment or one exit head to ONNX (torch's default exporter).

    :param module: the module; a GFDE is exported as (logits, exit logits...); a segment returns
        (features, pooled); an exit head returns logits.
    :param path: output .onnx file.
    :param example_input: a tensor of the input shape (batch any size).
    :param input_names: ONNX input names.
    :param output_names: ONNX output names (default: 'logits', 'exit_K'; or 'features', 'pooled'
        for a segment; or 'logits').
    :param dynamic_batch: make the batch dimension dynamic.
    :param deployable: convert FFT filters with :func:`to_deployable` first (runtimes without
        DFT, TensorRT).
    :param opset_version: ONNX opset; None = the exporter's default.
    :param external_data: store weights in a side file (only needed above 2 GB).
    :return: ``path``.
    """
    if deployable and any(isinstance(m, (GlobalFilter, GlobalFilter2d))
                          for m in module.modules()):
        module = to_deployable(module)
    was_training = module.training
    module.eval()
    if isinstance(module, GFDE):
        target = _TupleOutput(module).eval()
        default_names = ['logits'] + [f'exit_{k}' for k in range(len(module.exits))]
    elif isinstance(module, Segment):
        target = module
        default_names = ['features', 'pooled']
    else:
        target = module
        default_names = ['logits']
    names = list(output_names) if output_names is not None else default_names
    kwargs = {'input_names': list(input_names), 'output_names': names, 'verbose': False,
              'external_data': external_data}
    if dynamic_batch:
        kwargs['dynamic_shapes'] = ({0: torch.export.Dim('batch')},)
    if opset_version is not None:
        kwargs['opset_version'] = opset_version
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # The exporter warns about its own internals (pytree deprecations); not actionable.
            warnings.simplefilter('ignore', FutureWarning)
            warnings.simplefilter('ignore', DeprecationWarning)
            torch.onnx.export(target, (example_input,), str(path), **kwargs)
    finally:
        module.train(was_training)
    return str(path)
