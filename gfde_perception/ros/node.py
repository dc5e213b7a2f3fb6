# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
The classifier node: camera topics in, ``gfde_msgs/Classification`` and ``/diagnostics`` out.

A thin adapter: parameters -> config, message -> array, run the handed classifier, result ->
message. Camera frames are taken serialized, as the transport delivered them; a subscription
callback only hands the bytes to the ROS-free
:class:`~gfde_perception.runtime.worker.InferenceWorker` (``submit``) with their decoder, their
publisher's sequence number and their reception time, and returns. The worker keeps the newest
frame of each topic, decodes it straight from its bytes (a superseded frame is never
deserialized), classifies it and calls back :meth:`ClassifierNodeMixin._publish`, so the
executor never blocks on inference. The worker also keeps the books: every frame a camera sent
is published or counted with its reason (docs/NODE.md states the identity).
"""

import sys
import time
from typing import Callable, Optional

from diagnostic_msgs.msg import DiagnosticArray
from gfde_msgs.msg import Classification
from gfde_perception.errors import ConfigError
from gfde_perception.ros import diagnostics
from gfde_perception.ros import parameters as params
from gfde_perception.ros.camera_input import CameraGate, CameraInput
from gfde_perception.ros.conversions import result_to_msg, serialized_header
from gfde_perception.ros.executable import process_age_s, spin_node
from gfde_perception.runtime.policies import DEFAULT_POLICY
from gfde_perception.runtime.worker import Frame, FrameTiming, InferenceWorker
from gfde_perception.stats import PipelineStats
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node

OUTPUT_TOPIC = 'classification'
DIAGNOSTICS_TOPIC = '/diagnostics'
DEFAULT_NODE_NAME = 'gfde_classifier'


def load_report(classifier, seconds: float, path: str = '') -> str:
    """Return the start-up log line of a loaded classifier: what it is and where time went."""
    parts = getattr(classifier, 'load_seconds', None) or {}
    split = ', '.join(f'{name} {s:.2f} s' for name, s in parts.items())
    return (f'model {getattr(classifier, "model_id", "?")}'
            + (f' from {path}' if path else ' (handed in)')
            + f': backend {getattr(classifier, "backend", "?")}'
            + f' ({getattr(classifier, "backend_reason", "")})'
            + f', schedule {getattr(classifier, "schedule", "?")}'
            + f', {getattr(classifier, "num_exits", "?")} exits; loaded in {seconds:.2f} s'
            + (f' ({split})' if split else ''))


class ClassifierNodeMixin:
    """
    What the plain and the lifecycle classifier node share: parameters, topics, diagnostics.

    The host class is an rclpy ``Node`` or ``LifecycleNode``; it calls :meth:`_setup_parameters`
    once, then :meth:`_attach_classifier`, :meth:`_create_subscriptions` and
    :meth:`_release_io` as its life cycle requires.
    """

    classifier = None
    worker: Optional[InferenceWorker] = None

    def _setup_parameters(self, reload_read_only: bool = True):
        self.values = params.declare_parameters(self, reload_read_only=reload_read_only)
        self.bounds = params.health_bounds(self.values)
        self.stats = PipelineStats(self.values['diagnostics.window_s'])
        self._subscriptions_io = []
        self._cameras = []
        self._publisher = None
        self._diag_publisher = None
        self._diag_timer = None
        self._first_result_logged = False
        # Woken from the worker thread when it waits for a frame again (see CameraGate).
        self._camera_wake = self.create_guard_condition(lambda: None)
        self._camera_gate = CameraGate(self._camera_wake.trigger)
        self.add_on_set_parameters_callback(self._on_set_parameters)

    def _load_classifier(self, factory: Callable):
        """Build the classifier with ``factory(values)``; log what was loaded and how long."""
        path = params.bundle_path(self.values) if factory is params.build_classifier else ''
        self.get_logger().info(f'loading model bundle {path}' if path else 'loading the model')
        start = time.monotonic()
        classifier = factory(self.values)
        self.get_logger().info(load_report(classifier, time.monotonic() - start, path))
        return classifier

    def _attach_classifier(self, classifier):
        """Bind the classifier to a new worker; the exit policy comes from the parameters."""
        self.classifier = classifier
        if self.values['exit.policy'] != DEFAULT_POLICY:
            classifier.set_policy(params.build_policy(self.values))
        self.worker = InferenceWorker(classifier, self._publish, self._now_ns, self.stats,
                                      self.get_logger(),
                                      self.values['bad_input_warn_period_s'],
                                      on_idle=self._worker_idle)
        self._camera_gate.worker = self.worker
        self._camera_gate.reopen()

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _publish(self, frame: Frame, result, timing: FrameTiming):
        """Publish one result of the worker (called on the worker thread)."""
        publisher = self._publisher
        if publisher is None:
            raise RuntimeError('no publisher (node not active)')
        publisher.publish(result_to_msg(
            result, header=serialized_header(frame.payload), top_k=self.values['top_k'],
            decode_ms=timing.decode_ms, queue_ms=timing.queue_ms, total_ms=timing.total_ms,
            frame_age_ms=timing.frame_age_ms, source_topic=frame.topic, frame_seq=frame.seq))
        if not self._first_result_logged:
            self._first_result_logged = True
            self.get_logger().info(f'first result published {process_age_s():.2f} s after the '
                                   'process started')

    def _create_subscriptions(self):
        qos = params.qos_profile(self.values, 'qos')
        for name in self.values['topics']:
            camera = CameraInput(self, name, qos, self._camera_gate,
                                 lambda: self.values['decode.max_bytes'])
            self._cameras.append(camera)
            self._subscriptions_io.append(camera.subscription)

    def _worker_idle(self):
        """On the worker thread, when it is about to wait: take what is waiting, or open."""
        worker = self.worker
        pulled = [camera.pull(worker) for camera in self._cameras] if worker else []
        if not any(pulled):
            self._camera_gate.reopen()

    def _diagnostics_tick(self):
        publisher = self._diag_publisher
        if publisher is not None:
            status = diagnostics.build_status(f'{self.get_name()}: classifier',
                                              self.stats.snapshot(), self.bounds, self.describe())
            diagnostics.publish(self, publisher, [status])

    def describe(self) -> dict:
        """Return static facts for diagnostics: backend, exit device, model, policy, topics."""
        worker = self.worker
        return diagnostics.classifier_facts(
            self.classifier, worker.last_result if worker is not None else None,
            [sub.topic_name for sub in self._subscriptions_io])

    def _on_set_parameters(self, parameters) -> SetParametersResult:
        changes = {p.name: p.value for p in parameters}
        try:
            merged, policy = params.check_update(self.values, changes, self.classifier)
        except ConfigError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        self.values = merged
        self.bounds = params.health_bounds(merged)
        self.stats.window_s = merged['diagnostics.window_s']
        if self.worker is not None:
            self.worker.warn_period_s = merged['bad_input_warn_period_s']
        if policy is not None:
            self.get_logger().info(f'exit policy now: {policy.describe()}'
                                   if self.classifier is not None else
                                   f'exit policy {merged["exit.policy"]} set for configure')
        return SetParametersResult(successful=True)

    def _release_io(self):
        self._cameras = []
        for sub in self._subscriptions_io:
            self.destroy_subscription(sub)
        self._subscriptions_io = []
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None


class ClassifierNode(ClassifierNodeMixin, Node):
    """
    Classify camera images and publish ``classification`` and ``/diagnostics``.

    Add it to any executor (a SingleThreadedExecutor is what the project tests; inference runs
    on the node's own worker thread either way).

    :param classifier: a ready :class:`gfde_perception.runtime.Classifier` (or an object with
        its interface); None builds one from the ``model.*`` parameters. A handed classifier
        stays the caller's: the node does not close it.
    :param node_name: name of the node.
    :param kwargs: passed to ``rclpy.node.Node`` (``context``, ``namespace``,
        ``parameter_overrides``, ``cli_args``...).
    """

    def __init__(self, classifier=None, node_name: str = DEFAULT_NODE_NAME, **kwargs):
        super().__init__(node_name, **kwargs)
        self._setup_parameters()
        self._owns_classifier = classifier is None
        if classifier is None:
            classifier = self._load_classifier(params.build_classifier)
        self._attach_classifier(classifier)
        self._publisher = self.create_publisher(Classification, OUTPUT_TOPIC,
                                                params.qos_profile(self.values, 'output'))
        self._diag_publisher = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, 10)
        # The worker runs before the first frame can arrive: none is discarded as inactive.
        self.worker.start()
        self._create_subscriptions()
        self._diag_timer = self.create_timer(self.values['diagnostics.period_s'],
                                             self._diagnostics_tick)
        info = self.describe()
        self.get_logger().info(
            f'classifier ready {process_age_s():.2f} s after the process started: '
            f"backend={info['backend']} exits={info['num_exits']} "
            f"topics=[{info['topics']}] output={self._publisher.topic_name}")

    def destroy_node(self):
        """Stop the worker, close an owned classifier, then destroy the node."""
        if self.worker is not None:
            self.worker.stop()
        self._release_io()
        if self._owns_classifier and self.classifier is not None:
            self.classifier.close()
        self.classifier = None
        return super().destroy_node()


def main(args=None) -> int:
    """Entry point of the ``classifier_node`` executable."""
    return spin_node(ClassifierNode, args)


if __name__ == '__main__':
    sys.exit(main())
