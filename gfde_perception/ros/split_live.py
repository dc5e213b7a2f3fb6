# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
One live measurement of split or offloaded inference, run inside a network namespace.

``python -m gfde_perception.ros.split_live --mode MODE ...`` is the robot: it starts the
server as a child process (which inherits the namespace, and so talks to the robot only over the
namespace's shaped loopback), publishes labelled 640x480 rgb8 camera frames one at a time, waits
for each frame's answer and writes one JSON record per frame (end-to-end latency from publishing
the frame to receiving its answer, which side answered, the class) plus the nodes' counters.

Modes (what crosses the link):

* ``split`` / ``split-no-exits``: a :class:`~gfde_perception.ros.split_robot_node.SplitRobotNode`
  in this process, with or without its early exits, sends ``SplitFeatures`` to
  ``split_server_node``;
* ``offload-input``: this process makes the model input (``preprocessing.input_pixels``) and
  sends it PNG-compressed to a ``classifier_node`` on the server;
* ``offload-frame``: the raw camera frame goes to a ``classifier_node`` on the server.

The offload server runs the whole student (exit policy ``final``).

It lives in the ROS shell (it runs nodes); every wait is bounded.
"""

import argparse
import json
from pathlib import Path
import sys
import threading
import time

from gfde_msgs.msg import Classification
from gfde_perception.bundle import load_bundle
from gfde_perception.errors import ConfigError
from gfde_perception.preprocessing import input_pixels
from gfde_perception.recording.labelled_bag import resize
from gfde_perception.ros.conversions import array_to_compressed_imgmsg, array_to_imgmsg
from gfde_perception.ros.split_robot_node import SplitRobotNode
from gfde_perception.runtime.split import SplitRobot
from gfde_perception.split_bundle import load_split_bundle
from gfde_perception.training.data import load_fashion_mnist
from gfde_perception.workspace import start_node, stop_node
import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, QoSReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

MODES = ('split', 'split-no-exits', 'offload-input', 'offload-frame')
FRAME_SIZE = (640, 480)
READY_TIMEOUT_S = 120.0


def camera_frames(count: int, seed: int = 0, root=None) -> tuple:
    """``count`` Fashion-MNIST test images as 640x480 rgb8 frames, with their labels."""
    data = load_fashion_mnist('test', root) if root else load_fashion_mnist('test')
    pick = np.random.default_rng(seed).choice(len(data), count, replace=False)
    frames = []
    for i in pick:
        grey = resize(data.images[i], FRAME_SIZE)
        frames.append(np.repeat(grey[:, :, None], 3, axis=2))
    return frames, [int(data.labels[i]) for i in pick]


def server_command(mode: str, bundle: str, threads: int) -> list:
    """Command line of the server process for ``mode``."""
    if mode.startswith('split'):
        return [sys.executable, '-m', 'gfde_perception.ros.split_server_node', '--ros-args',
                '-p', f'model.bundle:={bundle}', '-p', f'model.threads:={threads}']
    topic = "['image/compressed']" if mode == 'offload-input' else "['image']"
    return [sys.executable, '-m', 'gfde_perception.ros.node', '--ros-args',
            '-p', f'model.bundle:={bundle}', '-p', 'model.backend:=torch',
            '-p', f'model.threads:={threads}', '-p', 'model.warmup:=3',
            '-p', 'model.energy:=none', '-p', f'topics:={topic}',
            # The whole student on the server (no early exits), as the offload rows assume.
            '-p', 'exit.policy:=final',
            '-p', 'qos.reliability:=reliable', '-p', 'qos.depth:=10']


def _wait(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def run(args) -> dict:
    """Run one mode; return the JSON-ready record."""
    split_mode = args.mode.startswith('split')
    frames, labels = camera_frames(args.frames + args.warmup, args.seed)
    server_log = open(Path(args.out).with_suffix('.server.log'), 'w')
    server = start_node(server_command(args.mode, args.server_bundle, args.threads),
                        stdout=server_log)
    rclpy.init()
    nodes = []
    try:
        probe = rclpy.create_node('gfde_split_live')
        nodes.append(probe)
        reliable = QoSProfile(depth=10, reliability=QoSReliabilityPolicy.RELIABLE)
        answers, arrivals = {}, {}
        lock = threading.Lock()

        def on_answer(msg):
            with lock:
                stamp = msg.header.stamp.sec
                arrivals[stamp] = arrivals.get(stamp, 0) + 1
                answers.setdefault(stamp, (time.perf_counter(), msg))
        probe.create_subscription(Classification, 'classification', on_answer, reliable)
        robot_node = None
        if split_mode:
            bundle = load_split_bundle(args.bundle)
            thresholds = None if args.mode == 'split' else (1.0,) * bundle.config.split
            robot_node = SplitRobotNode(
                SplitRobot(bundle, thresholds=thresholds),
                parameter_overrides=[Parameter('deadline_ms', value=args.deadline_ms)])
            nodes.append(robot_node)
            camera = probe.create_publisher(Image, 'image', reliable)
            link_pub = robot_node._features
            spec = bundle.preprocessing
        else:
            topic, kind = (('image/compressed', CompressedImage) if args.mode == 'offload-input'
                           else ('image', Image))
            camera = probe.create_publisher(kind, topic, reliable)
            link_pub = camera
            spec = load_bundle(args.server_bundle).preprocessing
        executor = SingleThreadedExecutor()
        for node in nodes:
            executor.add_node(node)
        stop = threading.Event()

        def spin():
            while not stop.is_set():
                executor.spin_once(timeout_sec=0.05)
        spinner = threading.Thread(target=spin, daemon=True)
        spinner.start()
        if not _wait(lambda: link_pub.get_subscription_count() > 0, READY_TIMEOUT_S):
            raise ConfigError(f'the server did not come up within {READY_TIMEOUT_S:.0f} s')
        records, sent_bytes = [], []
        for i, (frame, label) in enumerate(zip(frames, labels)):
            t_make = time.perf_counter()
            if args.mode == 'offload-input':
                pixels = input_pixels(frame, spec)
                msg = array_to_compressed_imgmsg(pixels[:, :, 0] if spec.channels == 1
                                                 else pixels, 'png')
                payload = len(msg.data)
            else:
                msg = array_to_imgmsg(frame, 'rgb8')
                payload = len(msg.data) if args.mode == 'offload-frame' else None
            robot_ms = (time.perf_counter() - t_make) * 1e3
            msg.header.stamp.sec = i + 1
            sent = time.perf_counter()
            camera.publish(msg)
            got = _wait(lambda: i + 1 in answers, args.frame_timeout_s)
            if i < args.warmup:
                continue
            record = {'frame': i, 'label': label, 'answered': got, 'robot_make_ms': robot_ms,
                      'payload_bytes': payload}
            if got:
                received, answer = answers[i + 1]
                record.update(latency_ms=(received - sent) * 1e3, class_id=answer.class_id,
                              answered_by=answer.answered_by or 'server',
                              correct=answer.class_id == label)
            records.append(record)
            sent_bytes.append(payload)
        time.sleep(0.2)
        with lock:
            duplicates = sum(n - 1 for n in arrivals.values())
        counts = robot_node.snapshot() if robot_node is not None else {}
        stop.set()
        spinner.join(5)
        return {'mode': args.mode, 'frames': len(records), 'records': records,
                'robot_counts': counts, 'duplicates': duplicates}
    finally:
        for node in nodes:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
        stop_node(server)
        server_log.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    parser.add_argument('--mode', choices=MODES, required=True)
    parser.add_argument('--bundle', help='split bundle (split modes)')
    parser.add_argument('--server-bundle', required=True,
                        help='what the server loads: the split bundle, or the student bundle '
                             'for the offload modes')
    parser.add_argument('--frames', type=int, default=20)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--deadline-ms', type=float, default=60000.0)
    parser.add_argument('--frame-timeout-s', type=float, default=60.0)
    parser.add_argument('--out', required=True, help='JSON output file')
    return parser


def main(argv=None) -> int:
    """Entry point (run inside the namespace by tools/bench_split.py and the link test)."""
    args = build_parser().parse_args(argv)
    if args.mode.startswith('split') and not args.bundle:
        print('split modes need --bundle', file=sys.stderr)
        return 2
    result = run(args)
    Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
