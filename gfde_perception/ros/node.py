# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
The classifier node: camera topics in, ``gfde_msgs/Classification`` and ``/diagnostics`` out.

A thin adapter: parameters -> config, message -> array, run the handed classifier, result ->
message. Subscription callbacks only put the newest message of their topic in a
:class:`~gfde_perception.ros.frame_mailbox.LatestFrameMailbox` and return; one worker thread of the
node decodes, classifies and publishes, so the executor never blocks on inference and a frame
superseded before inference starts is dropped and counted (the output never lags the camera).
Bad input is skipped with a throttled warning and counted; the next good frame is processed.
"""

from dataclasses import dataclass
import math
import sys
import threading
import time
from typing import Any, Callable, Optional

from diagnostic_msgs.msg import DiagnosticArray
from gfde_msgs.msg import Classification
from gfde_perception.errors import ConfigError, GfdeError, ImageError
from gfde_perception.ros import parameters as params
from gfde_perception.ros.conversions import (compressed_imgmsg_to_array, imgmsg_to_array,
                                             result_to_msg)
from gfde_perception.ros.diagnostics import build_array, build_status
from gfde_perception.ros.frame_mailbox import LatestFrameMailbox
from gfde_perception.stats import (bad_input_kind, DROP_BAD_INPUT, DROP_INFERENCE_ERROR,
                                   DROP_NON_FINITE, DROP_PUBLISH_FAILED, DROP_SUPERSEDED,
                                   PipelineStats)
from rcl_interfaces.msg import SetParametersResult
import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import (QoSDurabilityPolicy, QoSHistoryPolicy, QoSProfile,
                       QoSReliabilityPolicy)
from sensor_msgs.msg import CompressedImage, Image

OUTPUT_TOPIC = 'classification'
DIAGNOSTICS_TOPIC = '/diagnostics'
COMPRESSED_SUFFIX = 'compressed'
DEFAULT_NODE_NAME = 'gfde_classifier'


def is_compressed_topic(name: str) -> bool:
    """Return True for image_transport's compressed topic names (``.../compressed``)."""
    return name.rstrip('/').split('/')[-1] == COMPRESSED_SUFFIX


def qos_profile(reliability: str, depth: int) -> QoSProfile:
    """Return a keep-last, volatile QoS profile with the given reliability and depth."""
    return QoSProfile(
        history=QoSHistoryPolicy.KEEP_LAST, depth=int(depth),
        reliability=(QoSReliabilityPolicy.RELIABLE if reliability == 'reliable'
                     else QoSReliabilityPolicy.BEST_EFFORT),
        durability=QoSDurabilityPolicy.VOLATILE)


@dataclass
class _Frame:
    msg: Any
    compressed: bool
    topic: str
    seq: int
    arrival: float  # time.monotonic() when the callback ran


class InferenceWorker:
    """
    The node's worker thread: newest frame -> decode -> classify -> publish, counting drops.

    ROS entities are handed in as callables, so the plain and the lifecycle node share it.

    :param classifier: object with ``classify(image) -> Result``.
    :param publish: called with each Classification message (may raise: counted as dropped).
    :param now_ns: current ROS time in nanoseconds (for the frame age).
    :param logger: an rclpy logger.
    :param stats: where events are counted.
    """

    def __init__(self, classifier, publish: Callable, now_ns: Callable[[], int], logger,
                 stats: PipelineStats):
        self.classifier = classifier
        self.publish = publish
        self.now_ns = now_ns
        self.logger = logger
        self.stats = stats
        self.mailbox = LatestFrameMailbox()
        self.top_k = 5
        self.warn_period_s = 5.0
        self.decode_max_bytes = params.DEFAULTS['decode.max_bytes']
        self.last_result = None
        self._warned = {}  # reason -> (last warning time, suppressed count)
        self._seq = {}
        self._thread = None
        self._stop = threading.Event()

    # --- producer side (executor thread) -------------------------------------------------------
    def submit(self, msg, topic: str, compressed: bool):
        """Hand a message to the worker (never blocks); a superseded frame is counted."""
        seq = self._seq.get(topic, 0)
        self._seq[topic] = seq + 1
        self.stats.frame_received()
        old = self.mailbox.put(topic, _Frame(msg, compressed, topic, seq, time.monotonic()))
        if old is not None:
            self.stats.frame_dropped(DROP_SUPERSEDED)

    # --- consumer side ---------------------------------------------------------------------
    def start(self):
        """Start the worker thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self.mailbox.reopen()
        self._thread = threading.Thread(target=self._run, name='gfde-inference', daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0):
        """Stop the worker thread; frames still waiting are counted as superseded."""
        self._stop.set()
        self.mailbox.close()
        for _ in self.mailbox.clear():
            self.stats.frame_dropped(DROP_SUPERSEDED)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self):
        while not self._stop.is_set():
            got = self.mailbox.get(timeout=0.2)
            if got is None:
                continue
            try:
                self.process(got[1])
            except Exception as exc:  # the worker must survive anything
                self.stats.frame_dropped(DROP_INFERENCE_ERROR)
                self._warn(DROP_INFERENCE_ERROR, f'unexpected error on a frame: {exc!r}')

    def _warn(self, key: str, text: str):
        now = time.monotonic()
        last, suppressed = self._warned.get(key, (-math.inf, 0))
        if now - last >= self.warn_period_s:
            extra = f' ({suppressed} more since the last warning)' if suppressed else ''
            self.logger.warning(f'frame skipped: {text}{extra}')
            self._warned[key] = (now, 0)
        else:
            self._warned[key] = (last, suppressed + 1)

    def process(self, frame: _Frame):
        """Run one frame through decode, classify and publish (called by the worker thread)."""
        start = time.monotonic()
        queue_ms = (start - frame.arrival) * 1e3
        try:
            decode = compressed_imgmsg_to_array if frame.compressed else imgmsg_to_array
            image = decode(frame.msg, self.decode_max_bytes)
        except ImageError as exc:
            kind = bad_input_kind(exc)
            self.stats.frame_dropped(DROP_BAD_INPUT, kind)
            self._warn(f'bad:{kind}', f'bad image on {frame.topic}: {exc}')
            return
        decoded = time.monotonic()
        try:
            result = self.classifier.classify(image)
        except ImageError as exc:  # e.g. non-finite pixels found by preprocessing
            kind = bad_input_kind(exc)
            self.stats.frame_dropped(DROP_BAD_INPUT, kind)
            self._warn(f'bad:{kind}', f'bad image on {frame.topic}: {exc}')
            return
        except GfdeError as exc:
            self.stats.frame_dropped(DROP_INFERENCE_ERROR)
            self._warn(DROP_INFERENCE_ERROR, f'inference failed on {frame.topic}: {exc}')
            return
        if not (math.isfinite(result.score)
                and all(math.isfinite(c) for c in result.gate_confidence)):
            self.stats.frame_dropped(DROP_NON_FINITE)
            self._warn(DROP_NON_FINITE, f'non-finite scores on {frame.topic} (NaN input?)')
            return
        header = frame.msg.header
        stamp_ns = header.stamp.sec * 1_000_000_000 + header.stamp.nanosec
        age_ms = (self.now_ns() - stamp_ns) / 1e6 if stamp_ns else math.nan
        decode_ms = (decoded - start) * 1e3
        total_ms = (time.monotonic() - frame.arrival) * 1e3
        msg = result_to_msg(result, header=header, top_k=self.top_k, decode_ms=decode_ms,
                            queue_ms=queue_ms, total_ms=total_ms, frame_age_ms=age_ms,
                            source_topic=frame.topic, frame_seq=frame.seq)
        try:
            self.publish(msg)
        except Exception as exc:  # a reliable publish can raise under saturation
            self.stats.frame_dropped(DROP_PUBLISH_FAILED)
            self._warn(DROP_PUBLISH_FAILED, f'publish failed: {exc!r}')
            return
        self.last_result = result
        timings = result.timings
        latency = {'decode': decode_ms, 'queue': queue_ms, 'preprocess': timings.preprocess_ms,
                   'inference': timings.inference_ms, 'total': total_ms, 'frame_age': age_ms}
        for k, ms in enumerate(timings.segment_ms):
            latency[f'segment_{k}'] = ms
        for k, ms in enumerate(timings.exit_head_ms):
            latency[f'exit_head_{k}'] = ms
        energy = result.energy
        self.stats.result_published(result.exit_index, latency, energy.measured, energy.joules,
                                    energy.source, energy.method)


class ClassifierNodeMixin:
    """
    What the plain and the lifecycle classifier node share: parameters, topics, diagnostics.

    The host class is an rclpy ``Node`` or ``LifecycleNode``; it calls :meth:`_setup_parameters`
    once, then :meth:`_attach_classifier`, :meth:`_create_io` and :meth:`_release` as its life
    cycle requires.
    """

    classifier = None
    worker: Optional[InferenceWorker] = None

    def _setup_parameters(self):
        self.values = params.declare_parameters(self)
        self.bounds = params.health_bounds(self.values)
        self.stats = PipelineStats(self.values['diagnostics.window_s'])
        self._subscriptions_io = []
        self._publisher = None
        self._diag_publisher = None
        self._diag_timer = None
        self.add_on_set_parameters_callback(self._on_set_parameters)

    def _attach_classifier(self, classifier):
        """Bind the classifier to a new worker; the exit policy comes from the parameters."""
        self.classifier = classifier
        if self.values['exit.policy'] != 'calibrated' or self.values['exit.thresholds']:
            classifier.set_policy(params.build_policy(self.values))
        self.worker = InferenceWorker(classifier, self._publish, self._now_ns,
                                      self.get_logger(), self.stats)
        self.worker.top_k = self.values['top_k']
        self.worker.warn_period_s = self.values['bad_input_warn_period_s']
        self.worker.decode_max_bytes = self.values['decode.max_bytes']

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _publish(self, msg):
        publisher = self._publisher
        if publisher is None:
            raise RuntimeError('no publisher (node not active)')
        publisher.publish(msg)

    def _create_subscriptions(self):
        qos = params_qos(self.values, 'qos')
        for name in self.values['topics']:
            compressed = is_compressed_topic(name)
            msg_type = CompressedImage if compressed else Image
            holder = {}

            def callback(msg, holder=holder, compressed=compressed):
                worker = self.worker
                if worker is not None:
                    worker.submit(msg, holder['topic'], compressed)

            sub = self.create_subscription(msg_type, name, callback, qos)
            holder['topic'] = sub.topic_name
            self._subscriptions_io.append(sub)

    def _diagnostics_tick(self):
        publisher = self._diag_publisher
        if publisher is None:
            return
        status = build_status(f'{self.get_name()}: classifier', self.stats.snapshot(),
                              self.bounds, self.describe())
        try:
            publisher.publish(build_array(self.get_clock().now().to_msg(), [status]))
        except Exception as exc:  # diagnostics must never take the node down
            self.get_logger().warning(f'diagnostics publish failed: {exc!r}')

    def describe(self) -> dict:
        """Return static facts for diagnostics: backend, exit device, model, policy, topics."""
        clf = self.classifier
        last = self.worker.last_result if self.worker is not None else None
        policy = getattr(clf, 'policy', None)
        return {
            'backend': getattr(clf, 'backend', '') if clf is not None else 'not loaded',
            'exit_device': last.exit_device if last is not None else '',
            'model_id': last.model_id if last is not None else '',
            'policy': policy.describe() if hasattr(policy, 'describe') else str(policy or ''),
            'num_exits': getattr(clf, 'num_exits', 0) if clf is not None else 0,
            'topics': ' '.join(sub.topic_name for sub in self._subscriptions_io),
        }

    def _on_set_parameters(self, parameters) -> SetParametersResult:
        changes = {}
        for p in parameters:
            value = p.value
            if value is not None and not isinstance(value, (str, bytes)) and hasattr(
                    value, '__len__'):
                value = list(value)
            changes[p.name] = value
        try:
            merged, policy = params.check_update(self.values, changes)
            if policy is not None and self.classifier is not None:
                # Binding validates the policy against the model (exit count, force index).
                self.classifier.set_policy(policy)
        except ConfigError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        self.values = merged
        self.bounds = params.health_bounds(merged)
        self.stats.window_s = merged['diagnostics.window_s']
        if self.worker is not None:
            self.worker.top_k = merged['top_k']
            self.worker.warn_period_s = merged['bad_input_warn_period_s']
            self.worker.decode_max_bytes = merged['decode.max_bytes']
        if policy is not None:
            self.get_logger().info(f'exit policy now: {policy.describe()}'
                                   if self.classifier is not None else
                                   f'exit policy {merged["exit.policy"]} set for configure')
        return SetParametersResult(successful=True)

    def _release_io(self):
        for sub in self._subscriptions_io:
            self.destroy_subscription(sub)
        self._subscriptions_io = []
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None


def params_qos(values: dict, prefix: str) -> QoSProfile:
    """Return the QoS profile described by ``<prefix>.reliability`` and ``<prefix>.depth``."""
    return qos_profile(values[f'{prefix}.reliability'], values[f'{prefix}.depth'])


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
            classifier = params.build_classifier(self.values)
        self._attach_classifier(classifier)
        self._publisher = self.create_publisher(Classification, OUTPUT_TOPIC,
                                                params_qos(self.values, 'output'))
        self._diag_publisher = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, 10)
        self._create_subscriptions()
        self._diag_timer = self.create_timer(self.values['diagnostics.period_s'],
                                             self._diagnostics_tick)
        self.worker.start()
        info = self.describe()
        self.get_logger().info(
            f"classifier ready: backend={info['backend']} exits={info['num_exits']} "
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


def spin_node(node_factory: Callable, args=None) -> int:
    """Init rclpy, build a node, spin it on a SingleThreadedExecutor until shutdown."""
    rclpy.init(args=args)
    node = None
    try:
        node = node_factory()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (GfdeError, ConfigError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 1
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


def main(args=None) -> int:
    """Entry point of the ``classifier_node`` executable."""
    return spin_node(ClassifierNode, args)


if __name__ == '__main__':
    sys.exit(main())
