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
  in [0, 1] (pixels that are not finite or not in [0, 1] pass through here and are refused by
  preprocessing, the one place that reads float pixels).

Decode budget: before any pixel is decoded, the size the image header announces (width x height
x channels x bytes per channel: the ``sensor_msgs/Image`` fields with the encoding, a PNG's IHDR,
a JPEG's start-of-frame) is checked against ``max_bytes`` (:data:`DEFAULT_MAX_DECODE_BYTES`), so
a small file that expands to hundreds of megabytes is refused in microseconds without allocating.

Damaged JPEG data is refused, not half-decoded: JPEG goes through libjpeg-turbo (``simplejpeg``)
in strict mode, which turns the warnings libjpeg would otherwise only print ("Corrupt JPEG data:
...") into errors. PNG goes through OpenCV, whose libpng/spng check every chunk's CRC.

Every failure is an :class:`~gfde_perception.errors.ImageError` whose message says what is wrong
and whose ``kind`` (:class:`~gfde_perception.errors.ImageErrorKind`) says why, so an adapter can
count the frame by kind and carry on.
"""

import struct

import cv2
from gfde_perception.errors import ImageError, ImageErrorKind as Kind
from gfde_perception.preprocessing import check_image_shape, MAX_PIXELS
import numpy as np
import simplejpeg

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

DEFAULT_MAX_DECODE_BYTES = 64 * 1024 * 1024
"""Default decode budget in bytes: a 4K RGB frame in 16 bit (49.8 MB) fits, 8K RGB does not."""
MAX_DECODE_BYTES_RANGE = (1, 10 ** 12)
"""Lowest and highest decode budget accepted (the node parameter's range)."""

# PNG colour type -> channels the decoder produces (a palette expands to colour, grey + alpha
# comes out as BGRA from OpenCV).
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 4, 6: 4}


def _check_size(height: int, width: int) -> None:
    if height < 1 or width < 1:
        raise ImageError(f'zero-size image: {width}x{height}', Kind.ZERO_SIZE)
    if height * width > MAX_PIXELS:
        raise ImageError(
            f'image of {width}x{height} exceeds the {MAX_PIXELS}-pixel limit (a decoding error?)',
            Kind.TOO_LARGE)


def _check_header(height: int, width: int, channels: int, bytes_per_channel: int,
                  max_bytes: int, what: str) -> None:
    """Refuse, from the header alone, an image with no pixels or one over the decode budget."""
    _check_size(height, width)
    size = height * width * channels * bytes_per_channel
    if size > max_bytes:
        raise ImageError(
            f'{what} of {width}x{height}x{channels} at {8 * bytes_per_channel} bit would decode '
            f'to {size} B, over the decode budget of {max_bytes} B', Kind.DECODE_BUDGET)


def raw_to_array(encoding: str, height: int, width: int, step: int, is_bigendian,
                 data, max_bytes: int = DEFAULT_MAX_DECODE_BYTES) -> np.ndarray:
    """
    Decode the fields of a raw image message into an array (see the module docstring).

    :param encoding: a ``sensor_msgs/image_encodings`` name, one of :data:`ENCODINGS`.
    :param height: rows.
    :param width: columns.
    :param step: bytes per row including any padding (at least ``width`` * bytes per pixel).
    :param is_bigendian: byte order of 16- and 32-bit pixels (ignored for 8-bit encodings).
    :param data: the pixel buffer (``bytes``, ``bytearray``, ``memoryview``, ``array.array`` or
        a uint8 numpy array) of at least ``step * height`` bytes.
    :param max_bytes: decode budget: ``width * height * bytes per pixel`` of the encoding may
        not exceed it.
    :return: ``(H, W, 3)`` RGB uint8, or ``(H, W)`` grey (uint8, uint16 or float32). For rgb8,
        mono8 and little-endian 16-bit input on a little-endian host this may be a read-only
        view of ``data`` (no copy); callers that must write into it copy first.
    :raises ImageError: unknown encoding, zero or oversized dimensions, over the decode
        budget, a step shorter than a row, a buffer shorter than ``step * height``, or an odd
        width for 4:2:2 YUV (the error's ``kind`` says which).
    """
    spec = _ENCODINGS.get(encoding)
    if spec is None:
        raise ImageError(f'unknown encoding {encoding!r}; supported: {", ".join(ENCODINGS)}',
                         Kind.UNKNOWN_ENCODING)
    bpp, channels, dtype, conversion = spec
    height, width, step = int(height), int(width), int(step)
    _check_header(height, width, channels, bpp // channels, max_bytes, encoding)
    if conversion in ('uyvy', 'yuyv') and width % 2:
        raise ImageError(f'{encoding} needs an even width, got {width}', Kind.WRONG_SIZE)
    row_bytes = width * bpp
    if step < row_bytes:
        raise ImageError(
            f'step {step} is shorter than one row of {width} {encoding} pixels ({row_bytes} B)',
            Kind.WRONG_STEP)
    try:
        buf = np.frombuffer(data, np.uint8)
    except (TypeError, ValueError) as exc:
        raise ImageError(f'image data is not a byte buffer: {exc}', Kind.WRONG_ARRAY) from exc
    needed = step * height
    if buf.size < needed:
        raise ImageError(
            f'truncated data: {buf.size} B for {height} rows of step {step} ({needed} B needed)',
            Kind.TRUNCATED)
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
        raise ImageError(f'unknown encoding {encoding!r}; supported: {", ".join(ENCODINGS)}',
                         Kind.UNKNOWN_ENCODING)
    bpp, channels, dtype, conversion = spec
    array = check_image_shape(np.asarray(array))
    height, width = array.shape[:2]
    _check_size(height, width)
    if array.dtype != dtype:
        raise ImageError(f'{encoding} needs {np.dtype(dtype).name} pixels, got {array.dtype}',
                         Kind.WRONG_ARRAY)
    if conversion == 'grey':
        if array.ndim == 3:
            if dtype is not np.uint8:
                raise ImageError(f'{encoding} needs an (H, W) array, got shape {array.shape}',
                                 Kind.WRONG_ARRAY)
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
                raise ImageError(f'{encoding} needs an even width, got {width}',
                                 Kind.WRONG_SIZE)
            pixels = _rgb_to_yuv422(array, conversion)
    row_bytes = width * bpp
    step = row_bytes if step is None else int(step)
    if step < row_bytes:
        raise ImageError(f'step {step} is shorter than one row ({row_bytes} B)',
                         Kind.WRONG_STEP)
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


def _png_header(data: bytes) -> tuple:
    """Return (height, width, channels, bytes per channel) from a PNG's IHDR."""
    # IHDR is always the first chunk: width, height (big-endian uint32), bit depth, colour type.
    if len(data) < 26 or data[12:16] != b'IHDR':
        raise ImageError('corrupt PNG: no IHDR chunk', Kind.CORRUPT_COMPRESSED)
    width, height, depth, colour = struct.unpack('>IIBB', data[16:26])
    if colour not in _PNG_CHANNELS:
        raise ImageError(f'corrupt PNG: colour type {colour}', Kind.CORRUPT_COMPRESSED)
    return height, width, _PNG_CHANNELS[colour], 2 if depth > 8 else 1


def _jpeg_header(data: bytes) -> tuple:
    """Return (height, width, components, bytes per sample) from a JPEG's first frame header."""
    # Walk the marker segments up to the first start-of-frame (SOF0..SOF15 but DHT/JPG/DAC).
    i = 2
    n = len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            raise ImageError('corrupt JPEG: bad marker sequence', Kind.CORRUPT_COMPRESSED)
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # stand-alone markers carry no length
            i += 2
            continue
        length = struct.unpack('>H', data[i + 2:i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if i + 10 > n:
                break
            precision, height, width, components = struct.unpack('>BHHB', data[i + 4:i + 10])
            return height, width, components, 2 if precision > 8 else 1
        if length < 2:
            raise ImageError('corrupt JPEG: bad segment length', Kind.CORRUPT_COMPRESSED)
        i += 2 + length
    raise ImageError('corrupt JPEG: no frame header', Kind.CORRUPT_COMPRESSED)


def _decode_jpeg(data: bytes, components: int, bytes_per_sample: int) -> np.ndarray:
    if bytes_per_sample != 1:
        raise ImageError('JPEG of more than 8 bit per sample is not supported',
                         Kind.UNKNOWN_ENCODING)
    try:
        # strict: libjpeg's warnings (damaged entropy data, premature end, extraneous bytes)
        # are errors, so a damaged frame is refused instead of classified half-grey.
        image = simplejpeg.decode_jpeg(data, colorspace='GRAY' if components == 1 else 'RGB',
                                       strict=True)
    except ValueError as exc:
        raise ImageError(f'corrupt jpeg image: {exc}', Kind.CORRUPT_COMPRESSED) from exc
    return image[:, :, 0] if components == 1 else image  # (H, W) or (H, W, 3) RGB


def _decode_png(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise ImageError(f'corrupt png image: the decoder rejected {len(data)} B',
                         Kind.CORRUPT_COMPRESSED)
    if image.ndim == 3:
        if image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
        elif image.shape[2] == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        elif image.shape[2] == 1:
            image = image[:, :, 0]
    return image


def compressed_to_array(format: str, data,  # noqa: A002 (the message field name)
                        max_bytes: int = DEFAULT_MAX_DECODE_BYTES) -> np.ndarray:
    """
    Decode JPEG or PNG bytes (a ``sensor_msgs/CompressedImage``) into an array.

    :param format: the message's format string, e.g. ``'jpeg'``, ``'png'``, ``'rgb8; jpeg
        compressed bgr8'`` or ``'16UC1; compressedDepth png'``; empty means "look at the bytes".
    :param data: the compressed bytes.
    :param max_bytes: decode budget: width x height x channels x bytes per channel announced by
        the header may not exceed it (checked before decoding).
    :return: ``(H, W, 3)`` RGB (uint8, or uint16 for 16-bit PNG) or ``(H, W)`` grey.
    :raises ImageError: empty data, a format other than JPEG/PNG, data that is not what the
        format says, a header announcing zero or too many pixels or more bytes than the budget,
        or damaged data (the error's ``kind`` says which).
    """
    fmt = (format or '').lower()
    data = bytes(data) if not isinstance(data, bytes) else data
    if not data:
        raise ImageError('empty compressed image', Kind.ZERO_SIZE)
    if 'compresseddepth' in fmt and _sniff(data) != 'png' and _sniff(data[_DEPTH_HEADER:]):
        data = data[_DEPTH_HEADER:]
    kind = _sniff(data)
    named = 'png' if 'png' in fmt else 'jpeg' if ('jpeg' in fmt or 'jpg' in fmt) else ''
    if fmt and not named:
        raise ImageError(f'unsupported compressed format {format!r}; supported: jpeg, png',
                         Kind.UNKNOWN_ENCODING)
    if not kind:
        raise ImageError(f'corrupt {named or "compressed"} image: no JPEG or PNG signature',
                         Kind.CORRUPT_COMPRESSED)
    if named and kind != named:
        raise ImageError(f'format says {named} but the data is {kind}', Kind.CORRUPT_COMPRESSED)
    # The header first, so that a decompression bomb is refused undecoded.
    header = _png_header(data) if kind == 'png' else _jpeg_header(data)
    _check_header(*header, max_bytes, kind.upper())
    if kind == 'png':
        return _decode_png(data)
    return _decode_jpeg(data, header[2], header[3])


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
        raise ImageError(f'unsupported compressed format {format!r}; supported: jpeg, png',
                         Kind.UNKNOWN_ENCODING)
    if not 1 <= int(quality) <= 100:
        raise ImageError(f'JPEG quality must be in [1, 100], got {quality}', Kind.WRONG_ARGUMENT)
    array = np.asarray(array)
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
        raise ImageError(f'expected (H, W) or (H, W, 3), got shape {array.shape}',
                         Kind.WRONG_ARRAY)
    _check_size(*array.shape[:2])
    allowed = (np.uint8,) if format == 'jpeg' else (np.uint8, np.uint16)
    if array.dtype not in allowed:
        raise ImageError(f'{format} cannot hold {array.dtype} pixels', Kind.WRONG_ARRAY)
    if array.ndim == 3:
        array = cv2.cvtColor(np.ascontiguousarray(array), cv2.COLOR_RGB2BGR)
    params = [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)] if format == 'jpeg' else []
    ok, encoded = cv2.imencode('.jpg' if format == 'jpeg' else '.png', array, params)
    if not ok:
        raise ImageError(f'the {format} encoder failed on a {array.shape} {array.dtype} array',
                         Kind.ENCODE_FAILED)
    return encoded.tobytes()
