# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
The one preprocessing path, shared by training, evaluation, the runtime and the node.

A :class:`PreprocessSpec` travels inside every model bundle, so what is served cannot drift from
what was trained: nothing here is a deployment knob. Images enter as arrays in a fixed convention,
decoded from whatever the camera sent by :mod:`gfde_perception.image_codec`:

* ``(H, W, 3)`` RGB, or ``(H, W)`` / ``(H, W, 1)`` grey;
* ``uint8`` (0-255), ``uint16`` (0-65535) or floating point already in [0, 1].

Float pixels follow one rule: every pixel must be finite and in [0, 1]. A float image with any
NaN or infinite pixel is refused (``ImageErrorKind.NON_FINITE``), one with a finite pixel
outside [0, 1] (a depth image in metres, 0-255 floats, 3e38) is refused too
(``ImageErrorKind.OUT_OF_RANGE``): nothing is clipped, so a misconfigured camera shows up in the
counters instead of being classified as something it is not. The check runs before any
arithmetic, so no value can overflow.
"""

from dataclasses import asdict, dataclass
import functools
from typing import Iterable, Mapping

import cv2
from gfde_perception.choices import IMAGENET_MEAN, IMAGENET_STD
from gfde_perception.errors import ConfigError, ImageError, ImageErrorKind
import numpy as np

CHANNEL_ORDERS = ('rgb', 'bgr', 'gray')
INTERPOLATIONS = {
    'nearest': cv2.INTER_NEAREST,
    'bilinear': cv2.INTER_LINEAR,
    'bicubic': cv2.INTER_CUBIC,
    'area': cv2.INTER_AREA,
}
RESIZE_MODES = ('stretch', 'center_crop')
# Larger inputs are refused rather than resized: they are almost certainly a decoding error and
# would stall the pipeline (64 Mpx is beyond any camera a robot streams from).
MAX_PIXELS = 64 * 1024 * 1024


@dataclass(frozen=True)
class PreprocessSpec:
    """
    How an image becomes a model input; stored with the weights.

    :ivar input_size: model input (height, width) in pixels.
    :ivar channel_order: channel layout the model was trained on: 'rgb', 'bgr' or 'gray'.
    :ivar mean: per-channel mean subtracted after scaling pixels to [0, 1].
    :ivar std: per-channel standard deviation divided after subtracting the mean.
    :ivar interpolation: resize filter: 'area', 'bilinear', 'bicubic' or 'nearest'.
    :ivar resize_mode: 'stretch' (ignore aspect) or 'center_crop' (crop to the model's aspect
        first).
    """

    input_size: tuple = (224, 224)
    channel_order: str = 'rgb'
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    interpolation: str = 'area'
    resize_mode: str = 'stretch'

    def __post_init__(self):
        size = tuple(int(v) for v in self.input_size)
        object.__setattr__(self, 'input_size', size)
        object.__setattr__(self, 'mean', tuple(float(v) for v in self.mean))
        object.__setattr__(self, 'std', tuple(float(v) for v in self.std))
        if len(size) != 2 or min(size) < 1 or size[0] * size[1] > MAX_PIXELS:
            raise ConfigError(f'input_size must be (height, width) > 0, got {self.input_size}')
        if self.channel_order not in CHANNEL_ORDERS:
            raise ConfigError(
                f'channel_order must be one of {CHANNEL_ORDERS}, got {self.channel_order!r}')
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ConfigError(
                f'mean and std need {self.channels} values for {self.channel_order!r}, '
                f'got {len(self.mean)} and {len(self.std)}')
        if not all(s > 0 and np.isfinite(s) for s in self.std):
            raise ConfigError(f'std must be positive and finite, got {self.std}')
        if not all(np.isfinite(m) for m in self.mean):
            raise ConfigError(f'mean must be finite, got {self.mean}')
        if self.interpolation not in INTERPOLATIONS:
            raise ConfigError(
                f'interpolation must be one of {tuple(INTERPOLATIONS)}, '
                f'got {self.interpolation!r}')
        if self.resize_mode not in RESIZE_MODES:
            raise ConfigError(
                f'resize_mode must be one of {RESIZE_MODES}, got {self.resize_mode!r}')

    @functools.cached_property
    def _normalization(self) -> dict:
        std = np.asarray(self.std, np.float32)[:, None, None]  # (C, 1, 1)
        offset = (np.asarray(self.mean, np.float32)[:, None, None] / std).astype(np.float32)
        # Float pixels were checked to be in [0, 1] (and made float32): scale 1.
        scales = ((np.uint8, 1.0 / 255.0), (np.uint16, 1.0 / 65535.0), (np.float32, 1.0))
        return {np.dtype(t): ((np.float32(scale) / std).astype(np.float32), offset)
                for t, scale in scales}

    def normalization(self, dtype) -> tuple:
        """Return ``(gain, offset)``, (C, 1, 1) each: ``x_norm = pixels * gain - offset``."""
        return self._normalization[np.dtype(dtype)]

    @property
    def channels(self) -> int:
        """Return 1 for a 'gray' model and 3 for colour models."""
        return 1 if self.channel_order == 'gray' else 3

    @property
    def input_shape(self) -> tuple:
        """Return the shape of one preprocessed image: (C, H, W)."""
        return (self.channels, *self.input_size)

    def to_dict(self) -> dict:
        """Return a JSON-ready dict (lists instead of tuples)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping) -> 'PreprocessSpec':
        """Build from :meth:`to_dict` output; unknown keys are a :class:`ConfigError`."""
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f'unknown preprocessing keys: {sorted(unknown)}')
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def check_image_shape(image: np.ndarray) -> np.ndarray:
    """
    Return a grey ``(H, W)`` or RGB ``(H, W, 3)`` array as it is, an ``(H, W, 1)`` one as grey.

    The one rule for the shapes an image may have, here and in :mod:`gfde_perception.image_codec`.

    :raises ImageError: (kind ``WRONG_ARRAY``) any other shape.
    """
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ImageError(f'expected (H, W), (H, W, 1) or (H, W, 3), got shape {image.shape}',
                         ImageErrorKind.WRONG_ARRAY)
    return image


def _check_image(image) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise ImageError(f'expected a numpy array, got {type(image).__name__}',
                         ImageErrorKind.WRONG_ARRAY)
    image = check_image_shape(image)
    h, w = image.shape[:2]
    if h < 1 or w < 1:
        raise ImageError(f'empty image of shape {image.shape}', ImageErrorKind.ZERO_SIZE)
    if h * w > MAX_PIXELS:
        raise ImageError(f'image of {w}x{h} exceeds the {MAX_PIXELS}-pixel limit',
                         ImageErrorKind.TOO_LARGE)
    if image.dtype not in (np.uint8, np.uint16) and not np.issubdtype(image.dtype, np.floating):
        raise ImageError(f'unsupported pixel type {image.dtype} (use uint8, uint16 or float)',
                         ImageErrorKind.WRONG_ARRAY)
    if image.dtype.kind == 'f':
        _check_float_range(image)
    return image


def _check_float_range(image: np.ndarray) -> None:
    """Refuse float pixels that are not finite or not in [0, 1] (see the module docstring)."""
    # min and max propagate NaN, so two passes over the frame decide both cases.
    low, high = image.min(), image.max()
    if 0.0 <= low and high <= 1.0:
        return
    if not (np.isfinite(low) and np.isfinite(high)):
        raise ImageError('image contains NaN or infinite pixels', ImageErrorKind.NON_FINITE)
    raise ImageError(f'float pixels must lie in [0, 1], got values in [{low:.6g}, {high:.6g}]',
                     ImageErrorKind.OUT_OF_RANGE)


def _crop_to_aspect(image: np.ndarray, size: tuple) -> np.ndarray:
    h, w = image.shape[:2]
    target = size[1] / size[0]
    if w / h > target:
        new_w = max(1, round(h * target))
        x0 = (w - new_w) // 2
        return image[:, x0:x0 + new_w]
    new_h = max(1, round(w / target))
    y0 = (h - new_h) // 2
    return image[y0:y0 + new_h]


def input_pixels(image: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """
    Return the model input's pixels before normalisation: cropped, resized, colour-converted.

    :param image: as for :func:`preprocess`.
    :param spec: the bundle's preprocessing.
    :return: (H, W, C) array of ``spec.input_size`` and ``spec.channels``, in the input's dtype
        (float16/float64 become float32). This is what a robot sends to offload the model input.
    :raises ImageError: as for :func:`preprocess`.
    """
    image = _check_image(image)
    if spec.resize_mode == 'center_crop':
        image = _crop_to_aspect(image, spec.input_size)
    if image.dtype == np.float16 or image.dtype == np.float64:
        image = image.astype(np.float32)
    h, w = spec.input_size
    if image.shape[:2] != (h, w):
        # Resizing before the colour conversion keeps the per-pixel work on the small image.
        image = cv2.resize(image, (w, h), interpolation=INTERPOLATIONS[spec.interpolation])
    if spec.channel_order == 'gray':
        if image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        return image[:, :, None]  # (H, W, 1)
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    return image[:, :, ::-1] if spec.channel_order == 'bgr' else image


def preprocess(image: np.ndarray, spec: PreprocessSpec, out: np.ndarray = None) -> np.ndarray:
    """
    Turn one image into a normalised model input of shape ``spec.input_shape`` (float32).

    :param image: (H, W, 3) RGB or (H, W[, 1]) grey, uint8, uint16 or float in [0, 1] (float
        pixels outside [0, 1] or not finite are refused).
    :param spec: the bundle's preprocessing.
    :param out: optional float32 array of ``spec.input_shape`` to write into (no allocation).
    :return: the normalised (C, H, W) input.
    :raises ImageError: wrong shape or type, empty or oversized image, float pixels that are
        not finite or not in [0, 1].
    """
    image = input_pixels(image, spec)
    if out is None:
        out = np.empty(spec.input_shape, np.float32)
    elif out.shape != spec.input_shape or out.dtype != np.float32:
        raise ImageError(f'out must be float32 {spec.input_shape}, got {out.dtype} {out.shape}',
                         ImageErrorKind.WRONG_ARRAY)
    # x_norm = (x * scale - mean) / std = x * (scale / std) - mean / std, written channel-first
    # into `out`; the ufunc casts the integer pixels on the fly (no float copy of the image).
    gain, offset = spec.normalization(image.dtype)
    np.multiply(image.transpose(2, 0, 1), gain, out=out)
    out -= offset
    return out


def preprocess_batch(images: Iterable[np.ndarray], spec: PreprocessSpec) -> np.ndarray:
    """Preprocess several images into one (B, C, H, W) float32 array."""
    images = list(images)
    batch = np.empty((len(images), *spec.input_shape), np.float32)
    for i, image in enumerate(images):
        preprocess(image, spec, out=batch[i])
    return batch
