# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
ROS-free image decoding: raw camera buffers and JPEG/PNG bytes to arrays, and back.

The verbs come in pairs in the manner of cv_bridge (``raw_to_array`` / ``array_to_raw``,
``compressed_to_array`` / ``array_to_compressed``), but nothing here imports ROS: the fields of a
``sensor_msgs/Image`` (encoding, height, width, step, is_bigendian, data) are plain arguments, so
the decoder is tested from bytes and shared by the node, the bag reader and the tools.

Output convention (what :func:`gfde_perception.preprocessing.preprocess` takes):

* colour encodings give ``(H, W, 3)`` **RGB** ``uint8``;
* ``mono8``/``8UC1`` give ``(H, W)`` ``uint8``; ``mono16``/``16UC1`` keep 16 bit, ``(H, W)``
  ``uint16`` in native byte order; ``32FC1`` gives ``(H, W)`` ``float32`` taken as intensities
  in [0, 1] (non-finite pixels pass through and are refused by preprocessing).

Every failure is an :class:`~gfde_perception.errors.ImageError` whose message says what is wrong
(unknown encoding, zero size, wrong step, truncated data, corrupt or oversized compressed data), so
an adapter can count the frame and carry on.
"""

import struct

import cv2
from gfde_perception.errors import ImageError
from gfde_perception.preprocessing import MAX_PIXELS
import numpy as np

# encoding -> (bytes per pixel, channels in the buffer, element dtype, conversion to the output).
# The conversion names say how buffer channels become the output convention.
_ENCODINGS = {
    'rgb8': (3, 3, np.uint8, 'rgb'),
    'bgr8': (3, 3, np.uint8, 'bgr'),
    # OpenCV's convention for an untyped 3-channel image is BGR (cv_bridge does the same).
    '8UC3': (3, 3, np.uint8, 'bgr'),
    'rgba8': (4, 4, np.uint8, 'rgba'),
    'bgra8': (4, 4, np.uint8, 'bgra'),
    '8UC4': (4, 4, np.uint8, 'bgra'),
    'mono8': (1, 1, np.uint8, 'grey'),
    '8UC1': (1, 1, np.uint8, 'grey'),
    'mono16': (2, 1, np.uint16, 'grey'),
    '16UC1': (2, 1, np.uint16, 'grey'),
    '32FC1': (4, 1, np.float32, 'grey'),
    # 4:2:2 packed YUV: two pixels share one U and one V sample (4 bytes per 2 pixels).
    'yuv422': (2, 2, np.uint8, 'uyvy'),
    'uyvy': (2, 2, np.uint8, 'uyvy'),
    'yuv422_yuy2': (2, 2, np.uint8, 'yuyv'),
    'yuyv': (2, 2, np.uint8, 'yuyv'),
}
ENCODINGS = tuple(_ENCODINGS)
"""Every encoding :func:`raw_to_array` decodes (aliases included)."""

COMPRESSED_FORMATS = ('jpeg', 'png')
_JPEG_MAGIC = b'\xff\xd8'
_PNG_MAGIC = b'\x89PNG\r\n\x1a\n'
# compressed_depth_image_transport puts a 12-byte header (format enum + two floats) before its PNG.
_DEPTH_HEADER = 12


def _check_size(height: int, width: int) -> None:
    if height < 1 or width < 1:
        raise ImageError(f'zero-size image: {width}x{height}')
    if height * width > MAX_PIXELS:
        raise ImageError(
            f'image of {width}x{height} exceeds the {MAX_PIXELS}-pixel limit (a decoding error?)')


def raw_to_array(encoding: str, height: int, width: int, step: int, is_bigendian,
                 data) -> np.ndarray:
    """
    Decode the fields of a raw image message into an array (see the module docstring).

    :param encoding: a ``sensor_msgs/image_encodings`` name, one of :data:`ENCODINGS`.
    :param height: rows.
    :param width: columns.
    :param step: bytes per row including any padding (at least ``width`` * bytes per pixel).
    :param is_bigendian: byte order of 16- and 32-bit pixels (ignored for 8-bit encodings).
    :param data: the pixel buffer (``bytes``, ``bytearray``, ``memoryview``, ``array.array`` or
        a uint8 numpy array) of at least ``step * height`` bytes.
    :return: ``(H, W, 3)`` RGB uint8, or ``(H, W)`` grey (uint8, uint16 or float32). For rgb8,
        mono8 and little-endian 16-bit input on a little-endian host this may be a read-only
        view of ``data`` (no copy); callers that must write into it copy first.
    :raises ImageError: unknown encoding, zero or oversized dimensions, a step shorter than a
        row, a buffer shorter than ``step * height``, or an odd width for 4:2:2 YUV.
    """
    spec = _ENCODINGS.get(encoding)
    if spec is None:
        raise ImageError(f'unknown encoding {encoding!r}; supported: {", ".join(ENCODINGS)}')
    bpp, channels, dtype, conversion = spec
    height, width, step = int(height), int(width), int(step)
    _check_size(height, width)
    if conversion in ('uyvy', 'yuyv') and width % 2:
        raise ImageError(f'{encoding} needs an even width, got {width}')
    row_bytes = width * bpp
    if step < row_bytes:
        raise ImageError(
            f'step {step} is shorter than one row of {width} {encoding} pixels ({row_bytes} B)')
    try:
        buf = np.frombuffer(data, np.uint8)
    except (TypeError, ValueError) as exc:
        raise ImageError(f'image data is not a byte buffer: {exc}') from exc
    needed = step * height
    if buf.size < needed:
        raise ImageError(
            f'truncated data: {buf.size} B for {height} rows of step {step} ({needed} B needed)')
    rows = buf[:needed].reshape(height, step)[:, :row_bytes]  # (H, row_bytes) uint8 view
    if dtype is np.uint8:
        pixels = rows.reshape(height, width, channels) if channels > 1 else rows
    else:
        order = '>' if is_bigendian else '<'
        if step % np.dtype(dtype).itemsize:
            # A row start that is not aligned to the element size cannot be viewed in place.
            rows = np.ascontiguousarray(rows)
        pixels = rows.view(np.dtype(dtype).newbyteorder(order))  # (H, W)
        if not pixels.dtype.isnative:
            pixels = pixels.astype(pixels.dtype.newbyteorder('='))
    if conversion in ('rgb', 'grey'):
        return pixels
    if conversion == 'bgr':
        return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
    if conversion == 'rgba':
        return cv2.cvtColor(pixels, cv2.COLOR_RGBA2RGB)
    if conversion == 'bgra':
        return cv2.cvtColor(pixels, cv2.COLOR_BGRA2RGB)
    code = cv2.COLOR_YUV2RGB_UYVY if conversion == 'uyvy' else cv2.COLOR_YUV2RGB_YUY2
    return cv2.cvtColor(np.ascontiguousarray(pixels), code)


def _rgb_to_yuv422(rgb: np.ndarray, conversion: str) -> np.ndarray:
    """
    Pack (H, W, 3) RGB uint8 into (H, W, 2) 4:2:2 bytes with BT.601 video-range coefficients.

    Written in numpy rather than with cv2.COLOR_RGB2YUV_UYVY, which older OpenCV releases (those
    shipped with ROS distributions) lack; the decoder side is OpenCV's, the two agree to a few
    levels, which is what a camera's encoder gives too.
    """
    f = rgb.astype(np.float32)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    y = 16.0 + 0.257 * r + 0.504 * g + 0.098 * b
    u = 128.0 - 0.148 * r - 0.291 * g + 0.439 * b
    v = 128.0 + 0.439 * r - 0.368 * g - 0.071 * b
    # Chroma is shared by each pixel pair: average it.
    u = 0.5 * (u[:, 0::2] + u[:, 1::2])
    v = 0.5 * (v[:, 0::2] + v[:, 1::2])
    h, w = y.shape
    out = np.empty((h, w // 2, 4), np.float32)
    if conversion == 'uyvy':
        out[..., 0], out[..., 1], out[..., 2], out[..., 3] = u, y[:, 0::2], v, y[:, 1::2]
    else:
        out[..., 0], out[..., 1], out[..., 2], out[..., 3] = y[:, 0::2], u, y[:, 1::2], v
    return np.clip(np.rint(out), 0, 255).astype(np.uint8).reshape(h, w, 2)


def array_to_raw(array: np.ndarray, encoding: str, step: int = None, bigendian: bool = False):
    """
    Encode an array in the module's convention into raw image fields (inverse of decoding).

    :param array: ``(H, W, 3)`` RGB uint8 for colour encodings, ``(H, W)`` uint8 for
        mono8/8UC1, uint16 for mono16/16UC1, float32 for 32FC1. A grey array is accepted for a
        colour encoding (replicated) and a colour one for a grey 8-bit encoding (converted).
    :param encoding: one of :data:`ENCODINGS`.
    :param step: bytes per row; ``None`` packs rows tightly, a larger value pads each row.
    :param bigendian: byte order to write 16- and 32-bit pixels in.
    :return: ``(step, data, is_bigendian)`` with ``data`` of ``step * H`` bytes.
    :raises ImageError: unknown encoding, wrong array type or shape, odd width for 4:2:2 YUV,
        or a step shorter than a row.
    """
    spec = _ENCODINGS.get(encoding)
    if spec is None:
        raise ImageError(f'unknown encoding {encoding!r}; supported: {", ".join(ENCODINGS)}')
    bpp, channels, dtype, conversion = spec
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
        raise ImageError(f'expected (H, W) or (H, W, 3), got shape {array.shape}')
    height, width = array.shape[:2]
    _check_size(height, width)
    if array.dtype != dtype:
        raise ImageError(f'{encoding} needs {np.dtype(dtype).name} pixels, got {array.dtype}')
    if conversion == 'grey':
        if array.ndim == 3:
            if dtype is not np.uint8:
                raise ImageError(f'{encoding} needs an (H, W) array, got shape {array.shape}')
            array = cv2.cvtColor(np.ascontiguousarray(array), cv2.COLOR_RGB2GRAY)
        pixels = array.astype(np.dtype(dtype).newbyteorder('>' if bigendian else '<'))
    else:
        if array.ndim == 2:
            array = cv2.cvtColor(np.ascontiguousarray(array), cv2.COLOR_GRAY2RGB)
        array = np.ascontiguousarray(array)
        if conversion == 'rgb':
            pixels = array
        elif conversion == 'bgr':
            pixels = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
        elif conversion == 'rgba':
            pixels = cv2.cvtColor(array, cv2.COLOR_RGB2RGBA)
        elif conversion == 'bgra':
            pixels = cv2.cvtColor(array, cv2.COLOR_RGB2BGRA)
        else:
            if width % 2:
                raise ImageError(f'{encoding} needs an even width, got {width}')
            pixels = _rgb_to_yuv422(array, conversion)
    row_bytes = width * bpp
    step = row_bytes if step is None else int(step)
    if step < row_bytes:
        raise ImageError(f'step {step} is shorter than one row ({row_bytes} B)')
    raw = np.ascontiguousarray(pixels).view(np.uint8).reshape(height, row_bytes)
    if step > row_bytes:
        padded = np.zeros((height, step), np.uint8)
        padded[:, :row_bytes] = raw
        raw = padded
    return step, raw.tobytes(), bool(bigendian and bpp > 1 and channels == 1)


def _sniff(data: bytes) -> str:
    if data[:2] == _JPEG_MAGIC:
        return 'jpeg'
    if data[:8] == _PNG_MAGIC:
        return 'png'
    return ''


def _png_size(data: bytes) -> tuple:
    # IHDR is always the first chunk: width and height are big-endian uint32 at bytes 16..24.
    if len(data) < 24 or data[12:16] != b'IHDR':
        raise ImageError('corrupt PNG: no IHDR chunk')
    width, height = struct.unpack('>II', data[16:24])
    return height, width


def _jpeg_size(data: bytes) -> tuple:
    # Walk the marker segments up to the first start-of-frame (SOF0..SOF15 but DHT/JPG/DAC).
    i = 2
    n = len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            raise ImageError('corrupt JPEG: bad marker sequence')
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # stand-alone markers carry no length
            i += 2
            continue
        length = struct.unpack('>H', data[i + 2:i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if i + 9 > n:
                break
            height, width = struct.unpack('>HH', data[i + 5:i + 9])
            return height, width
        if length < 2:
            raise ImageError('corrupt JPEG: bad segment length')
        i += 2 + length
    raise ImageError('corrupt JPEG: no frame header')


def compressed_to_array(format: str, data) -> np.ndarray:  # noqa: A002 (the message field name)
    """
    Decode JPEG or PNG bytes (a ``sensor_msgs/CompressedImage``) into an array.

    :param format: the message's format string, e.g. ``'jpeg'``, ``'png'``, ``'rgb8; jpeg
        compressed bgr8'`` or ``'16UC1; compressedDepth png'``; empty means "look at the bytes".
    :param data: the compressed bytes.
    :return: ``(H, W, 3)`` RGB (uint8, or uint16 for 16-bit PNG) or ``(H, W)`` grey.
    :raises ImageError: empty data, a format other than JPEG/PNG, data that is not what the
        format says, a header announcing zero or too many pixels, or undecodable data.
    """
    fmt = (format or '').lower()
    data = bytes(data) if not isinstance(data, bytes) else data
    if not data:
        raise ImageError('empty compressed image')
    if 'compresseddepth' in fmt and _sniff(data) != 'png' and _sniff(data[_DEPTH_HEADER:]):
        data = data[_DEPTH_HEADER:]
    kind = _sniff(data)
    named = 'png' if 'png' in fmt else 'jpeg' if ('jpeg' in fmt or 'jpg' in fmt) else ''
    if fmt and not named:
        raise ImageError(f'unsupported compressed format {format!r}; supported: jpeg, png')
    if not kind:
        raise ImageError(f'corrupt {named or "compressed"} image: no JPEG or PNG signature')
    if named and kind != named:
        raise ImageError(f'format says {named} but the data is {kind}')
    # Read the size from the header first so that a decompression bomb is refused undecoded.
    _check_size(*(_png_size(data) if kind == 'png' else _jpeg_size(data)))
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise ImageError(f'corrupt {kind} image: the decoder rejected {len(data)} B')
    if image.ndim == 3:
        if image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
        elif image.shape[2] == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        elif image.shape[2] == 1:
            image = image[:, :, 0]
    return image


def array_to_compressed(array: np.ndarray, format: str = 'jpeg',  # noqa: A002
                        quality: int = 90) -> bytes:
    """
    Encode an RGB or grey array as JPEG or PNG bytes (inverse of :func:`compressed_to_array`).

    :param array: ``(H, W, 3)`` RGB or ``(H, W)`` grey; uint8 (JPEG, PNG) or uint16 (PNG only).
    :param format: ``'jpeg'`` or ``'png'``.
    :param quality: JPEG quality 1-100 (ignored for PNG).
    :return: the encoded bytes.
    :raises ImageError: unknown format, bad quality, wrong shape or type, or an encoder failure.
    """
    if format not in COMPRESSED_FORMATS:
        raise ImageError(f'unsupported compressed format {format!r}; supported: jpeg, png')
    if not 1 <= int(quality) <= 100:
        raise ImageError(f'JPEG quality must be in [1, 100], got {quality}')
    array = np.asarray(array)
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
        raise ImageError(f'expected (H, W) or (H, W, 3), got shape {array.shape}')
    _check_size(*array.shape[:2])
    allowed = (np.uint8,) if format == 'jpeg' else (np.uint8, np.uint16)
    if array.dtype not in allowed:
        raise ImageError(f'{format} cannot hold {array.dtype} pixels')
    if array.ndim == 3:
        array = cv2.cvtColor(np.ascontiguousarray(array), cv2.COLOR_RGB2BGR)
    params = [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)] if format == 'jpeg' else []
    ok, encoded = cv2.imencode('.jpg' if format == 'jpeg' else '.png', array, params)
    if not ok:
        raise ImageError(f'the {format} encoder failed on a {array.shape} {array.dtype} array')
    return encoded.tobytes()
