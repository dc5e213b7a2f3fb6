# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Today's EfficientNet-Lite0 teacher seen through the segment interface (a stop-gap).

The split model's teacher tail is written against "a model with segments": ``segments[k](x) ->
(features, pooled)`` and ``exit_heads[-1](pooled) -> logits``. The teacher shipped today is a
plain ``efficientnet_lite_pytorch`` network, so this module cuts it at its seven stage ends.
It is kept small on purpose: when the teacher becomes a registry model with stage-wise segments
of its own, this wrapper and its family entry in ``models/split.py`` go away.
"""

from dataclasses import dataclass
from typing import Mapping

from gfde_perception.errors import ConfigError
from gfde_perception.models.teachers import build_efficientnet_lite0
import torch
from torch import nn

# Blocks completed at the end of each of EfficientNet-Lite0's seven stages (repeats 1, 2, 2, 3,
# 3, 4, 1 in the architecture table of efficientnet-lite-pytorch).
STAGE_ENDS = (1, 3, 5, 8, 11, 15, 16)


@dataclass(frozen=True)
class EfficientNetLite0Config:
    """Architecture of the segmented EfficientNet-Lite0 (weights come from a state dict)."""

    num_classes: int = 1000
    in_chans: int = 3
    image_size: int = 224

    def __post_init__(self):
        for name, low, high in (('num_classes', 1, 100000), ('in_chans', 1, 16),
                                ('image_size', 16, 4096)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(f'efficientnet-lite0 {name} must be an int in [{low}, {high}], '
                                  f'got {value!r}')

    @property
    def num_exits(self) -> int:
        """Segments of the model (one per stage)."""
        return len(STAGE_ENDS)

    def to_dict(self) -> dict:
        """Return a JSON-ready dict."""
        return {'num_classes': self.num_classes, 'in_chans': self.in_chans,
                'image_size': self.image_size}

    @classmethod
    def from_dict(cls, data: Mapping) -> 'EfficientNetLite0Config':
        """Build from :meth:`to_dict` output; unknown keys are a ConfigError."""
        if not isinstance(data, Mapping):
            raise ConfigError(f'efficientnet-lite0 config must be a mapping, got {data!r}')
        unknown = set(data) - {'num_classes', 'in_chans', 'image_size'}
        if unknown:
            raise ConfigError(f'unknown efficientnet-lite0 config keys: {sorted(unknown)}')
        return cls(**data)


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
    """
    EfficientNet-Lite0 as seven stage-wise segments; ``exit_heads[-1]`` is its classifier.

    Only the final classifier exists (the teacher has no early exits), so ``exit_heads`` holds
    one module and callers read ``exit_heads[-1]``.
    """

    def __init__(self, config: EfficientNetLite0Config, net=None):
        super().__init__()
        self.config = config
        if net is None:
            net = build_efficientnet_lite0(config.num_classes, in_chans=config.in_chans,
                                           pretrained=False, image_size=config.image_size)
        if len(net._blocks) != STAGE_ENDS[-1]:
            raise ConfigError(f'expected {STAGE_ENDS[-1]} EfficientNet-Lite0 blocks, got '
                              f'{len(net._blocks)}')
        bounds = (0,) + STAGE_ENDS
        self.segments = nn.ModuleList(_Stage(net, bounds[k], bounds[k + 1])
                                      for k in range(len(STAGE_ENDS)))
        self.exit_heads = nn.ModuleList([nn.Sequential(nn.Flatten(1), net._dropout, net._fc)])

    @property
    def num_exits(self) -> int:
        """Segments (one per stage); only the last has a classifier."""
        return len(self.segments)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for segment in self.segments:
            x, pooled = segment(x)
        return self.exit_heads[-1](pooled)
