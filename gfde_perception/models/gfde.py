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
teacher's labels (hard or soft) still shape the shared features through the second head's
gradient. As in DeiT the two heads are trained on different targets and averaged at inference.

Exits. After ``exit_blocks[k]`` blocks an exit reads the tokens, normalises them (its own
LayerNorm), mean-pools them and applies a light head (linear, or a one-hidden-layer MLP). The
final classifier is the last exit. ``segments[k]`` runs the backbone from the previous exit up
to exit k and returns ``(features, pooled)``; ``exit_heads[k]`` maps pooled -> logits. A runtime
runs the segments on its accelerator and the heads on the CPU, and decides outside the module
(``gfde_perception.gating``) whether to continue: the graphs stay static.
"""

from dataclasses import dataclass
from typing import Mapping, NamedTuple, Optional, Union

from gfde_perception.errors import ConfigError
from gfde_perception.models.flops import exit_head_cost
from gfde_perception.models.gfnet import _init_weights, GFNet, GFNetConfig
from gfde_perception.models.gfnet_c import GFNetC, GFNetCConfig
import torch
from torch import nn

BackboneConfig = Union[GFNetConfig, GFNetCConfig]
BACKBONES = {GFNetConfig: GFNet, GFNetCConfig: GFNetC}


def backbone_config(data: Mapping) -> BackboneConfig:
    """Build a backbone config from its dict; ``kind`` 'gfnet-c' or absent (GFNet)."""
    if isinstance(data, Mapping) and data.get('kind', 'gfnet') == GFNetCConfig.kind:
        return GFNetCConfig.from_dict(data)
    if isinstance(data, Mapping) and data.get('kind', 'gfnet') != 'gfnet':
        raise ConfigError(f"unknown backbone kind {data.get('kind')!r}; known: "
                          f"['gfnet', {GFNetCConfig.kind!r}]")
    return GFNetConfig.from_dict({k: v for k, v in data.items() if k != 'kind'}
                                 if isinstance(data, Mapping) else data)


def build_backbone(config: BackboneConfig) -> nn.Module:
    """Instantiate the backbone a config describes (GFNet or GFNet-C)."""
    return BACKBONES[type(config)](config)


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

    :ivar backbone: the backbone: a GFNet (tokens) or a GFNet-C (convolutional stem).
    :ivar exit_blocks: blocks completed when each early exit reads the features; strictly
        increasing, each in [1, total depth).
    :ivar distill_head: add the DeiT-style distillation head.
    :ivar exit_hidden_dim: 0 = linear exit heads; > 0 = hidden width of a GELU MLP exit head.
    """

    backbone: BackboneConfig = GFNetConfig()
    exit_blocks: tuple = ()
    distill_head: bool = True
    exit_hidden_dim: int = 0

    def __post_init__(self):
        if type(self.backbone) not in BACKBONES:
            raise ConfigError(f'backbone must be a GFNetConfig or GFNetCConfig, got '
                              f'{type(self.backbone).__name__}')
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
                or not 0 <= self.exit_hidden_dim <= 4096:
            raise ConfigError(f'exit_hidden_dim must be an int in [0, 4096], got '
                              f'{self.exit_hidden_dim!r}')

    family = 'gfde'

    @property
    def num_exits(self) -> int:
        """Early exits plus the final classifier."""
        return len(self.exit_blocks) + 1

    @property
    def blocks_per_exit(self) -> tuple:
        """Blocks completed at each exit; the last is the total depth."""
        return self.exit_blocks + (self.backbone.total_depth,)

    @property
    def img_size(self) -> int:
        """Square input side in pixels."""
        return self.backbone.img_size

    @property
    def in_chans(self) -> int:
        """Input channels."""
        return self.backbone.in_chans

    @property
    def num_classes(self) -> int:
        """Classifier outputs."""
        return self.backbone.num_classes

    def to_dict(self) -> dict:
        """Return a JSON-ready dict (with the ``family`` the registry reads)."""
        return {'family': self.family, 'backbone': self.backbone.to_dict(),
                'exit_blocks': list(self.exit_blocks), 'distill_head': self.distill_head,
                'exit_hidden_dim': self.exit_hidden_dim}

    @classmethod
    def from_dict(cls, data: Mapping) -> 'GFDEConfig':
        """Build from :meth:`to_dict` output; unknown or missing keys are a ConfigError."""
        if not isinstance(data, Mapping):
            raise ConfigError(f'model config must be a mapping, got {type(data).__name__}')
        if data.get('family', cls.family) != cls.family:
            raise ConfigError(f"not a GFDE config (family {data.get('family')!r})")
        data = {k: v for k, v in data.items() if k != 'family'}
        unknown = set(data) - {'backbone', 'exit_blocks', 'distill_head', 'exit_hidden_dim'}
        if unknown:
            raise ConfigError(f'unknown GFDE config keys: {sorted(unknown)}')
        if 'backbone' not in data:
            raise ConfigError('GFDE config lacks "backbone"')
        kwargs = dict(data)
        kwargs['backbone'] = backbone_config(data['backbone'])
        if 'exit_blocks' in kwargs:
            if not isinstance(kwargs['exit_blocks'], (list, tuple)):
                raise ConfigError(f'exit_blocks must be a list, got {kwargs["exit_blocks"]!r}')
            kwargs['exit_blocks'] = tuple(kwargs['exit_blocks'])
        return cls(**kwargs)


class ExitBranch(nn.Module):
    """Parameters of one early exit: the backbone's pooled-feature norm and a light head."""

    def __init__(self, dim: int, num_classes: int, hidden: int = 0, norm: nn.Module = None):
        super().__init__()
        self.norm = norm if norm is not None else GFNet.make_norm(dim)
        if hidden:
            self.head = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(),
                                      nn.Linear(hidden, num_classes))
        else:
            self.head = nn.Linear(dim, num_classes)


class Segment(nn.Module):
    """
    Backbone blocks between two exits; ``forward(x) -> (features, pooled)``.

    Segment 0 takes the image (B, C, H, W); segment k > 0 takes the previous segment's
    features: tokens (B, N, C) for a GFNet, maps (B, C, S, S) for a GFNet-C. ``pooled`` (B, C_k)
    is the exit's normalised, mean-pooled feature. All modules are shared with the owning model.
    """

    def __init__(self, backbone: nn.Module, start: int, end: int, norm: nn.Module):
        super().__init__()
        self.start, self.end = start, end
        self.first = start == 0
        # A plain attribute, not a child: the segment must not own (or re-register) the backbone.
        object.__setattr__(self, '_backbone', backbone)
        if self.first:
            self.embed = _Embed(backbone)
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
            x = self.embed(x)  # (B, N, C) tokens or (B, C, S, S) maps
        for layer in self.layers:
            x = layer(x)
        return x, self._backbone.pool(x, self.norm)  # features, (B, C)


class _Embed(nn.Module):
    """The backbone's input embedding as a module of its own (shared parameters)."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        object.__setattr__(self, '_backbone', backbone)
        # Register the embedding's modules/parameters so the segment sees (and moves) them.
        for name in ('patch_embed', 'pos_drop', 'stem', 'proj'):
            module = getattr(backbone, name, None)
            if isinstance(module, nn.ModuleList):  # GFNet-H: patchify, then down-sampling
                module = module[0]
            if module is not None:
                setattr(self, name, module)
        if hasattr(backbone, 'pos_embed'):
            self.pos_embed = backbone.pos_embed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._backbone.embed(x)


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
        self.backbone = backbone if backbone is not None else build_backbone(config.backbone)
        k = config.backbone.num_classes
        feat = config.backbone.num_features
        self.head_dist = nn.Linear(feat, k) if config.distill_head else None
        if self.head_dist is not None:
            _init_weights(self.head_dist)
        layout = config.backbone.block_layout()
        make_norm = self.backbone.make_norm
        self.exits = nn.ModuleList(
            ExitBranch(layout[b - 1][2], k, config.exit_hidden_dim, make_norm(layout[b - 1][2]))
            for b in config.exit_blocks)
        for branch in self.exits:
            branch.apply(_init_weights)
        self.refresh_views()

    @classmethod
    def from_backbone(cls, backbone: nn.Module, exit_blocks=(), distill_head: bool = True,
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
            dim = layout[b - 1][2]
            fresh = ExitBranch(dim, num_classes, self.config.exit_hidden_dim,
                               self.backbone.make_norm(dim))
            fresh.apply(_init_weights)
            branch.head = fresh.head.to(device)
        self.config = GFDEConfig(self.backbone.config, self.config.exit_blocks,
                                 self.config.distill_head, self.config.exit_hidden_dim)
        self.refresh_views()
