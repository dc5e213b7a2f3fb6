# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Message <-> array converters in cv_bridge's verb pairs, over :mod:`gfde_perception.image_codec`.

The codec does the decoding from plain fields; this module only reads and writes message fields,
so every decoding rule (encodings, padding, byte order, JPEG/PNG) lives in one ROS-free place.
Also split-model feature packets <-> ``gfde_msgs/SplitFeatures``
(:mod:`gfde_perception.feature_codec`).
"""

from gfde_msgs.msg import Classification, ClassScore, Energy, SplitFeatures, StageLatency
from gfde_perception import image_codec
from gfde_perception.feature_codec import FeaturePacket
from gfde_perception.runtime.result import classification_fields
import numpy as np
from sensor_msgs.msg import CompressedImage, Image


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
