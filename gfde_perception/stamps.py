# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Header stamps as integer nanoseconds: the one conversion, both ways.

Works on any ``builtin_interfaces/Time``-shaped object (an rclpy message, a rosbags message, or
anything with integer ``sec`` and ``nanosec``), so the node, the bag reader and writer, the live
evaluation and the tools match frames by the same number.
"""

NS_PER_S = 1_000_000_000


def stamp_to_ns(stamp) -> int:
    """Return ``stamp.sec`` and ``stamp.nanosec`` as one integer of nanoseconds."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def ns_to_stamp(stamp_ns: int) -> tuple:
    """Return ``(sec, nanosec)`` of ``stamp_ns`` (the inverse of :func:`stamp_to_ns`)."""
    sec, nanosec = divmod(int(stamp_ns), NS_PER_S)
    return sec, nanosec
