# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Bottleneck features on the wire: quantised codes <-> bytes, and the packet that carries them.

ROS-free (numpy only). A split model's robot side turns the features at its split point into
``bits``-bit codes (see :class:`gfde_perception.models.split.Quantiser`); this module packs them
into bytes (bits < 8 are packed densely, least significant bit first) and unpacks them, and
:class:`FeaturePacket` holds everything a server needs to decode one frame: the model id (so a
server never decodes another model's codes), the split point, the code shape and the per-channel
scale and zero point. ``gfde_msgs/SplitFeatures`` carries the same fields.
"""

from dataclasses import dataclass
import math

from gfde_perception.errors import FeatureError
import numpy as np

MAX_BITS = 8
MAX_VALUES = 1 << 24  # values per packet: far above any bottleneck, a guard against junk shapes


def packed_size(count: int, bits: int) -> int:
    """Bytes that ``count`` codes of ``bits`` bits take once packed."""
    return (count * bits + 7) // 8


def _check_bits(bits) -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) \
            or not 1 <= bits <= MAX_BITS:
        raise FeatureError(f'bits must be an int in [1, {MAX_BITS}], got {bits!r}')
    return int(bits)


def codes_to_bytes(codes: np.ndarray, bits: int) -> bytes:
    """Pack uint8 codes (any shape, row-major) of ``bits`` bits each into bytes."""
    bits = _check_bits(bits)
    flat = np.ascontiguousarray(codes, dtype=np.uint8).reshape(-1)
    if flat.size and int(flat.max()) >= (1 << bits):
        raise FeatureError(f'code {int(flat.max())} does not fit in {bits} bits')
    if bits == 8:
        return flat.tobytes()
    planes = np.unpackbits(flat[:, None], axis=1, bitorder='little')[:, :bits]  # (n, bits)
    return np.packbits(planes.reshape(-1), bitorder='little').tobytes()


def bytes_to_codes(data: bytes, bits: int, count: int) -> np.ndarray:
    """Unpack ``count`` codes of ``bits`` bits from ``data``: (count,) uint8."""
    bits = _check_bits(bits)
    if len(data) != packed_size(count, bits):
        raise FeatureError(f'{len(data)} bytes for {count} codes of {bits} bits (expected '
                           f'{packed_size(count, bits)})')
    raw = np.frombuffer(data, dtype=np.uint8)
    if bits == 8:
        return raw.copy()
    planes = np.unpackbits(raw, bitorder='little')[:count * bits].reshape(count, bits)
    return np.packbits(planes, axis=1, bitorder='little').reshape(count)


@dataclass(frozen=True)
class FeaturePacket:
    """
    One frame's bottleneck, as sent from robot to server.

    :ivar model_id: the split bundle's id (name@checksum prefix); a server refuses others.
    :ivar split: segments the robot ran.
    :ivar shape: (channels, rows, columns) of the codes.
    :ivar bits: bits per code, 1 to 8.
    :ivar scale: per-channel scale (floats > 0).
    :ivar zero_point: per-channel zero point (ints in [0, 2**bits - 1]).
    :ivar data: the packed codes, channel-major (C, rows, columns) order.
    """

    model_id: str
    split: int
    shape: tuple
    bits: int
    scale: tuple
    zero_point: tuple
    data: bytes

    def __post_init__(self):
        bits = _check_bits(self.bits)
        try:
            shape = tuple(int(v) for v in self.shape)
            scale = tuple(float(v) for v in self.scale)
            zero_point = tuple(int(v) for v in self.zero_point)
        except (TypeError, ValueError) as exc:
            raise FeatureError(f'packet fields of the wrong type: {exc}') from None
        for name, value in (('shape', shape), ('scale', scale), ('zero_point', zero_point)):
            object.__setattr__(self, name, value)
        if len(shape) != 3 or min(shape) < 1 or math.prod(shape) > MAX_VALUES:
            raise FeatureError(f'shape must be three positive sizes (C, H, W) of at most '
                               f'{MAX_VALUES} values, got {shape}')
        if len(scale) != shape[0] or len(zero_point) != shape[0]:
            raise FeatureError(f'{len(scale)} scales and {len(zero_point)} zero points for '
                               f'{shape[0]} channels')
        if not all(math.isfinite(s) and s > 0 for s in scale):
            raise FeatureError('every scale must be finite and > 0')
        if not all(0 <= z < (1 << bits) for z in zero_point):
            raise FeatureError(f'zero points must lie in [0, {(1 << bits) - 1}]')
        if not isinstance(self.data, (bytes, bytearray, memoryview)):
            raise FeatureError(f'data must be bytes, got {type(self.data).__name__}')
        object.__setattr__(self, 'data', bytes(self.data))
        expected = packed_size(math.prod(shape), bits)
        if len(self.data) != expected:
            raise FeatureError(f'{len(self.data)} bytes of codes, expected {expected} for '
                               f'shape {shape} at {bits} bits')
        if not isinstance(self.model_id, str) or not self.model_id:
            raise FeatureError('model_id must be a non-empty string')

    @property
    def nbytes(self) -> int:
        """Bytes of codes (the payload that crosses the link)."""
        return len(self.data)

    def codes(self) -> np.ndarray:
        """Return the codes as a (C, H, W) uint8 array."""
        return bytes_to_codes(self.data, self.bits, math.prod(self.shape)).reshape(self.shape)

    @classmethod
    def from_codes(cls, codes: np.ndarray, bits: int, scale, zero_point, model_id: str,
                   split: int) -> 'FeaturePacket':
        """Pack one frame's (C, H, W) codes."""
        codes = np.asarray(codes)
        if codes.ndim != 3:
            raise FeatureError(f'codes must be (C, H, W), got shape {codes.shape}')
        return cls(model_id, split, codes.shape, bits, tuple(scale), tuple(zero_point),
                   codes_to_bytes(codes, bits))
