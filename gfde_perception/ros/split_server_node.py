# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
The server side of split inference: ``split/features`` in, ``split/result`` out.

Each ``gfde_msgs/SplitFeatures`` is decoded, checked against the loaded split bundle (model id,
split point, shape, bits) and run through the tail; the answer goes out as a
``gfde_msgs/Classification`` with the frame's original header and ``frame_seq``, and
``answered_by: server``. The robot node relays it (or, if it came too late, drops it).

Callbacks hand each message to the ROS-free
:class:`~gfde_perception.runtime.worker.InferenceWorker`, which keeps the newest message per
topic for one worker thread: when the tail falls behind, older messages are dropped and counted
(their robots fall back at their deadline). Malformed or foreign messages are counted as
inference errors and skipped.
"""

from diagnostic_msgs.msg import DiagnosticArray
from gfde_msgs.msg import Classification, SplitFeatures
from gfde_perception.ros import parameters as params
from gfde_perception.ros.conversions import featuresmsg_to_packet, result_to_msg
from gfde_perception.ros.executable import spin_node
from gfde_perception.ros.split_diagnostics import publish_counts
from gfde_perception.ros.split_parameters import bundle_path, SERVER_PARAMETERS
from gfde_perception.runtime.split import SplitServer
from gfde_perception.runtime.worker import InferenceWorker
from gfde_perception.stamps import stamp_to_ns
from gfde_perception.stats import PipelineStats
from rclpy.node import Node
import torch

FEATURES_TOPIC = 'split/features'
RESULT_TOPIC = 'split/result'
DEFAULT_NODE_NAME = 'gfde_split_server'


class ServerSide:
    """A :class:`SplitServer` behind the worker's ``classify``: a features message in."""

    def __init__(self, server: SplitServer):
        self.server = server

    def classify(self, msg: SplitFeatures):
        return self.server.process(featuresmsg_to_packet(msg))


def _as_is(msg):
    return msg


def build_server(values: dict) -> SplitServer:
    """Load the server side of the split bundle the parameters name."""
    if values['model.threads']:
        torch.set_num_threads(values['model.threads'])
    return SplitServer(bundle_path(values), top_k=values['top_k'])


class SplitServerNode(Node):
    """
    Server-side split node; add it to any executor (the tail runs on its own thread).

    :param server: a ready :class:`SplitServer` (tests hand one in); None builds it from the
        ``model.*`` parameters.
    :param node_name: name of the node.
    :param kwargs: passed to ``rclpy.node.Node``.
    """

    def __init__(self, server=None, node_name: str = DEFAULT_NODE_NAME, **kwargs):
        super().__init__(node_name, **kwargs)
        self.values = params.declare_parameters(self, SERVER_PARAMETERS)
        self.server = server if server is not None else build_server(self.values)
        self.stats = PipelineStats()
        qos = params.qos_profile(self.values, 'features')
        self._output = self.create_publisher(Classification, RESULT_TOPIC, qos)
        self._diagnostics = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._sub = self.create_subscription(
            SplitFeatures, FEATURES_TOPIC,
            lambda msg: self.worker.submit(msg, self._sub.topic_name, _as_is,
                                           stamp_to_ns(msg.header.stamp)), qos)
        self.worker = InferenceWorker(ServerSide(self.server), self._on_result, self._now_ns,
                                      self.stats, self.get_logger())
        self._diag_timer = self.create_timer(self.values['diagnostics.period_s'],
                                             self._diagnostics_tick)
        self.worker.start()
        self.get_logger().info(f'split server ready: model {self.server.model_id}, features '
                               f'from {self._sub.topic_name}')

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _on_result(self, frame, result, timing):
        msg = frame.payload
        self._output.publish(result_to_msg(
            result, header=msg.header, top_k=self.values['top_k'], queue_ms=timing.queue_ms,
            total_ms=timing.total_ms, frame_age_ms=timing.frame_age_ms,
            frame_seq=msg.frame_seq))

    def snapshot(self) -> dict:
        """Return every counter: received, answered, dropped by reason."""
        stats = self.stats.snapshot()
        counts = {'received': stats.received, 'answered': stats.processed}
        counts.update({f'dropped.{reason}': n for reason, n in stats.dropped.items()})
        return counts

    def _diagnostics_tick(self):
        publish_counts(self, self._diagnostics, f'{self.get_name()}: split server',
                       self.snapshot(), {'model_id': self.server.model_id})

    def destroy_node(self):
        """Stop the worker, then destroy the node."""
        self.worker.stop()
        self.get_logger().info(f'split server counts: {self.snapshot()}')
        return super().destroy_node()


def main(args=None) -> int:
    """Entry point of the ``split_server_node`` executable."""
    return spin_node(SplitServerNode, args)


if __name__ == '__main__':
    main()
