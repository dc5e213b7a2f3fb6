# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
The server side of split inference: ``split/features`` in, ``split/result`` out.

Each ``gfde_msgs/SplitFeatures`` is decoded, checked against the loaded split bundle (model id,
split point, shape, bits) and run through the tail; the answer goes out as a
``gfde_msgs/Classification`` with the frame's original header and ``frame_seq``, and
``answered_by: server``. The robot node relays it (or, if it came too late, drops it). A bounded
queue feeds one worker thread; when it is full the oldest message is dropped and counted (its
robot falls back at its deadline). Malformed or foreign messages are counted and skipped.
"""

import queue
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
from gfde_msgs.msg import Classification, SplitFeatures
from gfde_perception.errors import FeatureError, GfdeError
from gfde_perception.ros import parameters as params
from gfde_perception.ros.conversions import featuresmsg_to_packet, result_to_msg
from gfde_perception.ros.diagnostics import publish_counts
from gfde_perception.ros.node import qos_profile, spin_node
from gfde_perception.ros.split_parameters import bundle_path, SERVER_PARAMETERS
from gfde_perception.runtime.split import SplitServer
from rclpy.node import Node
import torch

FEATURES_TOPIC = 'split/features'
RESULT_TOPIC = 'split/result'
DEFAULT_NODE_NAME = 'gfde_split_server'


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
        self.counts = {'received': 0, 'answered': 0, 'refused': 0, 'dropped': 0, 'errors': 0}
        self._lock = threading.Lock()
        self._queue = queue.Queue(maxsize=self.values['queue_depth'])
        qos = qos_profile(self.values['features.reliability'], 10)
        self._output = self.create_publisher(Classification, RESULT_TOPIC, qos)
        self._diagnostics = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._sub = self.create_subscription(SplitFeatures, FEATURES_TOPIC, self._on_features,
                                             qos)
        self._diag_timer = self.create_timer(self.values['diagnostics.period_s'],
                                             self._diagnostics_tick)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name='gfde-split-server',
                                        daemon=True)
        self._thread.start()
        self.get_logger().info(f'split server ready: model {self.server.model_id}, features '
                               f'from {self._sub.topic_name}')

    def _count(self, key: str):
        with self._lock:
            self.counts[key] += 1

    def _on_features(self, msg: SplitFeatures):
        self._count('received')
        item = (msg, time.monotonic())
        while True:
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    self._count('dropped')
                except queue.Empty:
                    pass

    def _run(self):
        while not self._stop.is_set():
            try:
                msg, arrival = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self.process(msg, arrival)
            except Exception as exc:  # the worker must survive anything
                self._count('errors')
                self.get_logger().warning(f'features failed: {exc!r}', throttle_duration_sec=5)

    def process(self, msg: SplitFeatures, arrival: float):
        """Decode one message, run the tail, publish the answer."""
        try:
            result = self.server.process(featuresmsg_to_packet(msg))
        except FeatureError as exc:
            self._count('refused')
            self.get_logger().warning(f'features refused: {exc}', throttle_duration_sec=5)
            return
        except GfdeError as exc:
            self._count('errors')
            self.get_logger().warning(f'tail failed: {exc}', throttle_duration_sec=5)
            return
        out = result_to_msg(result, header=msg.header, top_k=self.values['top_k'],
                            queue_ms=0.0, total_ms=(time.monotonic() - arrival) * 1e3,
                            frame_seq=msg.frame_seq)
        self._output.publish(out)
        self._count('answered')

    def snapshot(self) -> dict:
        """Return every counter."""
        with self._lock:
            return dict(self.counts)

    def _diagnostics_tick(self):
        publish_counts(self, self._diagnostics, f'{self.get_name()}: split server',
                       self.snapshot(), {'model_id': self.server.model_id})

    def destroy_node(self):
        """Stop the worker, then destroy the node."""
        self._stop.set()
        self._thread.join(10.0)
        self.get_logger().info(f'split server counts: {self.snapshot()}')
        return super().destroy_node()


def main(args=None) -> int:
    """Entry point of the ``split_server_node`` executable."""
    return spin_node(SplitServerNode, args)


if __name__ == '__main__':
    main()
