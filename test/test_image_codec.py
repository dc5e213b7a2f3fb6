# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Unit tier: gfde_perception.image_codec decodes every encoding from bytes, with no ROS.

Expected values come from buffers written byte by byte here (independently of the encoder), and
round trips through ``array_to_raw``/``array_to_compressed`` cover padding and byte order. Every
refusal is checked by its kind (``ImageErrorKind``), the name the node counts it under.
"""

import re
import struct
import tracemalloc
import zlib

from gfde_perception import image_codec
from gfde_perception.errors import ImageError, ImageErrorKind as Kind
from gfde_perception.image_codec import (array_to_compressed, array_to_raw, compressed_to_array,
                                         DEFAULT_MAX_DECODE_BYTES, raw_to_array)
import numpy as np
import pytest

RNG = np.random.default_rng(7)
RGB = RNG.integers(0, 256, (5, 6, 3), dtype=np.uint8)
GREY16 = RNG.integers(0, 65536, (5, 6), dtype=np.uint16)


def test_bgr8_from_handwritten_bytes():
    # One row of two pixels: (B, G, R) = (1, 2, 3) and (4, 5, 6), then 2 bytes of padding.
    data = bytes([1, 2, 3, 4, 5, 6, 0xEE, 0xEE])
    out = raw_to_array('bgr8', 1, 2, 8, False, data)
    assert out.shape == (1, 2, 3) and out.dtype == np.uint8
    assert out.tolist() == [[[3, 2, 1], [6, 5, 4]]]


@pytest.mark.parametrize('encoding,expected', [
    ('rgba8', [[10, 20, 30], [40, 50, 60]]),
    ('bgra8', [[30, 20, 10], [60, 50, 40]]),
])
def test_alpha_is_dropped(encoding, expected):
    data = bytes([10, 20, 30, 255, 40, 50, 60, 0])
    assert raw_to_array(encoding, 1, 2, 8, False, data)[0].tolist() == expected


def test_mono16_honours_byte_order():
    data = bytes([0x01, 0x02, 0x03, 0x04])
    little = raw_to_array('mono16', 1, 2, 4, False, data)
    big = raw_to_array('mono16', 1, 2, 4, True, data)
    assert little.dtype == np.uint16 and little.dtype.isnative
    assert little.tolist() == [[0x0201, 0x0403]]
    assert big.tolist() == [[0x0102, 0x0304]]


@pytest.mark.parametrize('encoding', ['rgb8', 'bgr8', '8UC3', 'rgba8', 'bgra8', '8UC4'])
@pytest.mark.parametrize('pad', [0, 3, 13])
def test_colour_round_trip_with_row_padding(encoding, pad):
    bpp = 4 if 'a' in encoding or encoding == '8UC4' else 3
    step, data, big = array_to_raw(RGB, encoding, step=6 * bpp + pad)
    assert len(data) == step * 5 and not big
    # Padding bytes must be ignored: fill them with garbage.
    raw = np.frombuffer(data, np.uint8).reshape(5, step).copy()
    raw[:, 6 * bpp:] = 0xAB
    out = raw_to_array(encoding, 5, 6, step, big, raw.tobytes())
    np.testing.assert_array_equal(out, RGB)


@pytest.mark.parametrize('encoding', ['mono16', '16UC1'])
@pytest.mark.parametrize('bigendian', [False, True])
@pytest.mark.parametrize('pad', [0, 1, 4])
def test_16bit_round_trip(encoding, bigendian, pad):
    step, data, big = array_to_raw(GREY16, encoding, step=12 + pad, bigendian=bigendian)
    assert big == bigendian
    out = raw_to_array(encoding, 5, 6, step, big, data)
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, GREY16)


@pytest.mark.parametrize('encoding', ['mono8', '8UC1'])
def test_mono8_is_a_zero_copy_view(encoding):
    grey = RGB[:, :, 0].copy()
    step, data, big = array_to_raw(grey, encoding)
    out = raw_to_array(encoding, 5, 6, step, big, data)
    np.testing.assert_array_equal(out, grey)
    assert np.shares_memory(out, np.frombuffer(data, np.uint8))


def test_32fc1_keeps_floats_and_non_finite_values():
    values = np.array([[0.0, 0.5, np.nan, 1.0]], np.float32)
    step, data, big = array_to_raw(values, '32FC1', bigendian=True)
    out = raw_to_array('32FC1', 1, 4, step, big, data)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, values)


def _uyvy_pair(u, y0, v, y1):
    return bytes([u, y0, v, y1])


def test_yuv422_byte_orders_agree():
    # The same two pixel pairs written as UYVY and as YUY2 (YUYV) must decode identically.
    pairs = [(90, 60, 200, 70), (140, 180, 100, 190)]
    uyvy = b''.join(_uyvy_pair(*p) for p in pairs)
    yuyv = b''.join(bytes([y0, u, y1, v]) for u, y0, v, y1 in pairs)
    a = raw_to_array('yuv422', 1, 4, 8, False, uyvy)
    b = raw_to_array('yuv422_yuy2', 1, 4, 8, False, yuyv)
    assert a.shape == (1, 4, 3)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(raw_to_array('uyvy', 1, 4, 8, False, uyvy), a)
    # Neutral chroma gives grey pixels whose level follows luma.
    grey = raw_to_array('yuv422', 1, 2, 4, False, _uyvy_pair(128, 60, 128, 200))[0]
    assert abs(int(grey[0, 0]) - int(grey[0, 2])) <= 1 and grey[1, 0] > grey[0, 0] + 100


@pytest.mark.parametrize('encoding', ['yuv422', 'yuv422_yuy2'])
def test_yuv422_round_trip_of_a_smooth_image(encoding):
    # 4:2:2 halves the horizontal chroma resolution: use an image constant over pixel pairs.
    colours = RNG.integers(30, 220, (4, 3, 3), dtype=np.uint8)
    image = np.repeat(colours, 2, axis=1)  # (4, 6, 3)
    step, data, big = array_to_raw(image, encoding, step=16)
    out = raw_to_array(encoding, 4, 6, step, big, data)
    assert np.abs(out.astype(int) - image.astype(int)).max() <= 4


@pytest.mark.parametrize('args,reason,kind', [
    (('bayer_rggb8', 2, 2, 2, False, bytes(4)), 'unknown encoding', Kind.UNKNOWN_ENCODING),
    (('rgb8', 0, 4, 12, False, b''), 'zero-size', Kind.ZERO_SIZE),
    (('rgb8', 4, 0, 0, False, b''), 'zero-size', Kind.ZERO_SIZE),
    (('rgb8', 2, 4, 11, False, bytes(24)), 'step 11 is shorter', Kind.WRONG_STEP),
    # The message names the step too: the kind, not the text, says what is wrong.
    (('rgb8', 2, 4, 12, False, bytes(23)), 'truncated', Kind.TRUNCATED),
    (('mono16', 3, 3, 6, True, bytes(17)), 'truncated', Kind.TRUNCATED),
    (('yuv422', 2, 3, 6, False, bytes(12)), 'even width', Kind.WRONG_SIZE),
    (('rgb8', 100_000, 100_000, 300_000, False, b''), 'pixel limit', Kind.TOO_LARGE),
    (('rgb8', 2, 2, 6, False, 12), 'not a byte buffer', Kind.WRONG_ARRAY),
])
def test_bad_raw_images_raise_image_error_with_the_reason(args, reason, kind):
    with pytest.raises(ImageError, match=reason) as caught:
        raw_to_array(*args)
    assert caught.value.kind is kind


def test_every_listed_encoding_decodes():
    for encoding in image_codec.ENCODINGS:
        array = GREY16 if encoding in ('mono16', '16UC1') else RGB
        if encoding == '32FC1':
            array = GREY16.astype(np.float32) / 65535.0
        step, data, big = array_to_raw(array, encoding)
        out = raw_to_array(encoding, 5, 6, step, big, data)
        assert out.shape[:2] == (5, 6), encoding


def test_png_round_trip_is_exact_for_rgb_grey_and_16_bit():
    for array in (RGB, RGB[:, :, 1].copy(), GREY16):
        out = compressed_to_array('png', array_to_compressed(array, 'png'))
        assert out.dtype == array.dtype
        np.testing.assert_array_equal(out, array)


def test_jpeg_round_trip_is_close_and_rgb_ordered():
    image = np.zeros((32, 32, 3), np.uint8)
    image[..., 0] = 220  # strongly red: a channel swap would be obvious
    out = compressed_to_array('rgb8; jpeg compressed bgr8', array_to_compressed(image, 'jpeg'))
    assert out.shape == (32, 32, 3)
    assert abs(int(out[..., 0].mean()) - 220) < 6 and out[..., 2].mean() < 10


def test_compressed_depth_header_is_skipped():
    png = array_to_compressed(GREY16, 'png')
    out = compressed_to_array('16UC1; compressedDepth png', bytes(12) + png)
    np.testing.assert_array_equal(out, GREY16)


_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def _png_chunk(tag, body):
    return struct.pack('>I', len(body)) + tag + body + struct.pack('>I', zlib.crc32(tag + body))


def _png_with_size(width, height):
    return _PNG_SIGNATURE + _png_chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 2, 0,
                                                            0, 0))


@pytest.mark.parametrize('fmt,data,reason,kind', [
    ('jpeg', b'', 'empty', Kind.ZERO_SIZE),
    ('tiff', b'II*\x00', 'unsupported compressed format', Kind.UNKNOWN_ENCODING),
    ('jpeg', b'not an image at all', 'no JPEG or PNG signature', Kind.CORRUPT_COMPRESSED),
    ('png', b'\xff\xd8\xff\xe0' + bytes(40), 'format says png but the data is jpeg',
     Kind.CORRUPT_COMPRESSED),
    ('jpeg', b'\xff\xd8\xff\xe0\x00\x10JFIF' + bytes(30), 'corrupt', Kind.CORRUPT_COMPRESSED),
    ('png', _png_with_size(200_000, 200_000), 'pixel limit', Kind.TOO_LARGE),
    ('png', _png_with_size(0, 10), 'zero-size', Kind.ZERO_SIZE),
])
def test_bad_compressed_images_raise_image_error(fmt, data, reason, kind):
    with pytest.raises(ImageError, match=reason) as caught:
        compressed_to_array(fmt, data)
    assert caught.value.kind is kind


def _camera_like(height, width, seed):
    """Return smooth gradients plus sensor noise: compresses like a photo, not like noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x / width * 255, y / height * 255, (x + y) / (width + height) * 255], -1)
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize('fmt,height,width,trials', [('jpeg', 480, 640, 20),
                                                     ('png', 120, 160, 10)])
def test_random_bytes_in_the_middle_are_refused_as_corrupt_not_decoded(capfd, fmt, height,
                                                                       width, trials):
    # Issue 11, item 5: 400 random bytes in the middle of a 640x480 JPEG. libjpeg recovers such
    # a stream with only a warning on stderr; the codec must refuse it, and say so itself.
    good = array_to_compressed(_camera_like(height, width, 0), fmt)
    assert compressed_to_array(fmt, good).shape == (height, width, 3)
    rng = np.random.default_rng(11)
    for trial in range(trials):
        damaged = bytearray(good)
        at = int(rng.integers(len(good) // 4, 3 * len(good) // 4))
        damaged[at:at + 400] = rng.integers(0, 256, 400, dtype=np.uint8).tobytes()
        with pytest.raises(ImageError) as caught:
            compressed_to_array(fmt, bytes(damaged))
        assert caught.value.kind is Kind.CORRUPT_COMPRESSED, trial
    assert 'Corrupt JPEG' not in capfd.readouterr().err, 'the warning went to stderr instead'


def test_truncated_or_damaged_jpeg_is_refused_as_corrupt():
    good = array_to_compressed(_camera_like(48, 64, 1), 'jpeg')
    damaged = [good[:len(good) // 2], good[:40], good[:2] + bytes(len(good) - 2),
               good[:-2]]  # no end-of-image marker
    flipped = bytearray(good)
    flipped[len(good) // 3: len(good) // 3 + 50] = bytes(50)
    damaged.append(bytes(flipped))
    for i, data in enumerate(damaged):
        with pytest.raises(ImageError) as caught:
            compressed_to_array('jpeg', data)
        assert caught.value.kind is Kind.CORRUPT_COMPRESSED, i


def test_grey_jpeg_decodes_to_a_2d_array():
    grey = _camera_like(30, 40, 3)[..., 0].copy()
    out = compressed_to_array('jpeg', array_to_compressed(grey, 'jpeg', quality=100))
    assert out.shape == (30, 40) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - grey.astype(int)).mean() < 3


def _png_bomb(width, height):
    """Return a valid 16-bit RGB PNG of black pixels: a few hundred KB decoding to w*h*6 B."""
    row = bytes(1 + width * 6)  # filter byte + one row of zeros
    packer = zlib.compressobj(9)
    idat = b''.join(packer.compress(row) for _ in range(height)) + packer.flush()
    ihdr = struct.pack('>IIBBBBB', width, height, 16, 2, 0, 0, 0)
    return (_PNG_SIGNATURE + _png_chunk(b'IHDR', ihdr) + _png_chunk(b'IDAT', idat)
            + _png_chunk(b'IEND', b''))


def test_png_bomb_is_refused_from_its_header_without_decoding():
    # Issue 11, item 4: a ~391 KB PNG of 8192x8192 RGB 16 bit (under the pixel cap) decodes to
    # 402 MB. The budget is checked from IHDR: the decoder never runs, nothing is allocated.
    bomb = _png_bomb(8192, 8192)
    assert len(bomb) < 500_000 and 8192 * 8192 * 6 > DEFAULT_MAX_DECODE_BYTES
    tracemalloc.start()
    try:
        with pytest.raises(ImageError, match='decode budget') as caught:
            compressed_to_array('png', bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert caught.value.kind is Kind.DECODE_BUDGET
    assert peak < 1_000_000, f'{peak} B allocated while refusing a header'


def _jpeg_header_only(width, height, components=3):
    """Return SOI + a baseline start-of-frame announcing the size, and no scan at all."""
    sof = struct.pack('>BHHB', 8, height, width, components)
    sof += b''.join(bytes([k + 1, 0x11, 0]) for k in range(components))
    return b'\xff\xd8\xff\xc0' + struct.pack('>H', len(sof) + 2) + sof + b'\xff\xd9'


def test_jpeg_and_raw_headers_over_the_budget_are_refused_before_the_data_is_read():
    # 7000x7000 RGB is under the pixel cap but 147 MB decoded. The JPEG has no scan and the raw
    # message no pixels: a decoder that ran would report them corrupt and truncated instead.
    with pytest.raises(ImageError) as caught:
        compressed_to_array('jpeg', _jpeg_header_only(7000, 7000))
    assert caught.value.kind is Kind.DECODE_BUDGET
    with pytest.raises(ImageError) as caught:
        raw_to_array('rgb8', 7000, 7000, 21000, False, bytes(16))
    assert caught.value.kind is Kind.DECODE_BUDGET


def _encoded_cases():
    rgb = _camera_like(24, 32, 4)
    grey16 = (rgb[..., 0].astype(np.uint16) * 257)
    return [
        ('jpeg', array_to_compressed(rgb, 'jpeg'), 24 * 32 * 3),
        ('jpeg', array_to_compressed(rgb[..., 1].copy(), 'jpeg'), 24 * 32),
        ('png', array_to_compressed(rgb, 'png'), 24 * 32 * 3),
        ('png', array_to_compressed(grey16, 'png'), 24 * 32 * 2),
    ]


@pytest.mark.parametrize('fmt,data,size', _encoded_cases())
def test_compressed_budget_counts_width_height_channels_and_bytes_per_channel(fmt, data, size):
    assert compressed_to_array(fmt, data, max_bytes=size).shape[:2] == (24, 32)
    with pytest.raises(ImageError) as caught:
        compressed_to_array(fmt, data, max_bytes=size - 1)
    assert caught.value.kind is Kind.DECODE_BUDGET


@pytest.mark.parametrize('encoding,bytes_per_pixel', [
    ('rgb8', 3), ('bgra8', 4), ('mono8', 1), ('mono16', 2), ('32FC1', 4), ('yuv422', 2)])
def test_raw_budget_counts_the_bytes_of_the_encoding(encoding, bytes_per_pixel):
    array = RGB if encoding in ('rgb8', 'bgra8', 'yuv422') else (
        GREY16 if encoding == 'mono16' else RGB[..., 0].copy())
    if encoding == '32FC1':
        array = GREY16.astype(np.float32) / 65535.0
    step, data, big = array_to_raw(array, encoding)
    size = 5 * 6 * bytes_per_pixel
    assert raw_to_array(encoding, 5, 6, step, big, data, max_bytes=size).shape[:2] == (5, 6)
    with pytest.raises(ImageError) as caught:
        raw_to_array(encoding, 5, 6, step, big, data, max_bytes=size - 1)
    assert caught.value.kind is Kind.DECODE_BUDGET


@pytest.mark.parametrize('kwargs,reason,kind', [
    ({'array': RGB, 'format': 'bmp'}, 'unsupported', Kind.UNKNOWN_ENCODING),
    ({'array': RGB, 'format': 'jpeg', 'quality': 0}, 'quality', Kind.WRONG_ARGUMENT),
    ({'array': GREY16, 'format': 'jpeg'}, 'cannot hold', Kind.WRONG_ARRAY),
    ({'array': np.zeros((0, 3, 3), np.uint8), 'format': 'png'}, 'zero-size', Kind.ZERO_SIZE),
])
def test_bad_encoder_arguments(kwargs, reason, kind):
    with pytest.raises(ImageError, match=reason) as caught:
        array_to_compressed(**kwargs)
    assert caught.value.kind is kind


def test_array_to_raw_takes_the_image_shapes_preprocessing_takes():
    # One shape rule (preprocessing.check_image_shape): (H, W, 1) is grey, other shapes are
    # refused with the same message and kind as preprocess() gives.
    assert array_to_raw(RGB[:, :, :1], 'mono8') == array_to_raw(RGB[:, :, 0], 'mono8')
    message = re.escape('expected (H, W), (H, W, 1) or (H, W, 3)')
    for bad in (RGB[:, :, :2], np.zeros(5, np.uint8), np.zeros((2, 2, 3, 1), np.uint8)):
        with pytest.raises(ImageError, match=message) as caught:
            array_to_raw(bad, 'rgb8')
        assert caught.value.kind is Kind.WRONG_ARRAY


def test_array_to_raw_refuses_wrong_types():
    with pytest.raises(ImageError, match='uint16'):
        array_to_raw(RGB[:, :, 0], 'mono16')
    with pytest.raises(ImageError, match='unknown encoding'):
        array_to_raw(RGB, 'nv12')
    with pytest.raises(ImageError, match='shorter'):
        array_to_raw(RGB, 'rgb8', step=5)
