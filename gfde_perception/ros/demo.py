# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Demo: play camera frames into the classifier node over DDS and print what comes out.

Starts the node in its own process (or uses one already running with ``--no-start``),
publishes the frames of a bag (read with :mod:`gfde_perception.recording`, messages sent
unchanged as their serialised bytes) or, without a bag, frames from an array source, collects
the ``gfde_msgs/Classification`` results and prints a short table and a summary of latency and
exits. This process and the node run in :func:`gfde_perception.workspace.dds_environment`
(loopback discovery, the Fast DDS profile for large images, installed or in the source tree).
"""

import argparse
from collections import Counter
import os
import sys
import threading
import time

from gfde_msgs.msg import Classification
from gfde_perception.recording import bag_classes, list_topics, raw_frames, read_labelled_frames
from gfde_perception.ros.conversions import array_to_imgmsg
from gfde_perception.stamps import stamp_to_ns
from gfde_perception.workspace import dds_environment, node_command, start_node, stop_node
import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, QoSReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image


def array_frames(count: int, size=(480, 640)):
    """Yield ``count`` RGB frames from an array source (smooth moving colour patterns)."""
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for i in range(count):
        phase = i / max(count, 1) * 2 * np.pi
        r = 127 + 120 * np.sin(xx / 40 + phase)
        g = 127 + 120 * np.sin(yy / 30 - phase)
        b = 127 + 120 * np.cos((xx + yy) / 60 + 2 * phase)
        yield np.stack([r, g, b], axis=-1).astype(np.uint8)


def _start_node(args):
    params = {'model.backend': args.backend}
    if args.bundle:
        params['model.bundle'] = args.bundle
    return start_node(node_command(params, node_name='gfde_demo_classifier',
                                   remaps=[f'image:={args.topic_out}']))


def main(argv=None) -> int:
    """Run the demo; return 0 when results came back."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--bag', help='rosbag2 folder or file with camera images')
    parser.add_argument('--bag-topic', default='/camera/image_raw', help='image topic in the bag')
    parser.add_argument('--label-topic', default='/camera/label',
                        help='label topic in the bag (ground truth for the table; optional)')
    parser.add_argument('--frames', type=int, default=60, help='frames to send (at most)')
    parser.add_argument('--rate', type=float, default=15.0, help='publishing rate in Hz')
    parser.add_argument('--bundle', default='', help='.gfde bundle (default: the embedded one)')
    parser.add_argument('--backend', default='auto')
    parser.add_argument('--topic-out', default='demo/image', help='topic the frames go to')
    parser.add_argument('--no-start', action='store_true',
                        help='do not start a node: one is already listening on --topic-out')
    parser.add_argument('--rows', type=int, default=10, help='table rows to print')
    args = parser.parse_args(argv)
    # Before the first DDS participant exists: Fast DDS reads its profile when it creates one.
    os.environ.update(dds_environment())
    node_proc = None if args.no_start else _start_node(args)
    rclpy.init()
    probe = rclpy.create_node('gfde_demo_player')
    results = []  # appended by the executor thread only
    probe.create_subscription(Classification, 'classification',
                              lambda m: results.append((time.time_ns(), m)),
                              QoSProfile(depth=100, reliability=QoSReliabilityPolicy.RELIABLE))
    executor = SingleThreadedExecutor()
    executor.add_node(probe)
    stop = threading.Event()
    spinner = threading.Thread(
        target=lambda: [executor.spin_once(timeout_sec=0.05) for _ in iter(stop.is_set, True)],
        daemon=True)
    spinner.start()
    best_effort = QoSProfile(depth=1, reliability=QoSReliabilityPolicy.BEST_EFFORT)
    truths = _bag_truths(args.bag, args.bag_topic, args.label_topic, args.frames)
    try:
        if args.bag:
            frames = raw_frames(args.bag, args.bag_topic)
            source = ((msgtype, raw) for msgtype, _, _, raw in frames)
            print(f'playing {args.bag} ({args.bag_topic}) into {args.topic_out}')
        else:
            source = (('sensor_msgs/msg/Image', frame) for frame in array_frames(args.frames))
            print(f'no bag given: playing {args.frames} generated 640x480 frames into '
                  f'{args.topic_out}')
        pubs = {'sensor_msgs/msg/Image': probe.create_publisher(Image, args.topic_out,
                                                                best_effort),
                'sensor_msgs/msg/CompressedImage': probe.create_publisher(
                    CompressedImage, args.topic_out.rstrip('/') + '/compressed', best_effort)}
        deadline = time.monotonic() + 120  # model loading and warm-up in the node
        print('waiting for the classifier node...')
        while pubs['sensor_msgs/msg/Image'].get_subscription_count() == 0 and \
                time.monotonic() < deadline:
            if node_proc is not None and node_proc.poll() is not None:
                print(node_proc.stdout.read(), file=sys.stderr)
                return 1
            time.sleep(0.1)
        time.sleep(0.5)
        sent = 0
        for msgtype, payload in source:
            if sent >= args.frames:
                break
            if isinstance(payload, np.ndarray):
                msg = array_to_imgmsg(payload, 'rgb8')
                msg.header.frame_id = 'demo_camera'
                msg.header.stamp = probe.get_clock().now().to_msg()
                pubs[msgtype].publish(msg)
            elif msgtype in pubs:
                pubs[msgtype].publish(payload)  # serialised CDR bytes, unchanged
            else:
                continue
            sent += 1
            time.sleep(1.0 / args.rate)
        time.sleep(1.0)
        got = [m for _, m in list(results)]
        _print_report(got, sent, args.rows, truths)
        return 0 if got else 1
    finally:
        stop.set()
        spinner.join(5)
        executor.shutdown()
        probe.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
        if node_proc is not None:
            stop_node(node_proc, timeout=15)


def _bag_truths(bag, image_topic, label_topic, limit) -> dict:
    """Return ``{stamp_ns: class name}`` from the bag's label topic, or {} when it has none."""
    if not bag or not label_topic:
        return {}
    if label_topic not in list_topics(bag):
        return {}
    names = bag_classes(bag)
    frames = read_labelled_frames(bag, image_topic, label_topic, class_names=names,
                                  on_unlabelled='skip', on_orphan_labels='ignore', limit=limit)
    return {f.stamp_ns: (names[f.label] if names else str(f.label)) for f in frames}


def _print_report(results, sent, rows, truths=None):
    truths = truths or {}
    print(f'\n{"seq":>5} {"stamp":>20} {"truth":<14}{"label":<14}{"score":>7}{"exit":>6}'
          f'{"total ms":>10}')
    for msg in results[:rows]:
        stamp = f'{msg.header.stamp.sec}.{msg.header.stamp.nanosec:09d}'
        truth = truths.get(stamp_to_ns(msg.header.stamp), '-')
        print(f'{msg.frame_seq:5d} {stamp:>20} {truth[:13]:<14}{msg.label[:13]:<14}'
              f'{msg.score:7.3f}{msg.exit_index:>3}/{msg.num_exits:<2}'
              f'{msg.latency.total_ms:10.2f}')
    if len(results) > rows:
        print(f'  ... {len(results) - rows} more')
    if not results:
        print('no results came back')
        return
    total = np.array([m.latency.total_ms for m in results])
    inference = np.array([m.latency.inference_ms for m in results])
    exits = Counter(m.exit_index for m in results)
    n_exits = results[0].num_exits
    print(f'\n{len(results)} results for {sent} frames sent; backend {results[0].backend}, '
          f'model {results[0].model_id}')
    print(f'latency ms (p50/p90): in node {np.percentile(total, 50):.2f}/'
          f'{np.percentile(total, 90):.2f}, inference {np.percentile(inference, 50):.2f}/'
          f'{np.percentile(inference, 90):.2f}')
    print('exits: ' + ', '.join(f'{k}: {exits.get(k, 0)} ({exits.get(k, 0) / len(results):.0%})'
                                for k in range(n_exits)))
    blocks = np.mean([m.blocks_run / max(m.blocks_total, 1) for m in results])
    print(f'mean share of backbone blocks run: {blocks:.0%}')
    stamps = [stamp_to_ns(m.header.stamp) for m in results]
    judged = [(m.label, truths[s]) for m, s in zip(results, stamps) if s in truths]
    if judged:
        correct = sum(label == truth for label, truth in judged)
        print(f'accuracy against the bag labels: {correct}/{len(judged)} '
              f'({correct / len(judged):.1%})')


if __name__ == '__main__':
    sys.exit(main())
