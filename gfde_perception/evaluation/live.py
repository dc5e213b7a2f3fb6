# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Live replay: publish a bag's frames over DDS into a running classifier node, collect its results.

The one evaluation module that touches ROS (``rclpy`` and message types are imported inside the
functions). For each configuration a ``classifier_node`` is started as a subprocess in its own
namespace (``/gfde_eval/<name>``) with the bundle and exit policy as parameters; the bag's frames
are published unchanged (their recorded CDR bytes) at the recorded or a chosen rate, and every
``gfde_msgs/Classification`` that comes back is matched to its frame by header stamp. Frames
without a result before the final wait are counted as drops, so node overhead, DDS transport and
the node's drop-oldest policy are all in the figures. Every wait is bounded.

DDS stays on this host: ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` is set when not given, and
the environment's ``ROS_DOMAIN_ID`` is used.
"""

import os
from pathlib import Path
import threading
import time

from gfde_perception.bundle import load_bundle
from gfde_perception.errors import BagError, ConfigError
from gfde_perception.evaluation.configurations import (ConfigurationSpec, Prediction,
                                                       resolve_bundle_path)
from gfde_perception.evaluation.offline import host_info
from gfde_perception.evaluation.records import ConfigurationRecords, EvaluationRun
from gfde_perception.recording import raw_frames, read_labelled_frames
from gfde_perception.stamps import stamp_to_ns
from gfde_perception.workspace import dds_environment, node_command, start_node, stop_node

NAMESPACE = '/gfde_eval'
READY_TIMEOUT_S = 120.0  # model load + warm-up on a slow CPU


def node_parameters(spec: ConfigurationSpec, bundle_path: str, compressed: bool, args) -> dict:
    """Parameters of the classifier node serving ``spec`` (its policy in the one grammar)."""
    return {
        'model.bundle': bundle_path,
        'model.backend': args.backend,
        'model.schedule': args.schedule,
        'model.threads': args.threads,
        'model.warmup': args.runtime_warmup,
        'model.energy': args.energy,
        'topics': ['image/compressed' if compressed else 'image'],
        'exit.policy': spec.policy,
        # Every frame should reach the node: a deep reliable queue, so drops are the node's own.
        'qos.reliability': 'reliable',
        'qos.depth': 100,
        'output.depth': 1000,
    }


class _Collector:
    """Results of one node, keyed by header stamp, with the time each arrived."""

    def __init__(self):
        self.lock = threading.Lock()
        self.results = {}

    def callback(self, msg):
        stamp = stamp_to_ns(msg.header.stamp)
        with self.lock:
            self.results.setdefault(stamp, (time.perf_counter_ns(), msg))

    def count(self) -> int:
        with self.lock:
            return len(self.results)


def _wait(predicate, timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def replay_into_node(spec, bundle, bundle_path: str, frames: list, args,
                     log_dir: Path) -> ConfigurationRecords:
    """
    Start a node for ``spec``, publish ``frames`` into it and collect its results.

    :param frames: ``(msgtype, record_ns, stamp_ns, cdr_bytes)`` per frame, in bag order.
    :raises BagError: a frame type the node does not read.
    :raises ConfigError: the node did not come up, or died.
    """
    # rclpy and the messages are imported here, not at the top: this is the one evaluation
    # function that needs ROS, and offline evaluation must run where ROS is not installed.
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, QoSReliabilityPolicy

    from gfde_msgs.msg import Classification
    from sensor_msgs.msg import CompressedImage, Image

    compressed = frames[0][0].endswith('CompressedImage')
    if any(f[0] != frames[0][0] for f in frames):
        raise BagError('the image topic mixes Image and CompressedImage messages')
    log_path = log_dir / f'node_{spec.name}.log'
    log = open(log_path, 'wb')
    node_proc = start_node(node_command(node_parameters(spec, bundle_path, compressed, args),
                                        f'{NAMESPACE}/{spec.name}', f'classifier_{spec.name}'),
                           stdout=log)
    context = rclpy.Context()
    rclpy.init(context=context)
    executor = SingleThreadedExecutor(context=context)
    node = rclpy.create_node(f'gfde_eval_player_{spec.name}', context=context)
    collector = _Collector()
    ns = f'{NAMESPACE}/{spec.name}'
    qos = QoSProfile(depth=100, reliability=QoSReliabilityPolicy.RELIABLE)
    publisher = node.create_publisher(CompressedImage if compressed else Image,
                                      f'{ns}/image' + ('/compressed' if compressed else ''), qos)
    node.create_subscription(Classification, f'{ns}/classification', collector.callback,
                             QoSProfile(depth=1000, reliability=QoSReliabilityPolicy.RELIABLE))
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, name='gfde-eval-spin', daemon=True)
    spinner.start()
    records = ConfigurationRecords(spec.name, {'name': spec.name, 'spec': spec.describe(),
                                               'kind': spec.kind, 'policy': spec.policy,
                                               'num_exits': bundle.config.num_exits,
                                               'labels': list(bundle.labels),
                                               'backend': f'node:{args.backend}'})
    try:
        ready = _wait(lambda: publisher.get_subscription_count() > 0 and
                      node.count_publishers(f'{ns}/classification') > 0 or
                      node_proc.poll() is not None, READY_TIMEOUT_S)
        if not ready or node_proc.poll() is not None:
            raise ConfigError(f'the classifier node for {spec.name!r} did not come up within '
                              f'{READY_TIMEOUT_S:.0f} s; its log: {log_path}')
        sent = _publish_frames(publisher, frames, args.rate)
        last = sent[-1] if sent else time.perf_counter_ns()
        _wait(lambda: collector.count() >= len(frames) or
              (time.perf_counter_ns() - last) / 1e9 > args.result_timeout, args.result_timeout + 1)
        _fill_records(records, frames, sent, collector)
    finally:
        executor.shutdown(timeout_sec=2.0)
        node.destroy_node()
        rclpy.shutdown(context=context)
        spinner.join(timeout=5.0)
        stop_node(node_proc)
        log.close()
    return records


def _publish_frames(publisher, frames: list, rate_hz: float) -> list:
    """Publish at ``rate_hz`` (0 = recorded spacing); return the send time of each frame."""
    sent = []
    start = time.perf_counter_ns()
    first_record = frames[0][1]
    for i, (_, record_ns, _, raw) in enumerate(frames):
        offset = (i * 1e9 / rate_hz) if rate_hz > 0 else (record_ns - first_record)
        delay = (start + offset - time.perf_counter_ns()) / 1e9
        if delay > 0:
            time.sleep(delay)
        sent.append(time.perf_counter_ns())
        publisher.publish(raw)
    return sent


def _fill_records(records, frames, sent, collector) -> None:
    with collector.lock:
        results = dict(collector.results)
    for (_, _, stamp, _), t_sent in zip(frames, sent):
        got = results.get(stamp)
        if got is None:
            records.append_drop()
            continue
        t_recv, msg = got
        prediction = Prediction(
            class_id=int(msg.class_id), score=float(msg.score), exit_index=int(msg.exit_index),
            num_exits=int(msg.num_exits), blocks_run=int(msg.blocks_run),
            blocks_total=int(msg.blocks_total), inference_ms=float(msg.latency.inference_ms))
        records.append(prediction, (t_recv - t_sent) / 1e6, msg.energy)
        records.node_total_ms.append(float(msg.latency.total_ms))
        records.info['backend'] = str(msg.backend) or records.info['backend']
        records.info.setdefault('model_id', str(msg.model_id))


def run_live_from_args(args, specs) -> EvaluationRun:
    """Live replay of ``args.bag`` into one node per configuration (``gfde-eval --mode live``)."""
    for spec in specs:
        if spec.kind != 'bundle':
            raise ConfigError(f'configuration {spec.name!r} is a {spec.kind}: live mode runs the '
                              'classifier node, which serves GFDE bundles; evaluate it offline')
    paths = [resolve_bundle_path(spec.path) for spec in specs]
    bundles = [load_bundle(path) for path in paths]
    class_names = tuple(bundles[0].labels)
    reader = read_labelled_frames(
        args.bag, args.image_topic, args.label_topic, args.sidecar, class_names=class_names,
        on_unlabelled=args.on_unlabelled, on_orphan_labels=args.on_orphan_labels,
        tolerance_ns=args.tolerance_ns, limit=args.limit)
    wanted = set(reader.stamps_ns)
    frames = [f for f in raw_frames(args.bag, args.image_topic) if f[2] in wanted]
    frames = frames[:len(reader)]
    if not frames:
        raise BagError(f'no frames to publish from {args.bag}')
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.update({k: v for k, v in dds_environment().items()
                       if k in ('ROS_AUTOMATIC_DISCOVERY_RANGE',
                                'FASTDDS_DEFAULT_PROFILES_FILE')})
    records = [replay_into_node(spec, bundle, path, frames, args, out)
               for spec, bundle, path in zip(specs, bundles, paths)]
    labels = reader.labels
    return EvaluationRun(
        mode='live',
        source={'bag': str(args.bag), 'image_topic': args.image_topic,
                'labels': (f'topic {args.label_topic}' if args.label_topic else
                           f'sidecar {args.sidecar}' if args.sidecar else 'nowhere'),
                'configurations': [s.describe() for s in specs]},
        class_names=class_names, stamps_ns=[f[2] for f in frames],
        labels=labels if any(v is not None for v in labels) else None,
        configurations=records, host=host_info(args.threads),
        settings={'order': 'one node at a time', 'warmup': args.runtime_warmup,
                  'rate_hz': args.rate or 'recorded', 'threads': args.threads,
                  'result_timeout_s': args.result_timeout,
                  'ros_domain_id': os.environ.get('ROS_DOMAIN_ID', '0')})
