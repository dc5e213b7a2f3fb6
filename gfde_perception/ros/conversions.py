# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Message <-> array converters in cv_bridge's verb pairs, over :mod:`gfde_perception.image_codec`.

The codec does the decoding from plain fields; this module only reads and writes message fields,
so every decoding rule (encodings, padding, byte order, JPEG/PNG) lives in one ROS-free place.
Also split-model feature packets <-> ``gfde_msgs/SplitFeatures``
(:mod:`gfde_perception.feature_codec`).

The node takes camera frames serialized (as the transport delivered them) and reads the fields
of ``sensor_msgs/Image`` and ``CompressedImage`` straight from the CDR bytes
(:func:`serialized_imgmsg_to_array`, :func:`serialized_header`): the pixels are a view of the
bytes, and a frame that is superseded before inference is never deserialized at all.
"""

import struct

from builtin_interfaces.msg import Time
from gfde_msgs.msg import Classification, ClassScore, Energy, SplitFeatures, StageLatency
from gfde_perception import image_codec
from gfde_perception.errors import ImageError, ImageErrorKind
from gfde_perception.feature_codec import FeaturePacket
from gfde_perception.runtime.result import classification_fields
from gfde_perception.stamps import NS_PER_S
import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

# Encapsulation identifiers of plain CDR (XCDR1) and plain CDR2 (XCDR2), big and little endian.
# The image messages hold no field wider than 4 bytes, so both lay them out the same way.
_BYTE_ORDER = {0x0000: '>', 0x0001: '<', 0x0006: '>', 0x0007: '<'}
_ENCAPSULATION_BYTES = 4


class _CdrReader:
    """Sequential reader of the plain CDR fields of one serialized message."""

    def __init__(self, raw):
        self.raw = memoryview(raw).cast('B')
        if len(self.raw) < _ENCAPSULATION_BYTES:
            raise ImageError(f'serialized message of {len(self.raw)} B has no CDR header',
                             ImageErrorKind.TRUNCATED)
        order = _BYTE_ORDER.get((self.raw[0] << 8) | self.raw[1])
        if order is None:
            raise ImageError(f'CDR encapsulation {bytes(self.raw[:2]).hex()} is not plain CDR',
                             ImageErrorKind.UNKNOWN_ENCODING)
        self.u32_format = struct.Struct(order + 'I')
        self.pos = _ENCAPSULATION_BYTES

    def _take(self, n: int, align: int = 1) -> memoryview:
        # Alignment counts from the end of the encapsulation header.
        self.pos += -(self.pos - _ENCAPSULATION_BYTES) % align
        end = self.pos + n
        if end > len(self.raw):
            raise ImageError(f'serialized message ends at {len(self.raw)} B, a field needs '
                             f'{end} B', ImageErrorKind.TRUNCATED)
        view, self.pos = self.raw[self.pos:end], end
        return view

    def u32(self) -> int:
        return self.u32_format.unpack(self._take(4, 4))[0]

    def u8(self) -> int:
        return self._take(1)[0]

    def string(self) -> str:
        n = self.u32()  # with the terminating NUL
        return bytes(self._take(n))[:-1].decode('utf-8', 'replace') if n else ''

    def octets(self) -> memoryview:
        return self._take(self.u32())

    def header(self) -> tuple:
        """Read a ``std_msgs/Header``; return ``(sec, nanosec, frame_id)``."""
        sec = struct.unpack(self.u32_format.format[0] + 'i', self._take(4, 4))[0]
        return sec, self.u32(), self.string()


def serialized_stamp_ns(raw) -> int:
    """Return the header stamp in ns of a serialized Image or CompressedImage (0 if unreadable)."""
    try:
        sec, nanosec, _ = _CdrReader(raw).header()
    except ImageError:
        return 0
    return sec * NS_PER_S + nanosec


def serialized_header(raw) -> Header:
    """Return the ``std_msgs/Header`` of a serialized Image or CompressedImage."""
    sec, nanosec, frame_id = _CdrReader(raw).header()
    return Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=frame_id)


def serialized_imgmsg_to_array(
        raw, max_bytes: int = image_codec.DEFAULT_MAX_DECODE_BYTES) -> np.ndarray:
    """
    Decode a serialized ``sensor_msgs/Image`` (CDR bytes) without deserializing it.

    :param raw: the message as the transport delivered it (a subscription with ``raw=True``).
    :param max_bytes: decode budget in bytes (see :mod:`gfde_perception.image_codec`).
    :return: as :func:`imgmsg_to_array`: a read-only view of ``raw`` where no conversion is
        needed.
    :raises ImageError: bytes that are not a whole Image, or pixels the codec refuses.
    """
    cdr = _CdrReader(raw)
    cdr.header()
    height, width = cdr.u32(), cdr.u32()
    encoding = cdr.string()
    bigendian = cdr.u8()
    step = cdr.u32()
    return image_codec.raw_to_array(encoding, height, width, step, bigendian, cdr.octets(),
                                    max_bytes)


def serialized_compressed_imgmsg_to_array(
        raw, max_bytes: int = image_codec.DEFAULT_MAX_DECODE_BYTES) -> np.ndarray:
    """Decode a serialized ``sensor_msgs/CompressedImage`` (see the raw Image converter)."""
    cdr = _CdrReader(raw)
    cdr.header()
    fmt = cdr.string()
    return image_codec.compressed_to_array(fmt, cdr.octets(), max_bytes)


def imgmsg_to_array(msg: Image,
                    max_bytes: int = image_codec.DEFAULT_MAX_DECODE_BYTES) -> np.ndarray:
    """
    Decode a ``sensor_msgs/Image`` into an RGB ``(H, W, 3)`` or grey ``(H, W)`` array.

    :param msg: the image message.
    :param max_bytes: decode budget in bytes (see :mod:`gfde_perception.image_codec`).
    :return: the array (possibly a read-only view of ``msg.data``).
    :raises ImageError: the message is not decodable; the reason and kind say why.
    """
    return image_codec.raw_to_array(msg.encoding, msg.height, msg.width, msg.step,
                                    msg.is_bigendian, msg.data, max_bytes)


def array_to_imgmsg(array: np.ndarray, encoding: str = 'rgb8', header=None,
                    step: int = None) -> Image:
    """
    Encode an RGB or grey array into a ``sensor_msgs/Image`` (inverse of the above).

    :param array: ``(H, W, 3)`` RGB or ``(H, W)`` grey in the codec's convention.
    :param encoding: target encoding (see :data:`gfde_perception.image_codec.ENCODINGS`).
    :param header: ``std_msgs/Header`` to copy in, or None for an empty one.
    :param step: row stride in bytes (None = packed rows).
    :return: the message.
    :raises ImageError: the array cannot be written in ``encoding``.
    """
    step, data, bigendian = image_codec.array_to_raw(array, encoding, step=step)
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(array.shape[0]), int(array.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = int(bigendian)
    msg.step = step
    msg.data = data
    return msg


def compressed_imgmsg_to_array(
        msg: CompressedImage, max_bytes: int = image_codec.DEFAULT_MAX_DECODE_BYTES) -> np.ndarray:
    """
    Decode a ``sensor_msgs/CompressedImage`` (JPEG or PNG) into an array.

    :param msg: the compressed image message.
    :param max_bytes: decode budget in bytes, checked from the header before decoding.
    :return: RGB ``(H, W, 3)`` or grey ``(H, W)``.
    :raises ImageError: unsupported format, corrupt data or over the budget (see its kind).
    """
    return image_codec.compressed_to_array(msg.format, bytes(msg.data), max_bytes)


def array_to_compressed_imgmsg(array: np.ndarray, format: str = 'jpeg',  # noqa: A002
                               header=None, quality: int = 90) -> CompressedImage:
    """
    Encode an array as a ``sensor_msgs/CompressedImage`` with image_transport's format string.

    :param array: ``(H, W, 3)`` RGB or ``(H, W)`` grey.
    :param format: 'jpeg' or 'png'.
    :param header: header to copy in, or None.
    :param quality: JPEG quality 1-100.
    :return: the message.
    :raises ImageError: the array cannot be encoded.
    """
    msg = CompressedImage()
    if header is not None:
        msg.header = header
    source = 'mono8' if array.ndim == 2 and array.dtype == np.uint8 else (
        'mono16' if array.ndim == 2 else 'rgb8')
    stored = 'mono8' if source == 'mono8' else 'mono16' if source == 'mono16' else 'bgr8'
    msg.format = f'{source}; {format} compressed {stored}'
    msg.data = image_codec.array_to_compressed(array, format, quality)
    return msg


def result_to_msg(result, header=None, **fields) -> Classification:
    """
    Build ``gfde_msgs/Classification`` from a runtime Result and the node's own timings.

    :param result: a :class:`gfde_perception.runtime.Result`.
    :param header: the source image's header, copied unchanged.
    :param fields: ``top_k``, ``decode_ms``, ``queue_ms``, ``total_ms``, ``frame_age_ms``,
        ``source_topic``, ``frame_seq``, as
        :func:`gfde_perception.runtime.result.classification_fields` takes them.
    :return: the message.
    """
    values = classification_fields(result, **fields)
    msg = Classification(top_k=[ClassScore(**c) for c in values.pop('top_k')],
                         latency=StageLatency(**values.pop('latency')),
                         energy=Energy(**values.pop('energy')), **values)
    if header is not None:
        msg.header = header
    return msg


def packet_to_featuresmsg(packet: FeaturePacket, header=None, frame_seq: int = 0,
                          robot_ms: float = 0.0) -> SplitFeatures:
    """Build ``gfde_msgs/SplitFeatures`` from a feature packet and the source image's header."""
    msg = SplitFeatures()
    if header is not None:
        msg.header = header
    msg.frame_seq = int(frame_seq)
    msg.model_id = packet.model_id
    msg.split = int(packet.split)
    msg.channels, msg.height, msg.width = (int(v) for v in packet.shape)
    msg.bits = int(packet.bits)
    msg.scale = [float(v) for v in packet.scale]
    msg.zero_point = list(packet.zero_point)
    msg.data = packet.data
    msg.robot_ms = float(robot_ms)
    return msg


def featuresmsg_to_packet(msg: SplitFeatures) -> FeaturePacket:
    """Return the feature packet a ``gfde_msgs/SplitFeatures`` carries (validated)."""
    return FeaturePacket(msg.model_id, msg.split, (msg.channels, msg.height, msg.width),
                         msg.bits, tuple(msg.scale), tuple(msg.zero_point), bytes(msg.data))
