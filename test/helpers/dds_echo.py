# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Echo gfde_msgs/Classification from ``probe_in`` to ``probe_out`` (a second DDS process).

The echo marks each message (label prefixed with ``echo:``) so the test can tell an echoed
message from its own. It exits after ``--max-seconds`` at the latest.
"""

import argparse
import time

from gfde_msgs.msg import Classification
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--max-seconds', type=float, default=60.0)
    args = parser.parse_args()
    rclpy.init()
    node = rclpy.create_node('gfde_dds_echo')
    qos = QoSProfile(depth=50, reliability=QoSReliabilityPolicy.RELIABLE,
                     durability=QoSDurabilityPolicy.VOLATILE)
    pub = node.create_publisher(Classification, 'probe_out', qos)

    def echo(msg):
        msg.label = 'echo:' + msg.label
        pub.publish(msg)

    node.create_subscription(Classification, 'probe_in', echo, qos)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    print('echo ready', flush=True)
    deadline = time.monotonic() + args.max_seconds
    try:
        while rclpy.ok() and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


if __name__ == '__main__':
    main()
