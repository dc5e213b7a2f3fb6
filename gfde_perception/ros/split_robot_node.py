# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
The robot side of split inference: camera in; early answers, or compact features, out.

Every camera frame the worker processes is answered exactly once on ``classification``: by an
early exit on the robot (``answered_by: robot``), by the server's tail relayed from
``split/result`` (``server``), or, when the server has not answered within ``deadline_ms``, by
the robot's best local result (``robot-fallback``, counted). A server answer that comes after
the fallback is counted as late and dropped. Offloaded frames go out on ``split/features``
(``gfde_msgs/SplitFeatures``).

As in the classifier node, callbacks only hand the frame to the ROS-free
:class:`~gfde_perception.runtime.worker.InferenceWorker` (newest frame kept, decode, classify,
drops and bad input counted); the deadline bookkeeping is the ROS-free
:class:`~gfde_perception.runtime.split.PendingAnswers`.
"""

import threading
import time
from typing import NamedTuple

from diagnostic_msgs.msg import DiagnosticArray
from gfde_msgs.msg import Classification, SplitFeatures
from gfde_perception.ros import parameters as params
from gfde_perception.ros.conversions import (
    compressed_imgmsg_to_array, imgmsg_to_array, packet_to_featuresmsg, result_to_msg)
from gfde_perception.ros.executable import spin_node
from gfde_perception.ros.split_diagnostics import publish_counts
from gfde_perception.ros.split_parameters import bundle_path, ROBOT_PARAMETERS
from gfde_perception.runtime.split import PendingAnswers, SplitRobot
from gfde_perception.runtime.worker import InferenceWorker
from gfde_perception.stamps import stamp_to_ns
from gfde_perception.stats import PipelineStats
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


class RobotSide:
    """
    A :class:`SplitRobot` behind the worker's ``classify(image) -> Result``.

    The result is the answer (an exit took the frame) or the fallback; the frame's packet, if
    any, waits in :attr:`packet`. The worker calls ``classify`` and then ``publish`` for one
    frame on its single thread, so ``publish`` reads the packet of its own frame.
    """

    def __init__(self, robot: SplitRobot):
        self.robot = robot
        self.packet = None

    def classify(self, image):
        outcome = self.robot.process(image)
        self.packet = outcome.packet
        return outcome.result


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
        self.side = RobotSide(self.robot)
        deadline_s = self.values['deadline_ms'] / 1e3
        self.pending = PendingAnswers(deadline_s)
        self.stats = PipelineStats()
        self.answered_on_robot = 0
        self._lock = threading.Lock()  # the output publisher: worker and executor threads
        features_qos = params.qos_profile(self.values, 'features')
        self._output = self.create_publisher(Classification, OUTPUT_TOPIC, features_qos)
        self._features = self.create_publisher(SplitFeatures, FEATURES_TOPIC, features_qos)
        self._diagnostics = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        compressed = self.values['compressed']
        decode = compressed_imgmsg_to_array if compressed else imgmsg_to_array
        self._image_sub = self.create_subscription(
            CompressedImage if compressed else Image, IMAGE_TOPIC,
            lambda msg: self.worker.submit(msg, self._image_sub.topic_name, decode,
                                           stamp_to_ns(msg.header.stamp)),
            params.qos_profile(self.values, 'qos'))
        self._result_sub = self.create_subscription(Classification, RESULT_TOPIC,
                                                    self._on_server_result, features_qos)
        self.worker = InferenceWorker(self.side, self._on_result, self._now_ns, self.stats,
                                      self.get_logger())
        self._timer = self.create_timer(deadline_s / DEADLINE_CHECKS, self._expire)
        self._diag_timer = self.create_timer(self.values['diagnostics.period_s'],
                                             self._diagnostics_tick)
        self.worker.start()
        self.get_logger().info(
            f'split robot ready: model {self.robot.model_id}, robot exits '
            f"{'on' if any(t < 1.0 for t in self.robot.thresholds) else 'off'}, deadline "
            f"{self.values['deadline_ms']:g} ms, features on {self._features.topic_name}")

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    # --- worker thread -----------------------------------------------------------------------
    def _on_result(self, frame, result, timing):
        """Publish an early answer, or register the frame and send its features."""
        header = frame.payload.header
        packet = self.side.packet
        if packet is None:
            self._publish(result_to_msg(
                result, header=header, top_k=self.values['top_k'], decode_ms=timing.decode_ms,
                queue_ms=timing.queue_ms, total_ms=timing.total_ms,
                frame_age_ms=timing.frame_age_ms, source_topic=frame.topic,
                frame_seq=frame.seq))
            with self._lock:
                self.answered_on_robot += 1
            return
        # Registered before sending, so that even an instant answer finds its frame; if the
        # send fails, the frame still gets its fallback at the deadline.
        self.pending.add(frame.seq, _Offloaded(result, header, frame.arrival, frame.topic,
                                               frame.seq))
        self._features.publish(packet_to_featuresmsg(packet, header, frame.seq,
                                                     result.timings.inference_ms))

    # --- executor thread ---------------------------------------------------------------------
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

    # --- shared --------------------------------------------------------------------------------
    def _publish_fallback(self, item: _Offloaded):
        self._publish(result_to_msg(
            item.fallback, header=item.header, top_k=self.values['top_k'],
            total_ms=(time.monotonic() - item.arrival) * 1e3, source_topic=item.topic,
            frame_seq=item.seq))

    def _publish(self, msg):
        with self._lock:
            self._output.publish(msg)

    def snapshot(self) -> dict:
        """Return every counter: frames, answers by side, fallbacks, late answers, drops."""
        stats = self.stats.snapshot()
        with self._lock:
            counts = {'frames': stats.received, 'robot': self.answered_on_robot}
        counts.update(self.pending.counts)
        counts['pending'] = len(self.pending)
        counts.update({f'dropped.{reason}': n for reason, n in stats.dropped.items()})
        return counts

    def _diagnostics_tick(self):
        publish_counts(self, self._diagnostics, f'{self.get_name()}: split robot',
                       self.snapshot(), {'model_id': self.robot.model_id,
                                         'deadline_ms': self.values['deadline_ms']})

    def destroy_node(self):
        """Stop the worker, answer every pending frame with its fallback, destroy the node."""
        self.worker.stop()
        for item in self.pending.drain():
            self._publish_fallback(item)
        self.get_logger().info(f'split robot counts: {self.snapshot()}')
        return super().destroy_node()


def main(args=None) -> int:
    """Entry point of the ``split_robot_node`` executable."""
    return spin_node(SplitRobotNode, args)


if __name__ == '__main__':
    main()
