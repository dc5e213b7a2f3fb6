# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""GFNet/GFDE: registry, configs, forward/backward, exits vs segments, costs."""

from gfde_perception.errors import ConfigError
from gfde_perception.models import (
    build_model, default_exit_blocks, GFDE, GFDEConfig, GFDEOutput, GFNet, gfnet_config,
    GFNetConfig, list_models, model_summary)
from gfde_perception.models.registry import GFNET_VARIANTS, OFFICIAL_NAMES
import pytest
import torch


# Parameters (millions) and GFLOPs the GFNet paper / reference README give for each variant.
PAPER = {
    'gfnet-ti': (7, 1.3), 'gfnet-xs': (16, 2.8), 'gfnet-s': (25, 4.5), 'gfnet-b': (43, 7.9),
    'gfnet-h-ti': (15, 2.0), 'gfnet-h-s': (32, 4.5), 'gfnet-h-b': (54, 8.4),
}

# Small but real: official widths, few blocks, small inputs, so every variant runs in seconds.
TINY = {
    'gfnet-ti': {'depth': 2, 'img_size': 64}, 'gfnet-xs': {'depth': 2, 'img_size': 64},
    'gfnet-s': {'depth': 2, 'img_size': 64}, 'gfnet-b': {'depth': 2, 'img_size': 64},
    'gfnet-h-ti': {'depths': (1, 1, 1, 1), 'img_size': 64},
    'gfnet-h-s': {'depths': (1, 1, 1, 1), 'img_size': 64},
    'gfnet-h-b': {'depths': (1, 1, 1, 1), 'img_size': 64},
    'gfnet-edge-28': {}, 'gfnet-edge-32': {'depth': 4}, 'gfnet-edge-64': {'depth': 3},
}


def test_list_models_has_official_edge_and_teacher_names():
    names = list_models()
    for name in OFFICIAL_NAMES + ('gfnet-edge-28', 'gfnet-edge-32', 'gfnet-edge-64'):
        assert name in names
    assert set(TINY) == set(GFNET_VARIANTS)


@pytest.mark.parametrize('name', OFFICIAL_NAMES)
def test_official_sizes_match_the_paper(name):
    # Built on the meta device: no memory, but every parameter shape is real.
    with torch.device('meta'):
        model = build_model(name, exit_blocks=(), distill_head=False)
    summary = model_summary(model)
    params, gflops = PAPER[name]
    assert abs(summary['params_total'] / 1e6 - params) / params < 0.08
    assert abs(sum(summary['macs_per_segment']) / 1e9 - gflops) / gflops < 0.05


@pytest.mark.parametrize('name', sorted(GFNET_VARIANTS))
def test_every_variant_builds_and_trains_one_step(name):
    torch.manual_seed(0)
    model = build_model(name, **TINY[name])
    assert isinstance(model, GFDE)
    cfg = model.config.backbone
    x = torch.randn(2, cfg.in_chans, cfg.img_size, cfg.img_size)
    out = model(x)
    assert isinstance(out, GFDEOutput)
    assert out.logits.shape == (2, cfg.num_classes)
    assert len(out.exit_logits) == len(model.config.exit_blocks)
    loss = out.logits.sum() + sum(e.sum() for e in out.exit_logits)
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.backbone.pos_embed.grad.abs().sum() > 0


def test_backbone_only_returns_gfnet_with_reference_api():
    model = build_model('gfnet-edge-28', backbone_only=True, depth=2)
    assert isinstance(model, GFNet)
    x = torch.randn(3, 1, 28, 28)
    feats = model.forward_features(x)
    assert feats.shape == (3, 48)
    torch.testing.assert_close(model.forward_head(feats), model(x))


def test_reference_parameter_names():
    iso = build_model('gfnet-ti', backbone_only=True, depth=2, img_size=32).state_dict()
    assert 'patch_embed.proj.weight' in iso and 'pos_embed' in iso
    assert iso['blocks.1.filter.complex_weight'].shape == (2, 2, 256, 2)
    for key in ('blocks.0.norm1.weight', 'blocks.0.norm2.bias', 'blocks.0.mlp.fc1.weight',
                'blocks.0.mlp.fc2.bias', 'norm.weight', 'head.weight'):
        assert key in iso
    assert not any('gamma' in k for k in iso)
    hier = build_model('gfnet-h-ti', backbone_only=True, depths=(1, 2, 1, 1),
                       img_size=64).state_dict()
    for key in ('patch_embed.0.proj.weight', 'patch_embed.3.proj.weight', 'pos_embed',
                'blocks.1.1.gamma', 'blocks.3.0.filter.complex_weight', 'norm.weight'):
        assert key in hier
    assert hier['blocks.0.0.filter.complex_weight'].shape == (16, 9, 64, 2)
    assert hier['blocks.3.0.filter.complex_weight'].shape == (2, 2, 512, 2)


def test_overrides_and_default_exits():
    model = build_model('gfnet-edge-32', embed_dim=16, depth=8, num_classes=7, in_chans=1)
    assert model.config.backbone.embed_dim == 16
    assert model.blocks_per_exit == (2, 4, 6, 8)
    assert model(torch.randn(1, 1, 32, 32)).logits.shape == (1, 7)
    assert default_exit_blocks(gfnet_config('gfnet-h-ti')) == (3, 6, 16)
    assert build_model('gfnet-edge-28', depth=1).config.exit_blocks == ()
    with pytest.raises(ConfigError, match='unknown overrides'):
        build_model('gfnet-edge-28', embed_dimension=3)
    with pytest.raises(ConfigError, match='hierarchical'):
        build_model('gfnet-h-ti', depth=3)
    with pytest.raises(ConfigError, match='unknown model'):
        build_model('resnet-50')


@pytest.mark.parametrize('kwargs, message', [
    ({'img_size': 30, 'patch_size': 4}, 'multiple'),
    ({'embed_dim': 0}, 'embed_dim'),
    ({'filter_form': 'dft2'}, 'filter_form'),
    ({'drop_path_rate': 1.0}, 'drop_path_rate'),
    ({'hierarchical': True, 'embed_dims': (8, 8, 8), 'depths': (1, 1, 1, 1)}, 'embed_dims'),
    ({'hierarchical': True, 'embed_dims': (8,) * 4, 'depths': (1,) * 4, 'img_size': 24,
      'patch_size': 4}, 'multiple of 8'),
])
def test_gfnet_config_validation(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        GFNetConfig(**kwargs)


@pytest.mark.parametrize('exit_blocks', [(0, 2), (3, 2), (2, 2), (12,), ('a',)])
def test_gfde_config_rejects_bad_exits(exit_blocks):
    with pytest.raises(ConfigError):
        GFDEConfig(gfnet_config('gfnet-edge-28'), exit_blocks=exit_blocks)


def test_config_round_trip():
    cfg = GFDEConfig(gfnet_config('gfnet-h-ti', img_size=64), (2, 5), False, 16)
    assert GFDEConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match='unknown'):
        GFDEConfig.from_dict(dict(cfg.to_dict(), extra=1))


@pytest.mark.parametrize('name, overrides', [
    ('gfnet-edge-28', {'depth': 6, 'exit_blocks': (1, 3, 5)}),
    ('gfnet-edge-32', {'depth': 4, 'embed_dim': 16, 'exit_blocks': (2,), 'distill_head': False,
                       'exit_hidden_dim': 8}),
    # Exits inside and at the borders of GFNet-H stages (2 = end of stage 0, 3 = after the
    # first down-sampled block, 5 = end of stage 2).
    ('gfnet-h-ti', {'img_size': 32, 'embed_dims': (8, 16, 24, 32), 'depths': (2, 1, 2, 1),
                    'exit_blocks': (2, 3, 5)}),
])
def test_segments_and_heads_reproduce_forward(name, overrides):
    torch.manual_seed(1)
    model = build_model(name, **overrides).eval()
    cfg = model.config.backbone
    x = torch.randn(3, cfg.in_chans, cfg.img_size, cfg.img_size)
    out = model(x)
    assert len(model.segments) == len(model.exit_heads) == model.num_exits
    tokens = x
    for k, (segment, head) in enumerate(zip(model.segments, model.exit_heads)):
        tokens, pooled = segment(tokens)
        layout = cfg.block_layout()[model.blocks_per_exit[k] - 1]
        assert pooled.shape == (3, layout[2])
        expected = out.exit_logits[k] if k < len(out.exit_logits) else out.logits
        torch.testing.assert_close(head(pooled), expected, rtol=0, atol=1e-6)
    # The segments share parameters with the model: no copies.
    model_params = {id(p) for p in model.parameters()}
    for segment in model.segments:
        assert {id(p) for p in segment.parameters()} <= model_params


def test_output_type_and_heads_in_train_and_eval():
    torch.manual_seed(2)
    model = build_model('gfnet-edge-28', depth=3, exit_blocks=(1,))
    x = torch.randn(2, 1, 28, 28)
    train_out = model.train()(x)
    eval_out = model.eval()(x)
    assert type(train_out) is type(eval_out) is GFDEOutput
    torch.testing.assert_close(eval_out.logits, (eval_out.cls_logits + eval_out.dist_logits) / 2)
    assert not torch.allclose(eval_out.cls_logits, eval_out.dist_logits)
    plain = build_model('gfnet-edge-28', depth=3, exit_blocks=(1,), distill_head=False).eval()
    out = plain(x)
    assert out.dist_logits is out.cls_logits and out.logits is out.cls_logits


def test_views_follow_module_changes():
    model = build_model('gfnet-edge-28', depth=2, exit_blocks=(1,))
    model.eval()
    assert not any(m.training for view in (model.segments, model.exit_heads)
                   for m in view.modules())
    model.train()
    assert all(m.training for m in model.segments.modules())
    model.to(torch.float64)
    assert model.segments[0].embed.pos_embed.dtype == torch.float64
    out = model(torch.randn(1, 1, 28, 28, dtype=torch.float64))
    assert out.logits.dtype == torch.float64


def test_head_cost_and_summary():
    model = build_model('gfnet-edge-28', depth=4, exit_blocks=(2,), exit_hidden_dim=16)
    cost = model.head_cost()
    assert [c['blocks'] for c in cost] == [2, 4]
    # Early exit: LayerNorm (2*48) + MLP head (48*16+16 + 16*10+10); final: norm + 2 heads.
    assert cost[0]['params'] == 2 * 48 + 48 * 16 + 16 + 16 * 10 + 10
    assert cost[0]['head_macs'] == 48 * 16 + 16 * 10
    assert cost[1]['params'] == 2 * 48 + 2 * (48 * 10 + 10)
    assert cost[1]['head_macs'] == 2 * 48 * 10
    summary = model_summary(model)
    assert summary['params_total'] == sum(p.numel() for p in model.parameters())
    assert len(summary['macs_per_segment']) == 2
    assert summary['macs_to_exit'][0] < summary['macs_to_exit'][1]


def test_reset_classifier_keeps_backbone():
    torch.manual_seed(3)
    model = build_model('gfnet-edge-28', depth=3, exit_blocks=(1,))
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()
              if not k.startswith('head.')}
    x = torch.randn(2, 1, 28, 28)
    feats = model.eval().backbone.forward_features(x)
    model.reset_classifier(4)
    assert model(x).logits.shape == (2, 4) and model(x).exit_logits[0].shape == (2, 4)
    after = model.backbone.state_dict()
    for key, value in before.items():
        assert torch.equal(after[key], value), key
    torch.testing.assert_close(model.backbone.forward_features(x), feats)
    assert model.config.backbone.num_classes == 4


def test_from_backbone_starts_equal_to_the_gfnet():
    torch.manual_seed(4)
    gfnet = build_model('gfnet-edge-28', backbone_only=True, depth=3).eval()
    model = GFDE.from_backbone(gfnet, exit_blocks=(1, 2)).eval()
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(model(x).logits, gfnet(x))
    assert model.backbone is gfnet


@pytest.mark.parametrize('size', [1, 2, 7, 8, 9, 14, 15])
def test_folded_filter_equals_norms_around_the_fft_filter(size):
    # Both deployable forms (zero-padded full kernel up to FULL_KERNEL_MAX_SIZE, wrapped grid
    # above it) on odd and even grids, against BatchNorm -> FFT filter -> BatchNorm.
    from gfde_perception.models.gfnet_c import FoldedFilter, FULL_KERNEL_MAX_SIZE, GlobalFilter2d

    gen = torch.Generator().manual_seed(size)
    dim = 6
    gf = GlobalFilter2d(dim, size)
    gf.complex_weight.data = torch.randn(gf.complex_weight.shape, generator=gen) * 0.3
    norms = []
    for _ in range(2):
        bn = torch.nn.BatchNorm2d(dim).eval()
        bn.running_mean.copy_(torch.randn(dim, generator=gen))
        bn.running_var.copy_(torch.rand(dim, generator=gen) + 0.5)
        bn.weight.data = torch.randn(dim, generator=gen)
        bn.bias.data = torch.randn(dim, generator=gen)
        norms.append(bn)
    folded = FoldedFilter.fold(norms[0], gf, norms[1])
    assert folded.full == (size <= FULL_KERNEL_MAX_SIZE)
    x = torch.randn(3, dim, size, size, generator=gen)
    with torch.no_grad():
        expected = norms[1](gf(norms[0](x)))
        torch.testing.assert_close(folded(x), expected, rtol=1e-4, atol=1e-4)
