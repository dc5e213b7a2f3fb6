# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Serialized camera frames: the node's CDR reader against rclpy's own deserialization.

The node takes frames serialized and reads ``sensor_msgs/Image`` and ``CompressedImage`` fields
straight from the CDR bytes. Every case here is serialized by rclpy (or, for the big-endian
layout no publisher on this host writes, by hand from the CDR rules) and must decode exactly as
the deserialized message does. ROS messages, no DDS.
"""

import struct

from gfde_perception.errors import ImageError, ImageErrorKind
from gfde_perception.ros.conversions import (
    array_to_compressed_imgmsg, array_to_imgmsg, compressed_imgmsg_to_array, imgmsg_to_array,
    serialized_compressed_imgmsg_to_array, serialized_header, serialized_imgmsg_to_array,
    serialized_stamp_ns)
import numpy as np
import pytest
from rclpy.serialization import serialize_message
from sensor_msgs.msg import Image

pytestmark = pytest.mark.ros

RNG = np.random.default_rng(11)


def _stamped(msg, frame_id, sec=1_700_000_123, nanosec=456):
    msg.header.frame_id = frame_id
    msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nanosec
    return msg


def _cases():
    rgb = RNG.integers(0, 256, (7, 10, 3), dtype=np.uint8)
    grey = rgb[..., 0].copy()
    cases = [(enc, rgb, None) for enc in ('rgb8', 'bgr8', 'rgba8', 'bgra8', 'yuv422')]
    cases += [('rgb8', rgb, 10 * 3 + 5), ('mono8', grey, None), ('mono8', grey, 13),
              ('mono16', grey.astype(np.uint16) * 257, None),
              ('32FC1', grey.astype(np.float32) / 255, None)]
    return cases


@pytest.mark.parametrize('encoding,array,step', _cases())
def test_a_serialized_image_decodes_as_the_deserialized_message(encoding, array, step):
    # Frame ids of every length mod 4 move the following fields through every alignment.
    for frame_id in ('', 'a', 'ab', 'abc', 'camera_optical'):
        msg = _stamped(array_to_imgmsg(array, encoding, step=step), frame_id)
        raw = serialize_message(msg)
        got = serialized_imgmsg_to_array(raw)
        np.testing.assert_array_equal(got, imgmsg_to_array(msg))
        header = serialized_header(raw)
        assert header.frame_id == frame_id
        assert (header.stamp.sec, header.stamp.nanosec) == (1_700_000_123, 456)
        assert serialized_stamp_ns(raw) == 1_700_000_123 * 10 ** 9 + 456


def test_pixels_are_a_view_of_the_bytes_and_negative_stamps_survive():
    array = RNG.integers(0, 256, (4, 6, 3), dtype=np.uint8)
    raw = serialize_message(_stamped(array_to_imgmsg(array, 'rgb8'), 'x', sec=-3, nanosec=7))
    got = serialized_imgmsg_to_array(raw)
    assert np.shares_memory(got, np.frombuffer(raw, np.uint8))  # no copy of the pixels
    assert serialized_header(raw).stamp.sec == -3
    assert serialized_stamp_ns(raw) == -3 * 10 ** 9 + 7


@pytest.mark.parametrize('fmt', ['jpeg', 'png'])
def test_a_serialized_compressed_image_decodes_as_the_deserialized_message(fmt):
    array = RNG.integers(0, 256, (16, 24, 3), dtype=np.uint8)
    msg = _stamped(array_to_compressed_imgmsg(array, fmt), 'front')
    raw = serialize_message(msg)
    np.testing.assert_array_equal(serialized_compressed_imgmsg_to_array(raw),
                                  compressed_imgmsg_to_array(msg))
    assert serialized_header(raw).frame_id == 'front'


def _big_endian_image(array: np.ndarray, frame_id: str) -> bytes:
    """Return a mono8 Image in big-endian plain CDR, written from the CDR rules."""
    body = bytearray()

    def align(n):
        body.extend(b'\0' * (-len(body) % n))

    def u32(value, fmt='>I'):
        align(4)
        body.extend(struct.pack(fmt, value))

    def string(text):
        data = text.encode() + b'\0'
        u32(len(data))
        body.extend(data)

    u32(42, '>i')
    u32(9)
    string(frame_id)
    u32(array.shape[0])
    u32(array.shape[1])
    string('mono8')
    body.append(0)
    u32(array.shape[1])
    u32(array.size)
    body.extend(array.tobytes())
    return b'\x00\x00\x00\x00' + bytes(body)


def test_big_endian_cdr_is_read_too():
    array = RNG.integers(0, 256, (3, 5), dtype=np.uint8)
    raw = _big_endian_image(array, 'be')
    np.testing.assert_array_equal(serialized_imgmsg_to_array(raw), array)
    assert serialized_stamp_ns(raw) == 42 * 10 ** 9 + 9
    assert serialized_header(raw).frame_id == 'be'


def test_damaged_bytes_are_refused_by_kind():
    raw = serialize_message(_stamped(array_to_imgmsg(
        RNG.integers(0, 256, (4, 4, 3), dtype=np.uint8), 'rgb8'), 'cam'))
    for cut in (2, 10, 30, len(raw) - 1):
        with pytest.raises(ImageError) as err:
            serialized_imgmsg_to_array(raw[:cut])
        assert err.value.kind == ImageErrorKind.TRUNCATED
        assert serialized_stamp_ns(raw[:cut]) in (0, 1_700_000_123 * 10 ** 9 + 456)
    with pytest.raises(ImageError) as err:
        serialized_imgmsg_to_array(b'\x7f\x7f\x00\x00' + raw[4:])
    assert err.value.kind == ImageErrorKind.UNKNOWN_ENCODING
    assert serialized_stamp_ns(b'\x7f\x7f\x00\x00' + raw[4:]) == 0
    # A header announcing more rows than the data holds: the codec's own refusal.
    short = serialize_message(Image(height=9, width=4, encoding='rgb8', step=12,
                                    data=bytes(12)))
    with pytest.raises(ImageError) as err:
        serialized_imgmsg_to_array(short)
    assert err.value.kind == ImageErrorKind.TRUNCATED
