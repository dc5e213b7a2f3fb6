# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
The robot side of split inference: camera in; early answers, or compact features, out.

Every camera frame is answered exactly once on ``classification``: by an early exit on the robot
(``answered_by: robot``), by the server's tail relayed from ``split/result`` (``server``), or,
when the server has not answered within ``deadline_ms``, by the robot's best local result
(``robot-fallback``, counted). A server answer that comes after the fallback is counted as late
and dropped. Frames offloaded go out on ``split/features`` (``gfde_msgs/SplitFeatures``).

Like the classifier node, callbacks only hand the newest image to a worker thread
(:class:`~gfde_perception.ros.frame_mailbox.LatestFrameMailbox`); the worker decodes, runs the
robot side and publishes. The deadline bookkeeping is the ROS-free
:class:`~gfde_perception.runtime.split.PendingAnswers`.
"""

import threading
import time
from typing import NamedTuple

from diagnostic_msgs.msg import DiagnosticArray
from gfde_msgs.msg import Classification, SplitFeatures
from gfde_perception.errors import GfdeError, ImageError
from gfde_perception.ros import parameters as params
from gfde_perception.ros.conversions import (
    compressed_imgmsg_to_array, imgmsg_to_array, packet_to_featuresmsg, result_to_msg)
from gfde_perception.ros.diagnostics import publish_counts
from gfde_perception.ros.frame_mailbox import LatestFrameMailbox
from gfde_perception.ros.node import qos_profile, spin_node
from gfde_perception.ros.split_parameters import bundle_path, ROBOT_PARAMETERS
from gfde_perception.runtime.split import PendingAnswers, SplitRobot
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image
import torch

OUTPUT_TOPIC = 'classification'
FEATURES_TOPIC = 'split/features'
RESULT_TOPIC = 'split/result'
IMAGE_TOPIC = 'image'
DEFAULT_NODE_NAME = 'gfde_split_robot'
# How often pending frames are checked against their deadline, as a share of the deadline.
DEADLINE_CHECKS = 10


class _Offloaded(NamedTuple):
    fallback: object  # the robot's Result to publish if the server is late
    header: object
    arrival: float
    topic: str
    seq: int


def build_robot(values: dict) -> SplitRobot:
    """Load the robot side of the split bundle the parameters name."""
    if values['model.threads']:
        torch.set_num_threads(values['model.threads'])
    robot = SplitRobot(bundle_path(values), top_k=values['top_k'])
    if not values['exits.enabled']:
        robot = SplitRobot(robot.bundle, thresholds=(1.0,) * robot.split, top_k=values['top_k'])
    return robot


class SplitRobotNode(Node):
    """
    Robot-side split node; add it to any executor (inference runs on its own thread).

    :param robot: a ready :class:`SplitRobot` (tests hand one in); None builds it from the
        ``model.*`` parameters.
    :param node_name: name of the node.
    :param kwargs: passed to ``rclpy.node.Node``.
    """

    def __init__(self, robot=None, node_name: str = DEFAULT_NODE_NAME, **kwargs):
        super().__init__(node_name, **kwargs)
        self.values = params.declare_parameters(self, ROBOT_PARAMETERS)
        self.robot = robot if robot is not None else build_robot(self.values)
        deadline_s = self.values['deadline_ms'] / 1e3
        self.pending = PendingAnswers(deadline_s)
        self.counts = {'frames': 0, 'robot': 0, 'superseded': 0, 'bad_input': 0, 'errors': 0}
        self._lock = threading.Lock()  # counts and publishers, shared by worker and executor
        self._seq = 0
        self.mailbox = LatestFrameMailbox()
        features_qos = qos_profile(self.values['features.reliability'], 10)
        self._output = self.create_publisher(Classification, OUTPUT_TOPIC, 10)
        self._features = self.create_publisher(SplitFeatures, FEATURES_TOPIC, features_qos)
        self._diagnostics = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        compressed = self.values['compressed']
        camera_qos = qos_profile(self.values['qos.reliability'], 1)
        self._image_sub = self.create_subscription(
            CompressedImage if compressed else Image, IMAGE_TOPIC,
            lambda msg: self._on_image(msg, compressed), camera_qos)
        self._result_sub = self.create_subscription(Classification, RESULT_TOPIC,
                                                    self._on_server_result, features_qos)
        self._timer = self.create_timer(deadline_s / DEADLINE_CHECKS, self._expire)
        self._diag_timer = self.create_timer(self.values['diagnostics.period_s'],
                                             self._diagnostics_tick)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name='gfde-split-robot', daemon=True)
        self._thread.start()
        self.get_logger().info(
            f'split robot ready: model {self.robot.model_id}, robot exits '
            f"{'on' if any(t < 1.0 for t in self.robot.thresholds) else 'off'}, deadline "
            f"{self.values['deadline_ms']:g} ms, features on {self._features.topic_name}")

    # --- executor thread ---------------------------------------------------------------------
    def _on_image(self, msg, compressed: bool):
        with self._lock:
            self.counts['frames'] += 1
            seq = self._seq
            self._seq += 1
        old = self.mailbox.put(IMAGE_TOPIC, (msg, compressed, seq, time.monotonic()))
        if old is not None:
            self._count('superseded')

    def _on_server_result(self, msg: Classification):
        item = self.pending.resolve(msg.frame_seq)
        if item is None:
            return  # late (already answered by the fallback) or not ours: counted there
        msg.header = item.header
        msg.source_topic = item.topic
        msg.latency.total_ms = (time.monotonic() - item.arrival) * 1e3
        self._publish(msg)

    def _expire(self):
        for item in self.pending.expire():
            self._publish_fallback(item)

    # --- worker thread -----------------------------------------------------------------------
    def _run(self):
        while not self._stop.is_set():
            got = self.mailbox.get(timeout=0.2)
            if got is not None:
                try:
                    self.process(*got[1])
                except Exception as exc:  # the worker must survive anything
                    self._count('errors')
                    self.get_logger().warning(f'frame failed: {exc!r}', throttle_duration_sec=5)

    def process(self, msg, compressed: bool, seq: int, arrival: float):
        """Run one camera frame: answer it on the robot or offload its features."""
        try:
            image = compressed_imgmsg_to_array(msg) if compressed else imgmsg_to_array(msg)
            outcome = self.robot.process(image)
        except ImageError as exc:
            self._count('bad_input')
            self.get_logger().warning(f'bad image skipped: {exc}', throttle_duration_sec=5)
            return
        except GfdeError as exc:
            self._count('errors')
            self.get_logger().warning(f'robot side failed: {exc}', throttle_duration_sec=5)
            return
        topic = self._image_sub.topic_name
        if outcome.packet is None:
            self._count('robot')
            self._publish(result_to_msg(
                outcome.result, header=msg.header, top_k=self.values['top_k'],
                total_ms=(time.monotonic() - arrival) * 1e3, source_topic=topic,
                frame_seq=seq))
            return
        # Registered before sending, so that even an instant answer finds its frame.
        self.pending.add(seq, _Offloaded(outcome.result, msg.header, arrival, topic, seq))
        features = packet_to_featuresmsg(outcome.packet, msg.header, seq,
                                         outcome.result.timings.inference_ms)
        try:
            self._features.publish(features)
        except Exception as exc:  # the frame still gets its fallback at the deadline
            self.get_logger().warning(f'features publish failed: {exc!r}',
                                      throttle_duration_sec=5)

    # --- shared --------------------------------------------------------------------------------
    def _publish_fallback(self, item: _Offloaded):
        self._publish(result_to_msg(
            item.fallback, header=item.header, top_k=self.values['top_k'],
            total_ms=(time.monotonic() - item.arrival) * 1e3, source_topic=item.topic,
            frame_seq=item.seq))

    def _publish(self, msg):
        with self._lock:
            self._output.publish(msg)

    def _count(self, key: str):
        with self._lock:
            self.counts[key] += 1

    def snapshot(self) -> dict:
        """Return every counter: frames, answers by side, fallbacks, late answers, drops."""
        with self._lock:
            counts = dict(self.counts)
        counts.update(self.pending.counts)
        counts['pending'] = len(self.pending)
        return counts

    def _diagnostics_tick(self):
        publish_counts(self, self._diagnostics, f'{self.get_name()}: split robot',
                       self.snapshot(), {'model_id': self.robot.model_id,
                                         'deadline_ms': self.values['deadline_ms']})

    def destroy_node(self):
        """Stop the worker, answer every pending frame with its fallback, destroy the node."""
        self._stop.set()
        self.mailbox.close()
        self._thread.join(10.0)
        for _ in self.mailbox.clear():
            self._count('superseded')
        for item in self.pending.drain():
            self._publish_fallback(item)
        self.get_logger().info(f'split robot counts: {self.snapshot()}')
        return super().destroy_node()


def main(args=None) -> int:
    """Entry point of the ``split_robot_node`` executable."""
    return spin_node(SplitRobotNode, args)


if __name__ == '__main__':
    main()
