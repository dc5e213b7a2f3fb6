# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Tiny GFDE bundles for runtime, node and evaluation tests (a few thousand parameters).

``make_tiny_bundle(tmp_path)`` builds a 4-block GFDE on 16 px inputs with exits after blocks 1,
2 and 3, saves it with :func:`gfde_perception.bundle.save_bundle` and returns the reloaded
:class:`~gfde_perception.bundle.Bundle` (checksum filled in). The exit heads are re-drawn larger so
that gate confidences spread over [0, 1] on random images instead of sitting at 1/K, which
makes threshold and policy behaviour visible in tests.
"""

from pathlib import Path

from gfde_perception.bundle import Bundle, load_bundle, save_bundle
from gfde_perception.gating import GateConfig
from gfde_perception.models import build_model
from gfde_perception.preprocessing import PreprocessSpec
import numpy as np
import torch


def make_tiny_bundle(folder, *, name: str = 'tiny', seed: int = 0, img_size: int = 16,
                     gray: bool = False, num_classes: int = 4, embed_dim: int = 16,
                     depth: int = 4, exit_blocks: tuple = (1, 2, 3), exit_hidden_dim: int = 0,
                     thresholds: tuple = None, metric: str = 'max_softmax',
                     sharpen: float = 2.0):
    """
    Build, save and reload a tiny GFDE bundle in ``folder``; return the loaded Bundle.

    :param thresholds: per early exit; default 0.6 each.
    :param sharpen: scale of the re-drawn exit-head weights (spreads the confidences).
    """
    torch.manual_seed(seed)
    model = build_model('gfnet-edge-32', img_size=img_size, patch_size=4,
                        in_chans=1 if gray else 3, num_classes=num_classes,
                        embed_dim=embed_dim, depth=depth, exit_blocks=tuple(exit_blocks),
                        exit_hidden_dim=exit_hidden_dim).eval()
    with torch.no_grad():
        for head in model.exit_heads:
            for m in head.modules():
                if isinstance(m, torch.nn.Linear):
                    m.weight.normal_(0.0, sharpen / m.in_features ** 0.5)
                    m.bias.normal_(0.0, 0.5)
    channels = 1 if gray else 3
    spec = PreprocessSpec(input_size=(img_size, img_size),
                          channel_order='gray' if gray else 'rgb',
                          mean=(0.5,) * channels, std=(0.25,) * channels)
    if thresholds is None:
        thresholds = (0.6,) * len(exit_blocks)
    gate = GateConfig(metric, tuple(thresholds))
    bundle = Bundle.from_model(model, name, spec, [f'class{i}' for i in range(num_classes)],
                               gate=gate, provenance={'made_by': 'test/runtime_fixtures.py'})
    path = Path(folder) / f'{name}.gfde'
    save_bundle(bundle, path)
    return load_bundle(path)


def random_images(n: int, seed: int = 0, size=(24, 20), gray: bool = False) -> list:
    """Return ``n`` random uint8 images of ``size`` (H, W), colour unless ``gray``."""
    rng = np.random.default_rng(seed)
    shape = tuple(size) if gray else (*size, 3)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(n)]
