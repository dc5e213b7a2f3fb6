#!/usr/bin/env python3
# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Benchmark of the classifier node: its overhead over the bare runtime, and its sustainable rate.

One run, side by side, on the same 640x480 rgb8 frames and the same Classifier object:

1. bare runtime: ``classifier.classify(array)`` in a loop;
2. node end to end: a probe node publishes ``sensor_msgs/Image`` over DDS (Fast DDS on
   loopback, shared memory with the profile in config/), the classifier node decodes, classifies
   and publishes ``gfde_msgs/Classification``, the probe receives it; latency = receive time
   minus the stamp written just before publishing. Frames are sent one at a time, alternating
   blocks of (1) and (2) so that both see the same machine load.

Then a rate sweep: frames published at increasing rates for a few seconds each; a rate is
sustained when at least 95% of frames give a result, none is superseded and the frame age does
not grow from the first half of the window to the second. Figures depend on this machine and
its load; the ratio of (2) to (1) is the node's overhead.

Run: ``source tools/env.sh && FASTDDS_DEFAULT_PROFILES_FILE=config/fastdds_large_images.xml
python tools/bench_node.py --bundle model.gfde``.
"""

import argparse
import os
from pathlib import Path
import statistics
import sys
import threading
import time

import numpy as np
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]


def _percentile(values, q):
    return float(np.percentile(np.asarray(values), q)) if values else float('nan')


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--bundle', default='', help='.gfde bundle (default: the embedded one)')
    parser.add_argument('--backend', default='auto')
    parser.add_argument('--threads', type=int, default=0)
    parser.add_argument('--frames', type=int, default=200, help='frames per latency series')
    parser.add_argument('--rates', default='10,20,40,80,160,320',
                        help='camera rates (Hz) of the sweep, comma-separated')
    parser.add_argument('--seconds', type=float, default=3.0, help='duration of each rate')
    args = parser.parse_args(argv)
    os.environ.setdefault('FASTDDS_DEFAULT_PROFILES_FILE',
                          str(REPO / 'config' / 'fastdds_large_images.xml'))
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')

    from gfde_msgs.msg import Classification
    from gfde_perception.bundle import default_bundle_path
    from gfde_perception.ros import parameters as params
    from gfde_perception.ros.conversions import array_to_imgmsg
    from gfde_perception.ros.node import ClassifierNode
    from gfde_perception.runtime import Classifier, RuntimeConfig
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from rclpy.qos import QoSProfile, QoSReliabilityPolicy
    from sensor_msgs.msg import Image

    bundle = args.bundle or str(default_bundle_path())
    if not Path(bundle).is_file():
        print(f'error: no bundle at {bundle}; pass --bundle', file=sys.stderr)
        return 1
    config = RuntimeConfig(backend=args.backend, threads=args.threads, top_k=params.MAX_TOP_K)
    classifier = Classifier(bundle, config)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(8)]

    rclpy.init()
    node = ClassifierNode(classifier, node_name='gfde_bench_classifier',
                          parameter_overrides=[Parameter('qos.depth', value=1)])
    probe = rclpy.create_node('gfde_bench_probe')
    received = {}
    lock = threading.Lock()

    def on_result(msg):
        now = time.time_ns()
        with lock:
            received[msg.frame_seq] = (now, msg)

    reliable = QoSProfile(depth=100, reliability=QoSReliabilityPolicy.RELIABLE)
    probe.create_subscription(Classification, 'classification', on_result, reliable)
    pub = probe.create_publisher(Image, 'image', QoSProfile(
        depth=1, reliability=QoSReliabilityPolicy.BEST_EFFORT))
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    executor.add_node(probe)
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.05)

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()

    def send(frame):
        msg = array_to_imgmsg(frame, 'rgb8')
        msg.header.frame_id = 'bench'
        now = time.time_ns()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now, 1_000_000_000)
        pub.publish(msg)
        return now

    try:
        deadline = time.monotonic() + 30
        while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        # Warm-up round trips (also proves delivery works with this DDS configuration).
        ok = False
        for _ in range(100):
            before = len(received)
            send(frames[0])
            t0 = time.monotonic()
            while len(received) == before and time.monotonic() - t0 < 0.5:
                time.sleep(0.001)
            if len(received) > before:
                ok = True
                if len(received) >= 5:
                    break
        if not ok:
            print('error: no result came back over DDS (is the Fast DDS profile loaded?)',
                  file=sys.stderr)
            return 1

        bare, e2e = [], []
        block = 20
        with tqdm(total=2 * args.frames, desc='latency', unit='frame') as bar:
            for start in range(0, args.frames, block):
                for i in range(start, min(start + block, args.frames)):
                    t = time.perf_counter()
                    classifier.classify(frames[i % len(frames)])
                    bare.append((time.perf_counter() - t) * 1e3)
                    bar.update()
                for i in range(start, min(start + block, args.frames)):
                    with lock:
                        before = len(received)
                    sent = send(frames[i % len(frames)])
                    t0 = time.monotonic()
                    while time.monotonic() - t0 < 2.0:
                        with lock:
                            if len(received) > before:
                                got = received[max(received)][0]
                                break
                        time.sleep(0.0002)
                    else:
                        continue  # lost in transport: not a latency sample
                    e2e.append((got - sent) / 1e6)
                    bar.update()

        print('\n640x480 rgb8, one frame at a time (ms)')
        print(f'{"":28}{"p50":>9}{"p90":>9}{"p99":>9}{"mean":>9}{"n":>6}')
        for name, series in (('bare runtime classify()', bare), ('node end to end (DDS)', e2e)):
            print(f'{name:28}' + ''.join(f'{_percentile(series, q):9.2f}' for q in (50, 90, 99))
                  + f'{statistics.fmean(series):9.2f}{len(series):6d}')
        overhead = _percentile(e2e, 50) - _percentile(bare, 50)
        print(f'node overhead: {overhead:+.2f} ms at p50 '
              f'({_percentile(e2e, 50) / _percentile(bare, 50):.2f}x the bare runtime)')

        print('\ncamera rate sweep (frames published at a fixed rate)')
        print(f'{"rate Hz":>8}{"sent":>7}{"results":>9}{"superseded":>11}'
              f'{"age p50 ms":>12}{"age trend":>11}  sustained')
        best = 0.0
        for rate in [float(r) for r in args.rates.split(',')]:
            snap0 = node.stats.snapshot()
            with lock:
                received.clear()
            n = max(10, int(rate * args.seconds))
            sent_times = []
            t_next = time.perf_counter()
            for i in range(n):
                t_next += 1.0 / rate
                sent_times.append(send(frames[i % len(frames)]))
                delay = t_next - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            time.sleep(0.5)
            snap1 = node.stats.snapshot()
            with lock:
                ages = [(msg.frame_seq, (t - (msg.header.stamp.sec * 1_000_000_000
                                              + msg.header.stamp.nanosec)) / 1e6)
                        for t, msg in received.values()]
            ages.sort()
            results = len(ages)
            superseded = snap1.dropped['superseded'] - snap0.dropped['superseded']
            half = len(ages) // 2
            first = _percentile([a for _, a in ages[:half]], 50)
            second = _percentile([a for _, a in ages[half:]], 50)
            trend = second - first
            sustained = (results >= 0.95 * n and superseded == 0
                         and not trend > max(5.0, 0.5 * first))
            if sustained:
                best = rate
            print(f'{rate:8.0f}{n:7d}{results:9d}{superseded:11d}'
                  f'{_percentile([a for _, a in ages], 50):12.2f}{trend:+11.2f}  '
                  f'{"yes" if sustained else "no"}')
        print(f'\nhighest camera rate sustained without lag: {best:.0f} Hz '
              f'(backend {classifier.backend})')
    finally:
        stop.set()
        spinner.join(5)
        executor.shutdown()
        node.destroy_node()
        probe.destroy_node()
        classifier.close()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
