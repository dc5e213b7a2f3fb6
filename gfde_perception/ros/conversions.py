# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Message <-> array converters in cv_bridge's verb pairs, over :mod:`gfde_perception.image_codec`.

Also split-model feature packets <-> ``gfde_msgs/SplitFeatures``
(:mod:`gfde_perception.feature_codec`).

The codec does the decoding from plain fields; this module only reads and writes message fields,
so every decoding rule (encodings, padding, byte order, JPEG/PNG) lives in one ROS-free place.
"""

import math

from gfde_msgs.msg import Classification, ClassScore, SplitFeatures
from gfde_perception import image_codec
from gfde_perception.feature_codec import FeaturePacket
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


def _finite(value: float) -> float:
    value = float(value)
    return value if math.isfinite(value) else float('nan')


def result_to_msg(result, header=None, top_k: int = None, decode_ms: float = 0.0,
                  queue_ms: float = 0.0, total_ms: float = 0.0, frame_age_ms: float = 0.0,
                  source_topic: str = '', frame_seq: int = 0) -> Classification:
    """
    Build ``gfde_msgs/Classification`` from a runtime Result and the node's own timings.

    :param result: a :class:`gfde_perception.runtime.Result`.
    :param header: the source image's header, copied unchanged.
    :param top_k: publish at most this many top-k entries (None = all the result has).
    :param decode_ms: time spent decoding the message into an array.
    :param queue_ms: time the frame waited for the inference worker.
    :param total_ms: from the message arriving to the result being published.
    :param frame_age_ms: publish time minus the image header stamp.
    :param source_topic: resolved name of the camera topic.
    :param frame_seq: the node's sequence number of the frame on its topic.
    :return: the message.
    """
    msg = Classification()
    if header is not None:
        msg.header = header
    msg.class_id = int(result.class_id)
    msg.label = str(result.label)
    msg.score = _finite(result.score)
    entries = result.top_k if top_k is None else result.top_k[:top_k]
    msg.top_k = [ClassScore(class_id=int(c.class_id), label=str(c.label), score=float(c.score))
                 for c in entries]
    msg.exit_index = int(result.exit_index)
    msg.num_exits = int(result.num_exits)
    msg.blocks_run = int(result.blocks_run)
    msg.blocks_total = int(result.blocks_total)
    msg.gate_metric = str(result.gate_metric)
    msg.gate_confidence = [float(c) for c in result.gate_confidence]
    msg.gate_threshold = [float(t) for t in result.gate_threshold]
    msg.policy = str(result.policy)
    msg.speculative_segments = int(result.speculative_segments)
    timings = result.timings
    latency = msg.latency
    latency.decode_ms = float(decode_ms)
    latency.preprocess_ms = float(timings.preprocess_ms)
    latency.segment_ms = [float(v) for v in timings.segment_ms]
    latency.exit_head_ms = [float(v) for v in timings.exit_head_ms]
    latency.inference_ms = float(timings.inference_ms)
    latency.queue_ms = float(queue_ms)
    latency.total_ms = float(total_ms)
    latency.frame_age_ms = float(frame_age_ms)
    energy = result.energy
    msg.energy.measured = bool(energy.measured)
    msg.energy.joules = float(energy.joules)
    msg.energy.source = str(energy.source)
    msg.energy.method = str(energy.method)
    msg.backend = str(result.backend)
    msg.exit_device = str(result.exit_device)
    msg.model_id = str(result.model_id)
    msg.answered_by = str(result.answered_by)
    msg.source_topic = source_topic
    msg.frame_seq = int(frame_seq)
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
