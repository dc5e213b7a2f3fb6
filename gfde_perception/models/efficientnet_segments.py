# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
The EfficientNet-Lite0 family seen as stage-wise segments (a stop-gap for the split model).

The split model's teacher tail is written against "a model with segments": ``segments[k](x) ->
(features, pooled)`` and ``exit_heads[-1](pooled) -> logits``. The registered
``efficientnet-lite0`` family has one segment (the whole convolutional network), so the tail
could only start at the image; this view cuts the same modules (no copies) at the network's
seven stage ends. Kept small on purpose: once the family exposes stage-wise segments itself,
:func:`staged` returns the model unchanged and this module goes away.
"""

from gfde_perception.errors import ConfigError
from gfde_perception.models.teachers import EfficientNetLite0, EfficientNetLite0Config
import torch
from torch import nn

# Blocks completed at the end of each of EfficientNet-Lite0's seven stages (repeats 1, 2, 2, 3,
# 3, 4, 1 in the architecture table of efficientnet-lite-pytorch).
STAGE_ENDS = (1, 3, 5, 8, 11, 15, 16)


class _Stage(nn.Module):
    """Stage blocks (with the stem in front of the first, the 1x1 head conv after the last)."""

    def __init__(self, net, start: int, end: int):
        super().__init__()
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish) if start == 0 else None
        self.blocks = nn.ModuleList(net._blocks[start:end])
        last = end == len(net._blocks)
        self.head = nn.Sequential(net._conv_head, net._bn1, net._swish) if last else None

    def forward(self, x: torch.Tensor):
        if self.stem is not None:
            x = self.stem(x)
        for block in self.blocks:
            x = block(x)  # drop-connect is off: the teacher only ever runs frozen here
        if self.head is not None:
            x = self.head(x)
        return x, x.mean((2, 3))  # (B, C, H, W), (B, C)


class SegmentedEfficientNet(nn.Module):
    """An EfficientNet-Lite0 as seven stage segments; ``exit_heads[-1]`` is its classifier."""

    def __init__(self, model: EfficientNetLite0):
        super().__init__()
        net = model.segments[0].net
        if len(net._blocks) != STAGE_ENDS[-1]:
            raise ConfigError(f'expected {STAGE_ENDS[-1]} EfficientNet-Lite0 blocks, got '
                              f'{len(net._blocks)}')
        bounds = (0,) + STAGE_ENDS
        self.segments = nn.ModuleList(_Stage(net, bounds[k], bounds[k + 1])
                                      for k in range(len(STAGE_ENDS)))
        self.exit_heads = nn.ModuleList([model.exit_heads[-1]])

    @property
    def num_exits(self) -> int:
        """Segments (one per stage); only the last has a classifier."""
        return len(self.segments)


def staged(model: nn.Module) -> nn.Module:
    """Return ``model`` with stage-wise segments (EfficientNet-Lite0 gets the stage view)."""
    return SegmentedEfficientNet(model) if isinstance(model, EfficientNetLite0) else model


def segment_count(config) -> int:
    """Segments :func:`staged` gives a model of ``config``."""
    return len(STAGE_ENDS) if isinstance(config, EfficientNetLite0Config) else config.num_exits
