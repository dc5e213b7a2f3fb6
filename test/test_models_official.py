# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Official GFNet checkpoints: strict loading and logits equal to the GFNet equations.

The expected logits come from a functional implementation written here from the paper's
equations (LayerNorm, 2-D FFT global filter, GELU MLP, residual, mean pooling), on a random
state dict laid out with the reference key names; it shares no code with the package.
"""

import math

from gfde_perception.errors import ConfigError
from gfde_perception.models import GFNet, gfnet_from_official
import pytest
import torch
import torch.nn.functional as F

# Official hyper-parameters: (embed dims per stage, depths per stage, patch size, layer scale).
OFFICIAL = {
    'gfnet-ti': ((256,), (12,), 16, False), 'gfnet-xs': ((384,), (12,), 16, False),
    'gfnet-s': ((384,), (19,), 16, False), 'gfnet-b': ((512,), (19,), 16, False),
    'gfnet-h-ti': ((64, 128, 256, 512), (3, 3, 10, 3), 4, True),
    'gfnet-h-s': ((96, 192, 384, 768), (3, 3, 10, 3), 4, True),
    'gfnet-h-b': ((96, 192, 384, 768), (3, 3, 27, 3), 4, True),
}
TOL = 1e-4


def official_state_dict(arch, img_size, num_classes=1000, seed=0):
    """Random weights in the reference layout (key names and shapes of the official files)."""
    dims, depths, patch, hier = OFFICIAL[arch]
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0):
        return torch.randn(*shape, generator=gen) * scale

    def lin(out_f, in_f):
        return rnd(out_f, in_f, scale=1 / math.sqrt(in_f)), rnd(out_f, scale=0.02)

    sd = {}
    grid = img_size // patch
    embed = 'patch_embed.0.proj' if hier else 'patch_embed.proj'
    sd[embed + '.weight'] = rnd(dims[0], 3, patch, patch, scale=1 / math.sqrt(3 * patch ** 2))
    sd[embed + '.bias'] = rnd(dims[0], scale=0.02)
    sd['pos_embed'] = rnd(1, grid * grid, dims[0], scale=0.02)
    for s, (dim, depth) in enumerate(zip(dims, depths)):
        size = grid >> s
        if s:
            sd[f'patch_embed.{s}.proj.weight'] = rnd(dim, dims[s - 1], 2, 2,
                                                     scale=1 / math.sqrt(4 * dims[s - 1]))
            sd[f'patch_embed.{s}.proj.bias'] = rnd(dim, scale=0.02)
        for j in range(depth):
            p = f'blocks.{s}.{j}.' if hier else f'blocks.{j}.'
            for norm in ('norm1', 'norm2'):
                sd[p + norm + '.weight'] = 1 + rnd(dim, scale=0.1)
                sd[p + norm + '.bias'] = rnd(dim, scale=0.1)
            sd[p + 'filter.complex_weight'] = rnd(size, size // 2 + 1, dim, 2, scale=0.5)
            sd[p + 'mlp.fc1.weight'], sd[p + 'mlp.fc1.bias'] = lin(4 * dim, dim)
            sd[p + 'mlp.fc2.weight'], sd[p + 'mlp.fc2.bias'] = lin(dim, 4 * dim)
            if hier:
                sd[p + 'gamma'] = rnd(dim, scale=0.3)
    sd['norm.weight'] = 1 + rnd(dims[-1], scale=0.1)
    sd['norm.bias'] = rnd(dims[-1], scale=0.1)
    sd['head.weight'], sd['head.bias'] = lin(num_classes, dims[-1])
    return sd


def equations_features(sd, arch, x):
    """Compute GFNet's pooled features from its equations, reading the reference-named tensors."""
    dims, depths, patch, hier = OFFICIAL[arch]
    embed = 'patch_embed.0.proj' if hier else 'patch_embed.proj'
    t = F.conv2d(x, sd[embed + '.weight'], sd[embed + '.bias'], stride=patch)  # (B, C, h, w)
    b, _, h, _ = t.shape
    t = t.flatten(2).transpose(1, 2) + sd['pos_embed']  # (B, N, C)
    for s, (dim, depth) in enumerate(zip(dims, depths)):
        if s:  # 2x2 stride-2 down-sampling on the token grid
            grid = t.transpose(1, 2).reshape(b, dims[s - 1], h, h)
            grid = F.conv2d(grid, sd[f'patch_embed.{s}.proj.weight'],
                            sd[f'patch_embed.{s}.proj.bias'], stride=2)
            h = h // 2
            t = grid.flatten(2).transpose(1, 2)
        for j in range(depth):
            p = f'blocks.{s}.{j}.' if hier else f'blocks.{j}.'
            u = F.layer_norm(t, (dim,), sd[p + 'norm1.weight'], sd[p + 'norm1.bias'], 1e-6)
            spec = torch.fft.rfft2(u.reshape(b, h, h, dim), dim=(1, 2), norm='ortho')
            w = sd[p + 'filter.complex_weight']
            spec = spec * torch.complex(w[..., 0], w[..., 1])
            u = torch.fft.irfft2(spec, s=(h, h), dim=(1, 2), norm='ortho').reshape(b, h * h, dim)
            u = F.layer_norm(u, (dim,), sd[p + 'norm2.weight'], sd[p + 'norm2.bias'], 1e-6)
            u = F.linear(F.gelu(F.linear(u, sd[p + 'mlp.fc1.weight'], sd[p + 'mlp.fc1.bias'])),
                         sd[p + 'mlp.fc2.weight'], sd[p + 'mlp.fc2.bias'])
            t = t + (sd[p + 'gamma'] * u if hier else u)
    return F.layer_norm(t, (dims[-1],), sd['norm.weight'], sd['norm.bias'], 1e-6).mean(1)


def equations_forward(sd, arch, x):
    """Compute GFNet logits: pooled features, then the linear head."""
    return F.linear(equations_features(sd, arch, x), sd['head.weight'], sd['head.bias'])


@pytest.mark.parametrize('arch', sorted(OFFICIAL))
def test_official_layout_loads_strictly_and_matches_the_equations(arch):
    # 64 px keeps every official width and depth while the test stays fast; the input size
    # is read from pos_embed, as for the 384 px fine-tuned checkpoints.
    sd = official_state_dict(arch, img_size=64)
    model = gfnet_from_official({'model': sd}, arch).eval()
    assert isinstance(model, GFNet) and model.config.img_size == 64
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        diff = (model(x) - equations_forward(sd, arch, x)).abs().max().item()
    assert diff < TOL


def test_full_resolution_checkpoint():
    sd = official_state_dict('gfnet-ti', img_size=224, seed=3)
    model = gfnet_from_official(sd, 'gfnet-ti').eval()
    assert model.config.img_size == 224 and model.config.num_classes == 1000
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert (model(x) - equations_forward(sd, 'gfnet-ti', x)).abs().max().item() < TOL


def test_transfer_to_new_classes_keeps_the_backbone():
    sd = official_state_dict('gfnet-h-ti', img_size=64, seed=4)
    model = gfnet_from_official(sd, 'gfnet-h-ti', num_classes=7).eval()
    assert model.head.weight.shape == (7, 512) and model.config.num_classes == 7
    loaded = model.state_dict()
    for key, value in sd.items():
        if not key.startswith('head.'):
            assert torch.equal(loaded[key], value), key
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        diff = (model.forward_features(x) - equations_features(sd, 'gfnet-h-ti', x)).abs().max()
        assert diff.item() < TOL
        assert model(x).shape == (2, 7)


@pytest.mark.parametrize('edit, message', [
    (lambda sd: sd.pop('blocks.3.mlp.fc1.bias'), 'missing .*blocks.3.mlp.fc1.bias'),
    (lambda sd: sd.__setitem__('dist_token', torch.zeros(1)), 'unexpected .*dist_token'),
    (lambda sd: sd.__setitem__('blocks.0.filter.complex_weight', torch.zeros(4, 4, 256, 2)),
     r'wrong shape .*complex_weight: \(4, 4, 256, 2\) instead of'),
])
def test_strict_keys(edit, message):
    sd = official_state_dict('gfnet-ti', img_size=64)
    edit(sd)
    with pytest.raises(ConfigError, match=message):
        gfnet_from_official(sd, 'gfnet-ti')


def test_unknown_arch_and_bad_input():
    with pytest.raises(ConfigError, match='unknown GFNet arch'):
        gfnet_from_official({}, 'gfnet-xxl')
    with pytest.raises(ConfigError, match='mapping'):
        gfnet_from_official([1, 2], 'gfnet-ti')
