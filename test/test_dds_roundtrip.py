# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Integration tier: a gfde_msgs message makes a round trip between two processes over real DDS.

The second test is the negative control: the echo process is put on another ROS domain, so
delivery is broken on purpose and the same check must report that nothing came back. That shows
the first test can fail.
"""

from pathlib import Path
import sys
import time

from gfde_msgs.msg import Classification, ClassScore
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy

pytestmark = pytest.mark.ros

ECHO = [sys.executable, str(Path(__file__).parent / 'helpers' / 'dds_echo.py'),
        '--max-seconds', '90']
QOS = QoSProfile(depth=50, reliability=QoSReliabilityPolicy.RELIABLE,
                 durability=QoSDurabilityPolicy.VOLATILE)


def make_message(i: int) -> Classification:
    msg = Classification()
    msg.header.stamp.sec = 1_700_000_000 + i
    msg.header.stamp.nanosec = 123_456
    msg.header.frame_id = 'camera_optical'
    msg.class_id = i % 10
    msg.label = f'class-{i}'
    msg.score = 0.5 + i / 100.0
    msg.top_k = [ClassScore(class_id=i % 10, label=f'class-{i}', score=msg.score)]
    msg.exit_index = i % 3
    msg.num_exits = 3
    msg.gate_metric = 'max_softmax'
    msg.gate_confidence = [0.25, 0.75][: msg.exit_index + 1]
    msg.latency.segment_ms = [1.0, 2.0, 3.0][: msg.exit_index + 1]
    msg.energy.joules = float('nan')
    msg.frame_seq = i
    return msg


def round_trip(context, count=20, timeout=20.0):
    """Publish ``count`` messages until echoes come back or ``timeout`` passes; return echoes."""
    node = rclpy.create_node('gfde_roundtrip_probe', context=context)
    received = {}
    node.create_subscription(
        Classification, 'probe_out',
        lambda msg: received.setdefault(msg.frame_seq, msg), QOS)
    pub = node.create_publisher(Classification, 'probe_in', QOS)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    deadline = time.monotonic() + timeout
    next_send = 0.0
    try:
        # Re-send the missing ones every 0.5 s: discovery takes a moment and VOLATILE
        # durability drops what was sent before the echo matched.
        while len(received) < count and time.monotonic() < deadline:
            if time.monotonic() >= next_send:
                for i in range(count):
                    if i not in received:
                        pub.publish(make_message(i))
                next_send = time.monotonic() + 0.5
            executor.spin_once(timeout_sec=0.05)
    finally:
        executor.shutdown()
        node.destroy_node()
    return received


def test_classification_round_trip_between_processes(rclpy_context, node_process):
    echo = node_process(argv=ECHO)
    assert echo.wait_for_output('echo ready', timeout=60), echo.output()
    received = round_trip(rclpy_context)
    assert sorted(received) == list(range(20)), f'missing: {set(range(20)) - set(received)}'
    for i, msg in received.items():
        sent = make_message(i)
        assert msg.label == 'echo:' + sent.label
        assert msg.header.stamp.sec == sent.header.stamp.sec
        assert msg.header.stamp.nanosec == sent.header.stamp.nanosec
        assert msg.header.frame_id == 'camera_optical'
        assert msg.exit_index == sent.exit_index and msg.num_exits == 3
        assert list(msg.gate_confidence) == pytest.approx(list(sent.gate_confidence))
        assert list(msg.latency.segment_ms) == pytest.approx(list(sent.latency.segment_ms))
        assert msg.top_k[0].label == sent.label
    assert echo.running(), 'the echo process died during the test'


def test_round_trip_detects_broken_delivery(rclpy_context, node_process, ros_env):
    other_domain = str(int(ros_env['ROS_DOMAIN_ID']) % 101 + 1)
    echo = node_process(argv=ECHO, env_extra={'ROS_DOMAIN_ID': other_domain})
    assert echo.wait_for_output('echo ready', timeout=60), echo.output()
    received = round_trip(rclpy_context, count=5, timeout=4.0)
    assert received == {}, 'messages crossed ROS domains: the round-trip check cannot fail'
