# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Unit tier: gfde_perception.image_codec decodes every encoding from bytes, with no ROS.

Expected values come from buffers written byte by byte here (independently of the encoder), and
round trips through ``array_to_raw``/``array_to_compressed`` cover padding and byte order.
"""

import struct
import zlib

from gfde_perception import image_codec
from gfde_perception.errors import ImageError
from gfde_perception.image_codec import (array_to_compressed, array_to_raw, compressed_to_array,
                                         raw_to_array)
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


@pytest.mark.parametrize('args,reason', [
    (('bayer_rggb8', 2, 2, 2, False, bytes(4)), 'unknown encoding'),
    (('rgb8', 0, 4, 12, False, b''), 'zero-size'),
    (('rgb8', 4, 0, 0, False, b''), 'zero-size'),
    (('rgb8', 2, 4, 11, False, bytes(24)), 'step 11 is shorter'),
    (('rgb8', 2, 4, 12, False, bytes(23)), 'truncated'),
    (('mono16', 3, 3, 6, True, bytes(17)), 'truncated'),
    (('yuv422', 2, 3, 6, False, bytes(12)), 'even width'),
    (('rgb8', 100_000, 100_000, 300_000, False, b''), 'pixel limit'),
])
def test_bad_raw_images_raise_image_error_with_the_reason(args, reason):
    with pytest.raises(ImageError, match=reason):
        raw_to_array(*args)


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


def _png_with_size(width, height):
    ihdr = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack('>I', len(ihdr)) + b'IHDR' + ihdr
    chunk += struct.pack('>I', zlib.crc32(b'IHDR' + ihdr))
    return b'\x89PNG\r\n\x1a\n' + chunk


@pytest.mark.parametrize('fmt,data,reason', [
    ('jpeg', b'', 'empty'),
    ('tiff', b'II*\x00', 'unsupported compressed format'),
    ('jpeg', b'not an image at all', 'no JPEG or PNG signature'),
    ('png', b'\xff\xd8\xff\xe0' + bytes(40), 'format says png but the data is jpeg'),
    ('jpeg', b'\xff\xd8\xff\xe0\x00\x10JFIF' + bytes(30), 'corrupt'),
    ('png', _png_with_size(200_000, 200_000), 'pixel limit'),
    ('png', _png_with_size(0, 10), 'zero-size'),
])
def test_bad_compressed_images_raise_image_error(fmt, data, reason):
    with pytest.raises(ImageError, match=reason):
        compressed_to_array(fmt, data)


def test_truncated_or_damaged_jpeg_never_raises_anything_but_image_error():
    good = array_to_compressed(RNG.integers(0, 256, (48, 64, 3), dtype=np.uint8), 'jpeg')
    damaged = [good[:len(good) // 2], good[:40], good[:2] + bytes(len(good) - 2)]
    flipped = bytearray(good)
    flipped[len(good) // 3: len(good) // 3 + 50] = bytes(50)
    damaged.append(bytes(flipped))
    for data in damaged:
        try:
            out = compressed_to_array('jpeg', data)
        except ImageError:
            continue
        # libjpeg may recover a damaged stream; then the shape must still be right.
        assert out.shape == (48, 64, 3)


@pytest.mark.parametrize('kwargs,reason', [
    ({'array': RGB, 'format': 'bmp'}, 'unsupported'),
    ({'array': RGB, 'format': 'jpeg', 'quality': 0}, 'quality'),
    ({'array': GREY16, 'format': 'jpeg'}, 'cannot hold'),
    ({'array': np.zeros((0, 3, 3), np.uint8), 'format': 'png'}, 'zero-size'),
])
def test_bad_encoder_arguments(kwargs, reason):
    with pytest.raises(ImageError, match=reason):
        array_to_compressed(**kwargs)


def test_array_to_raw_refuses_wrong_types():
    with pytest.raises(ImageError, match='uint16'):
        array_to_raw(RGB[:, :, 0], 'mono16')
    with pytest.raises(ImageError, match='unknown encoding'):
        array_to_raw(RGB, 'nv12')
    with pytest.raises(ImageError, match='shorter'):
        array_to_raw(RGB, 'rgb8', step=5)
