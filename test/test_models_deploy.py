# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""Deployable global filter (circular depthwise conv) equals the FFT form; ONNX export."""

import math

from gfde_perception.models import build_model, export_onnx, to_deployable
from gfde_perception.models.layers import (
    CircularConvFilter, CONV_MAX_SIZE, deploy_form, DFTMatmulFilter, GlobalFilter)
from gfde_perception.models.registry import gfnet_config, GFNET_VARIANTS
import numpy as np
import pytest
import torch

TOL = 1e-5
# Whole-model checks: every variant's structure with few, narrow blocks (the real widths and
# grids are covered filter by filter below).
_HIER = {'depths': (1, 1, 1, 1), 'embed_dims': (16, 24, 32, 40), 'img_size': 64}
TINY = {
    'gfnet-ti': {'depth': 2, 'img_size': 64}, 'gfnet-xs': {'depth': 2, 'embed_dim': 32},
    'gfnet-s': {'depth': 2, 'embed_dim': 32}, 'gfnet-b': {'depth': 2, 'embed_dim': 32},
    # h-ti at 128 px: a 32x32 first stage, so 'deploy' mixes the DFT and conv forms.
    'gfnet-h-ti': dict(_HIER, img_size=128), 'gfnet-h-s': _HIER,
    'gfnet-h-b': dict(_HIER, img_size=32),
    'gfnet-edge-28': {'depth': 4}, 'gfnet-edge-32': {'depth': 4},
    'gfnet-edge-64': {'depth': 3},
}


def _distinct_filters(name):
    """(width, grid side) of every distinct filter of a registered variant at full size."""
    return sorted({(dim, size) for _, _, dim, size in gfnet_config(name).block_layout()})


def _unit_filter(dim, size, seed):
    """
    Make a filter with random phases and unit gain at every frequency.

    Unit modulus keeps the output at the input's scale, as a filter inside a trained network
    must (there is no residual around it), so the tolerance is tested at the scale it is used.
    """
    gen = torch.Generator().manual_seed(seed)
    gf = GlobalFilter(dim, size)
    phase = torch.rand(size, size // 2 + 1, dim, generator=gen) * 2 * math.pi
    gf.complex_weight.data = torch.stack([phase.cos(), phase.sin()], dim=-1)
    return gf


FORMS = {'conv': CircularConvFilter, 'dft': DFTMatmulFilter}


@pytest.mark.parametrize('name', sorted(GFNET_VARIANTS))
def test_every_filter_size_of_every_variant(name):
    # The form to_deployable chooses for each size, at the variant's real width and grid.
    for i, (dim, size) in enumerate(_distinct_filters(name)):
        gf = _unit_filter(dim, size, seed=i)
        deployed = FORMS[deploy_form(size)].from_global_filter(gf)
        x = torch.randn(2, size * size, dim, generator=torch.Generator().manual_seed(100 + i))
        with torch.no_grad():
            diff = (gf(x) - deployed(x)).abs().max().item()
        assert diff < TOL, f'{name}: filter {size}x{size}x{dim} differs by {diff}'


@pytest.mark.parametrize('form', sorted(FORMS))
@pytest.mark.parametrize('size', [1, 2, 3, 4, 5, 7, 8, 16, CONV_MAX_SIZE])
def test_both_forms_on_odd_and_even_grids(form, size):
    # Odd and even sides exercise irfft2's Nyquist column; side 1 and 2 the degenerate cases.
    gf = _unit_filter(16, size, seed=size)
    deployed = FORMS[form].from_global_filter(gf)
    x = torch.randn(3, size * size, 16, generator=torch.Generator().manual_seed(size))
    with torch.no_grad():
        assert (gf(x) - deployed(x)).abs().max().item() < TOL


def test_deploy_form_choice():
    assert deploy_form(7) == deploy_form(CONV_MAX_SIZE) == 'conv'
    assert deploy_form(56) == 'dft'


def test_conv_form_is_the_circular_convolution():
    # Independent check of the impulse response: a shifted impulse gives a shifted response.
    gf = _unit_filter(3, 5, seed=7)
    k = gf.impulse_response()  # (C, S, S)
    x = torch.zeros(1, 25, 3)
    x[0, 2 * 5 + 4] = 1.0  # impulse at (2, 4)
    y = gf(x).reshape(5, 5, 3).permute(2, 0, 1)
    torch.testing.assert_close(y.double(), torch.roll(k, (2, 4), (1, 2)), rtol=0, atol=1e-6)


@pytest.mark.parametrize('name', sorted(GFNET_VARIANTS))
def test_whole_model_deployable_equals_fft(name):
    torch.manual_seed(0)
    model = build_model(name, **TINY[name]).eval()
    for module in model.modules():  # unit-gain filters, see _unit_filter
        if isinstance(module, GlobalFilter):
            module.complex_weight.data = _unit_filter(module.dim, module.size, 3).complex_weight
        if getattr(module, 'gamma', None) is not None:
            # GFNet-H's layer scale starts at 1e-3..1e-6, which would hide any filter error.
            module.gamma.data.fill_(1.0)
    deployed = to_deployable(model)
    assert deployed.config.backbone.filter_form == 'deploy'
    forms = {type(m) for m in deployed.modules() if isinstance(m, tuple(FORMS.values()))}
    assert forms == {FORMS[deploy_form(size)] for _, _, _, size in cfg_layout(model)}
    assert not any(isinstance(m, GlobalFilter) for m in deployed.modules())
    assert any(isinstance(m, GlobalFilter) for m in model.modules())  # original untouched
    cfg = model.config.backbone
    x = torch.randn(2, cfg.in_chans, cfg.img_size, cfg.img_size)
    with torch.no_grad():
        ref, out = model(x), deployed(x)
    assert (ref.logits - out.logits).abs().max().item() < TOL
    for a, b in zip(ref.exit_logits, out.exit_logits):
        assert (a - b).abs().max().item() < TOL
    # The segments of the copy run the conv form too.
    tokens = x
    with torch.no_grad():
        for segment in deployed.segments:
            tokens, pooled = segment(tokens)
        final = deployed.exit_heads[-1](pooled)
    assert (final - ref.logits).abs().max().item() < TOL


@pytest.mark.parametrize('form, key', [('conv', 'blocks.0.filter.kernel'),
                                       ('dft', 'blocks.0.filter.weight_re')])
def test_deployable_gfnet_forms_and_training_mode_kept(form, key):
    torch.manual_seed(5)
    model = build_model('gfnet-edge-28', backbone_only=True, depth=2)
    deployed = to_deployable(model, form)
    assert deployed.training and deployed.config.filter_form == form
    assert key in deployed.state_dict()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(deployed.eval()(x), model.eval()(x), rtol=0, atol=TOL)
    with pytest.raises(ValueError, match='form'):
        to_deployable(model, 'fft')


def test_a_model_built_in_a_deployable_form_trains():
    model = build_model('gfnet-edge-28', depth=2, filter_form='dft')
    model(torch.randn(2, 1, 28, 28)).logits.sum().backward()
    assert model.backbone.blocks[0].filter.weight_re.grad is not None


def cfg_layout(model):
    return model.config.backbone.block_layout()


def _ort(path):
    ort = pytest.importorskip('onnxruntime')
    return ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])


@pytest.fixture(scope='module')
def small_model():
    torch.manual_seed(1)
    return build_model('gfnet-edge-28', depth=2, exit_blocks=(1,)).eval()


def test_onnx_whole_model_matches_torch(small_model, tmp_path):
    path = export_onnx(small_model, tmp_path / 'model.onnx', torch.randn(2, 1, 28, 28))
    session = _ort(path)
    assert [o.name for o in session.get_outputs()] == ['logits', 'exit_0']
    x = torch.randn(5, 1, 28, 28)  # another batch size: the batch axis is dynamic
    outs = session.run(None, {'input': x.numpy()})
    with torch.no_grad():
        ref = small_model(x)
    for got, want in zip(outs, (ref.logits,) + ref.exit_logits):
        np.testing.assert_allclose(got, want.numpy(), rtol=0, atol=TOL)
    import onnx
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert 'DFT' not in ops and 'Conv' in ops


def test_onnx_dft_form_matches_torch(small_model, tmp_path):
    path = export_onnx(to_deployable(small_model, 'dft'), tmp_path / 'dft.onnx',
                       torch.randn(1, 1, 28, 28))
    x = torch.randn(2, 1, 28, 28)
    logits = _ort(path).run(['logits'], {'input': x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(logits, small_model(x).logits.numpy(), rtol=0, atol=TOL)


def test_onnx_segments_and_heads_chain(small_model, tmp_path):
    deployed = to_deployable(small_model)
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        ref = small_model(x)
    expected = list(ref.exit_logits) + [ref.logits]
    feed = x
    example = torch.randn(1, 1, 28, 28)
    for k, (segment, head) in enumerate(zip(deployed.segments, deployed.exit_heads)):
        seg_path = export_onnx(segment, tmp_path / f'segment_{k}.onnx', example)
        with torch.no_grad():
            example_tokens, example_pooled = segment(example)
        head_path = export_onnx(head, tmp_path / f'head_{k}.onnx', example_pooled)
        seg = _ort(seg_path)
        assert [o.name for o in seg.get_outputs()] == ['features', 'pooled']
        tokens, pooled = seg.run(None, {'input': np.ascontiguousarray(feed)})
        logits, = _ort(head_path).run(None, {'input': pooled})
        np.testing.assert_allclose(logits, expected[k].numpy(), rtol=0, atol=TOL)
        feed, example = tokens, example_tokens


def test_onnx_gfnet_c_wrapped_grid_matches_torch(tmp_path):
    # GFNet-C's 14x14 stage is exported as a Tile (eager PyTorch concatenates): same logits.
    torch.manual_seed(3)
    model = build_model('gfnet-c-28', depths=(1, 1), exit_blocks=(1,))
    model.train()
    with torch.no_grad():
        for _ in range(3):  # non-trivial BatchNorm statistics to fold
            model(torch.randn(8, 1, 28, 28) * 1.5 + 0.3)
    model.eval()
    deployed = to_deployable(model)
    path = export_onnx(deployed, tmp_path / 'c.onnx', torch.randn(1, 1, 28, 28))
    import onnx
    assert 'Tile' in {n.op_type for n in onnx.load(str(path)).graph.node}
    x = torch.randn(4, 1, 28, 28)
    logits = _ort(path).run(['logits'], {'input': x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(logits, deployed(x).logits.numpy(), rtol=0, atol=TOL)
        np.testing.assert_allclose(logits, model(x).logits.numpy(), rtol=0, atol=1e-4)
