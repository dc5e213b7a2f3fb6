# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
GFDE: a GFNet with a distillation head and early exits, split into runnable segments.

Distillation design. DeiT adds a distillation *token* that attends to the image tokens. GFNet
has no attention: its only token mixing is the global filter, which needs the tokens on a
square grid. A token outside the grid would never see the image (the MLPs act per token), and a
token inside the grid would break its shape and shift the filter's frequencies. So the
distillation signal enters through a second linear head (``head_dist``) on the same pooled
feature as the class head: the grid stays square, the backbone cost is unchanged, and the
teacher's hard labels still shape the shared features through the second head's gradient. As
in DeiT the two heads are trained on different targets and averaged at inference.

Exits. After ``exit_blocks[k]`` blocks an exit reads the tokens, normalises them (its own
LayerNorm), mean-pools them and applies a light head (linear, or a one-hidden-layer MLP). The
final classifier is the last exit. ``segments[k]`` runs the backbone from the previous exit up
to exit k and returns ``(tokens, pooled)``; ``exit_heads[k]`` maps pooled -> logits. A runtime
runs the segments on its accelerator and the heads on the CPU, and decides outside the module
(``gfde_perception.gating``) whether to continue: the graphs stay static.
"""

from dataclasses import dataclass
from typing import Mapping, NamedTuple, Optional

from gfde_perception.errors import ConfigError
from gfde_perception.models.gfnet import _init_weights, GFNet, GFNetConfig
from gfde_perception.models.layers import LAYER_NORM_EPS
import torch
from torch import nn


class GFDEOutput(NamedTuple):
    """
    Everything one GFDE forward pass computes (same type in training and inference).

    :ivar logits: (B, K) inference logits = mean of ``cls_logits`` and ``dist_logits``.
    :ivar cls_logits: (B, K) class head (trained on labels).
    :ivar dist_logits: (B, K) distillation head (trained on the teacher); equals ``cls_logits``
        when the model has no distillation head.
    :ivar exit_logits: tuple of (B, K), one per early exit, in order (final not included).
    """

    logits: torch.Tensor
    cls_logits: torch.Tensor
    dist_logits: torch.Tensor
    exit_logits: tuple


@dataclass(frozen=True)
class GFDEConfig:
    """
    Architecture of a GFDE model.

    :ivar backbone: the GFNet.
    :ivar exit_blocks: blocks completed when each early exit reads the features; strictly
        increasing, each in [1, total depth).
    :ivar distill_head: add the DeiT-style distillation head.
    :ivar exit_hidden_dim: 0 = linear exit heads; > 0 = hidden width of a GELU MLP exit head.
    """

    backbone: GFNetConfig = GFNetConfig()
    exit_blocks: tuple = ()
    distill_head: bool = True
    exit_hidden_dim: int = 0

    def __post_init__(self):
        if not isinstance(self.backbone, GFNetConfig):
            raise ConfigError(f'backbone must be a GFNetConfig, got {type(self.backbone)}')
        try:
            blocks = tuple(int(b) for b in self.exit_blocks)
        except (TypeError, ValueError):
            raise ConfigError(f'exit_blocks must be integers, got {self.exit_blocks!r}') from None
        object.__setattr__(self, 'exit_blocks', blocks)
        depth = self.backbone.total_depth
        if any(b < 1 or b >= depth for b in blocks):
            raise ConfigError(f'exit_blocks must lie in [1, {depth - 1}] for a {depth}-block '
                              f'backbone, got {blocks}')
        if any(a >= b for a, b in zip(blocks, blocks[1:])):
            raise ConfigError(f'exit_blocks must be strictly increasing, got {blocks}')
        if not isinstance(self.distill_head, bool):
            raise ConfigError(f'distill_head must be a bool, got {self.distill_head!r}')
        if isinstance(self.exit_hidden_dim, bool) or not isinstance(self.exit_hidden_dim, int) \
                or self.exit_hidden_dim < 0:
            raise ConfigError(f'exit_hidden_dim must be an int >= 0, got '
                              f'{self.exit_hidden_dim!r}')

    @property
    def num_exits(self) -> int:
        """Early exits plus the final classifier."""
        return len(self.exit_blocks) + 1

    @property
    def blocks_per_exit(self) -> tuple:
        """Blocks completed at each exit; the last is the total depth."""
        return self.exit_blocks + (self.backbone.total_depth,)

    def to_dict(self) -> dict:
        """Return a JSON-ready dict."""
        return {'backbone': self.backbone.to_dict(), 'exit_blocks': list(self.exit_blocks),
                'distill_head': self.distill_head, 'exit_hidden_dim': self.exit_hidden_dim}

    @classmethod
    def from_dict(cls, data: Mapping) -> 'GFDEConfig':
        """Build from :meth:`to_dict` output; unknown or missing keys are a ConfigError."""
        if not isinstance(data, Mapping):
            raise ConfigError(f'model config must be a mapping, got {type(data).__name__}')
        unknown = set(data) - {'backbone', 'exit_blocks', 'distill_head', 'exit_hidden_dim'}
        if unknown:
            raise ConfigError(f'unknown GFDE config keys: {sorted(unknown)}')
        if 'backbone' not in data:
            raise ConfigError('GFDE config lacks "backbone"')
        kwargs = dict(data)
        kwargs['backbone'] = GFNetConfig.from_dict(data['backbone'])
        if 'exit_blocks' in kwargs:
            if not isinstance(kwargs['exit_blocks'], (list, tuple)):
                raise ConfigError(f'exit_blocks must be a list, got {kwargs["exit_blocks"]!r}')
            kwargs['exit_blocks'] = tuple(kwargs['exit_blocks'])
        return cls(**kwargs)


class ExitBranch(nn.Module):
    """Parameters of one early exit: a LayerNorm (run in the segment) and a light head."""

    def __init__(self, dim: int, num_classes: int, hidden: int = 0):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        if hidden:
            self.head = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(),
                                      nn.Linear(hidden, num_classes))
        else:
            self.head = nn.Linear(dim, num_classes)


class Segment(nn.Module):
    """
    Backbone blocks between two exits; ``forward(x) -> (tokens, pooled)``.

    Segment 0 takes the image (B, C, H, W); segment k > 0 takes the previous segment's tokens
    (B, N, C). ``pooled`` (B, C_k) is the exit's normalised, mean-pooled feature. All modules
    are shared with the owning model.
    """

    def __init__(self, backbone: GFNet, start: int, end: int, norm: nn.Module):
        super().__init__()
        self.start, self.end = start, end
        self.first = start == 0
        if self.first:
            hier = backbone.config.hierarchical
            self.patch_embed = backbone.patch_embed[0] if hier else backbone.patch_embed
            self.pos_embed = backbone.pos_embed
            self.pos_drop = backbone.pos_drop
        blocks = backbone.flat_blocks()
        layers = []
        for i in range(start, end):
            down = backbone.downsample_before(i)
            if down is not None:
                layers.append(down)
            layers.append(blocks[i])
        self.layers = nn.ModuleList(layers)
        self.norm = norm

    def forward(self, x: torch.Tensor):
        if self.first:
            x = self.pos_drop(self.patch_embed(x) + self.pos_embed)  # (B, N, C)
        for layer in self.layers:
            x = layer(x)
        return x, self.norm(x).mean(1)  # (B, N, C), (B, C)


class FinalHead(nn.Module):
    """The final classifier in inference form: mean of the class and distillation heads."""

    def __init__(self, head: nn.Module, head_dist: Optional[nn.Module]):
        super().__init__()
        self.head = head
        self.head_dist = head_dist

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        if self.head_dist is None:
            return self.head(pooled)
        return (self.head(pooled) + self.head_dist(pooled)) * 0.5


class GFDE(nn.Module):
    """
    GFNet + distillation head + early exits; ``forward(x) -> GFDEOutput``.

    Parameter names: ``backbone.*`` (the reference GFNet names), ``head_dist.*``,
    ``exits.K.norm.*`` and ``exits.K.head.*``.
    """

    def __init__(self, config: GFDEConfig, backbone: Optional[GFNet] = None):
        super().__init__()
        if backbone is not None and backbone.config != config.backbone:
            raise ConfigError('backbone module does not match config.backbone')
        self.config = config
        self.backbone = backbone if backbone is not None else GFNet(config.backbone)
        k = config.backbone.num_classes
        feat = config.backbone.num_features
        self.head_dist = nn.Linear(feat, k) if config.distill_head else None
        if self.head_dist is not None:
            _init_weights(self.head_dist)
        layout = config.backbone.block_layout()
        self.exits = nn.ModuleList(
            ExitBranch(layout[b - 1][2], k, config.exit_hidden_dim) for b in config.exit_blocks)
        for branch in self.exits:
            branch.apply(_init_weights)
        self.refresh_views()

    @classmethod
    def from_backbone(cls, backbone: GFNet, exit_blocks=(), distill_head: bool = True,
                      exit_hidden_dim: int = 0) -> 'GFDE':
        """
        Wrap a (pretrained) GFNet, sharing its weights.

        The distillation head starts as a copy of the class head, so the new model's inference
        logits equal the GFNet's until fine-tuning starts.
        """
        config = GFDEConfig(backbone.config, tuple(exit_blocks), distill_head, exit_hidden_dim)
        model = cls(config, backbone=backbone)
        if model.head_dist is not None:
            with torch.no_grad():
                model.head_dist.weight.copy_(backbone.head.weight)
                model.head_dist.bias.copy_(backbone.head.bias)
        return model

    def refresh_views(self) -> None:
        """
        Rebuild ``segments`` and ``exit_heads`` (after modules were swapped or moved).

        The views are kept outside the registered children so that the state_dict names each
        tensor once (and safetensors, which refuses aliased tensors, can save it).
        """
        cfg = self.config
        bounds = (0,) + cfg.blocks_per_exit
        norms = [branch.norm for branch in self.exits] + [self.backbone.norm]
        segments = nn.ModuleList(
            Segment(self.backbone, bounds[k], bounds[k + 1], norms[k])
            for k in range(cfg.num_exits))
        heads = nn.ModuleList([branch.head for branch in self.exits]
                              + [FinalHead(self.backbone.head, self.head_dist)])
        for view in (segments, heads):
            for module in view.modules():
                module.training = self.training
        object.__setattr__(self, 'segments', segments)
        object.__setattr__(self, 'exit_heads', heads)

    def train(self, mode: bool = True):
        super().train(mode)
        # The views are not registered children: keep their own flags in step (the modules
        # they share are already set by the call above).
        for view in (self.segments, self.exit_heads):
            for module in view.modules():
                module.training = mode
        return self

    def _apply(self, fn, *args, **kwargs):
        out = super()._apply(fn, *args, **kwargs)
        self.refresh_views()
        return out

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self.refresh_views()  # `assign=True` swaps Parameter objects the views point at.
        return result

    @property
    def num_exits(self) -> int:
        """Early exits plus the final classifier."""
        return self.config.num_exits

    @property
    def blocks_per_exit(self) -> tuple:
        """Blocks completed at each exit; the last is the total depth."""
        return self.config.blocks_per_exit

    def forward(self, x: torch.Tensor) -> GFDEOutput:
        exit_logits = []
        tokens = x
        for k, segment in enumerate(self.segments):
            tokens, pooled = segment(tokens)
            if k < len(self.exits):
                exit_logits.append(self.exits[k].head(pooled))
        cls_logits = self.backbone.head(pooled)
        dist_logits = self.head_dist(pooled) if self.head_dist is not None else cls_logits
        logits = (cls_logits + dist_logits) * 0.5 if self.head_dist is not None else cls_logits
        return GFDEOutput(logits, cls_logits, dist_logits, tuple(exit_logits))

    def head_cost(self) -> tuple:
        """
        Per exit: parameters and multiply-accumulates of the exit head (batch 1).

        Each entry is a dict with ``exit``, ``blocks``, ``params`` (norm + head),
        ``norm_pool_macs`` (LayerNorm and pooling, run at the end of the segment) and
        ``head_macs`` (the head proper, run on the CPU worker).
        """
        from gfde_perception.models.flops import exit_head_cost
        return exit_head_cost(self)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace every classifier (final, distillation, exits) for a new class count."""
        self.backbone.reset_classifier(num_classes)
        device = self.backbone.head.weight.device
        if self.head_dist is not None:
            self.head_dist = nn.Linear(self.config.backbone.num_features, num_classes).to(device)
            _init_weights(self.head_dist)
        layout = self.config.backbone.block_layout()
        for branch, b in zip(self.exits, self.config.exit_blocks):
            fresh = ExitBranch(layout[b - 1][2], num_classes, self.config.exit_hidden_dim)
            fresh.apply(_init_weights)
            branch.head = fresh.head.to(device)
        self.config = GFDEConfig(self.backbone.config, self.config.exit_blocks,
                                 self.config.distill_head, self.config.exit_hidden_dim)
        self.refresh_views()
