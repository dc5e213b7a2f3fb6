#!/usr/bin/env python3
# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Benchmark of the classifier node: its own overhead over DDS transport, its rate, its books.

One process, the same 640x480 rgb8 frames and the same Classifier object for every contender:

1. bare runtime: ``classifier.classify(array)`` in a loop (no ROS);
2. bare subscriber: a plain rclpy node that receives the image, views it as an array, runs the
   same ``classify`` in its callback and publishes a ``gfde_msgs/Classification`` back: the
   least any ROS classifier does. It subscribes with the node's camera QoS and publishes with
   the node's output QoS, over the same Fast DDS profile;
3. the classifier node, end to end: the same image over DDS, the node's keep-newest queue and
   worker thread, decode, classify, its result message.

Latency: a probe node publishes one frame at a time (best effort, depth 1, like a camera
driver), stamped just before ``publish()``; latency is the result's arrival minus that stamp.
(2) and (3) differ only by what the node adds, so (3) - (2) is the node's own overhead and
(2) - (1) is transport. The contenders run in blocks of frames, rotating, repeated
``--repeats`` times.

Floods: an independent camera, this script in another process (``--camera``), publishes at
each of ``--rates`` for ``--seconds`` to the bare subscriber and to the node in turn. Per rate:
results, the node's counters read from its ``/diagnostics`` (never from its internals), and
:func:`accounting`, which checks published = processed + drops by reason (unaccounted must be
0); a rate is sustained when >= 95% of the frames give a result and the frame age does not grow.
The node's throughput under the fastest flood is compared with the bare runtime's frame rate,
timed in blocks just before and after that flood.

``--soak MINUTES`` runs the node alone, fed by the independent camera at ``--soak-rate`` Hz
(default 60), and prints every ``--interval`` seconds of sending the process RSS, the frame
age (lag) and the accounting identity, then least-squares trends of RSS and lag.

``--startup N`` starts the installed node ``N`` times as its own process (the embedded model
or ``--bundle``, warm cache) and times the first result from the process start, with the
node's own log of where the time went.

Run: ``source tools/env.sh && python tools/bench_node.py --threads 1`` (and ``--soak 10``,
``--startup 3``).
"""

import argparse
import os
from pathlib import Path
import re
import statistics
import subprocess
import sys
import threading
import time

import cv2
from diagnostic_msgs.msg import DiagnosticArray
from gfde_msgs.msg import Classification
from gfde_perception.bundle import default_bundle_path
from gfde_perception.image_codec import array_to_compressed, compressed_to_array
from gfde_perception.ros import parameters as params
from gfde_perception.ros.conversions import array_to_imgmsg, imgmsg_to_array, result_to_msg
from gfde_perception.ros.node import ClassifierNode
from gfde_perception.runtime import Classifier, RuntimeConfig
from gfde_perception.workspace import dds_environment, node_command, start_node, stop_node
import numpy as np
import psutil
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, QoSReliabilityPolicy
from sensor_msgs.msg import Image
import simplejpeg

REPO = Path(__file__).resolve().parents[1]
FRAME_SHAPE = (480, 640, 3)
CAMERA_QOS = QoSProfile(depth=1, reliability=QoSReliabilityPolicy.BEST_EFFORT)


def _percentile(values, q):
    return float(np.percentile(np.asarray(values), q)) if len(values) else float('nan')


def _summary(values) -> str:
    """Return p50, p90, p99, mean and n of a latency series, formatted for the tables."""
    mean = statistics.fmean(values) if values else float('nan')
    return (''.join(f'{_percentile(values, q):9.2f}' for q in (50, 90, 99))
            + f'{mean:9.2f}{len(values):7d}')


def _loadavg() -> str:
    return ' '.join(f'{v:.2f}' for v in os.getloadavg())


def accounting(published: int, before: dict, after: dict) -> dict:
    """
    Check that every frame published to the node is processed or counted as dropped by reason.

    :param published: frames the camera (the probe) published in the interval.
    :param before: the node's ``/diagnostics`` key-values at the start of the interval.
    :param after: the same at its end (read once the node has gone quiet).
    :return: ``published``, ``received`` (frames that reached the node's callback),
        ``processed``, ``dropped`` (reason -> count) and ``unaccounted`` (published minus
        processed minus every counted drop; 0 when the identity holds).
    """
    def delta(key):
        return int(float(after.get(key, 0))) - int(float(before.get(key, 0)))

    # Every top-level 'dropped.<reason>' key counts: a reason the node adds later is included.
    reasons = sorted(key.split('.', 1)[1] for key in after
                     if key.startswith('dropped.') and key.count('.') == 1)
    dropped = {reason: delta(f'dropped.{reason}') for reason in reasons}
    processed = delta('frames_processed')
    return {'published': published, 'received': delta('frames_received'),
            'processed': processed, 'dropped': dropped,
            'unaccounted': published - processed - sum(dropped.values())}


def _trend(times_s, values) -> tuple:
    """Return the least-squares slope per minute and the fitted change over the whole run."""
    if len(values) < 2:
        return float('nan'), float('nan')
    slope, intercept = np.polyfit(np.asarray(times_s) / 60.0, np.asarray(values), 1)
    span = (times_s[-1] - times_s[0]) / 60.0
    return float(slope), float(slope * span)


def camera_like(seed: int) -> np.ndarray:
    """Return a 640x480 RGB frame of gradients and sensor noise (compresses like a photo)."""
    rng = np.random.default_rng(seed)
    h, w = FRAME_SHAPE[:2]
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x / w * 255, y / h * 255, (x + y) / (w + h) * 255], -1)
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def compare_jpeg_decoders(frame, repeats: int = 3, block: int = 100):
    """Time the codec's JPEG decode against OpenCV's imdecode on the same 640x480 JPEG."""
    data = array_to_compressed(frame, 'jpeg', quality=90)

    def opencv(buf):
        return cv2.cvtColor(cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_UNCHANGED),
                            cv2.COLOR_BGR2RGB)

    contenders = (('OpenCV imdecode + BGR->RGB (before)', opencv),
                  ('image_codec: simplejpeg strict', lambda buf: compressed_to_array('jpeg', buf)),
                  ('  of which simplejpeg alone', lambda buf: simplejpeg.decode_jpeg(buf)))
    times = {name: [] for name, _ in contenders}
    for _ in range(repeats):
        for name, decode in contenders:
            decode(data)  # warm
            for _ in range(block):
                t = time.perf_counter()
                decode(data)
                times[name].append((time.perf_counter() - t) * 1e3)
    print(f'\nJPEG decode, 640x480 RGB, {len(data)} B, {repeats} blocks of {block} each (ms)')
    print(f'{"":40}{"p50":>9}{"p90":>9}{"p99":>9}{"mean":>9}{"n":>7}')
    for name, _ in contenders:
        print(f'{name:40}{_summary(times[name])}')
    before, after = contenders[0][0], contenders[1][0]
    ratio_p50 = _percentile(times[after], 50) / _percentile(times[before], 50)
    ratio_mean = statistics.fmean(times[after]) / statistics.fmean(times[before])
    print(f'strict decode / OpenCV: {ratio_p50:.2f}x at p50, {ratio_mean:.2f}x mean')


TOPICS = {'node': 'image', 'bare': 'bare/image'}


class FrameSender:
    """Publishes the benchmark's 640x480 rgb8 frames, each stamped just before ``publish()``."""

    def __init__(self, publisher):
        self.publisher = publisher
        # Messages built once: a send only writes the stamp and the frame id.
        self.messages = [array_to_imgmsg(camera_like(k), 'rgb8') for k in range(8)]

    def send(self, index: int, frame_id: str) -> int:
        """Publish frame ``index`` stamped now; return the stamp in ns."""
        msg = self.messages[index % len(self.messages)]
        msg.header.frame_id = frame_id
        now = time.time_ns()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now, 1_000_000_000)
        self.publisher.publish(msg)
        return now

    def send_at(self, rate: float, count: int, prefix: str) -> int:
        """Publish ``count`` frames at ``rate`` Hz (a fixed schedule, no drift); return count."""
        t_next = time.perf_counter()
        for i in range(count):
            t_next += 1.0 / rate
            self.send(i, f'{prefix}-{i}')
            delay = t_next - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        return count


def run_camera(topics) -> int:
    """
    Be the independent camera (``--camera``): publish frames when the parent says so.

    Reads commands on stdin: ``go TOPIC COUNT RATE`` publishes COUNT frames at RATE Hz and
    answers ``sent COUNT``; anything else ends it. Before ``ready`` it waits for a subscriber
    on every topic and sends five frames to each at 10 Hz, so that the node has heard from
    this publisher before anything is counted.
    """
    rclpy.init()
    node = rclpy.create_node('gfde_bench_camera')
    senders = {topic: FrameSender(node.create_publisher(Image, topic, CAMERA_QOS))
               for topic in topics}
    try:
        deadline = time.monotonic() + 60.0
        while not all(s.publisher.get_subscription_count() for s in senders.values()):
            if time.monotonic() > deadline:
                print('error: no subscriber', flush=True)
                return 1
            time.sleep(0.05)
        for topic, sender in senders.items():
            sender.send_at(10.0, 5, f'camera-warm-{topic}')
        print('ready', flush=True)
        for line in sys.stdin:
            words = line.split()
            if len(words) != 4 or words[0] != 'go':
                break
            count = senders[words[1]].send_at(float(words[3]), int(words[2]), 'camera')
            print(f'sent {count}', flush=True)
    finally:
        node.destroy_node()
        rclpy.shutdown()
    return 0


class Camera:
    """The parent's handle on the independent camera process (:func:`run_camera`)."""

    def __init__(self, topics, timeout: float = 90.0):
        argv = [sys.executable, str(Path(__file__).resolve()), '--camera', ','.join(topics)]
        self.process = subprocess.Popen(argv, env=dds_environment(), text=True, bufsize=1,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL)
        self._lines = []
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        self._expect('ready', timeout)

    def _read(self):
        for line in self.process.stdout:
            with self._cond:
                self._lines.append(line.strip())
                self._cond.notify_all()

    def _expect(self, prefix: str, timeout: float) -> str:
        with self._cond:
            ok = self._cond.wait_for(lambda: any(line.startswith(prefix) for line in self._lines)
                                     or self.process.poll() is not None, timeout)
            found = [line for line in self._lines if line.startswith(prefix)]
            self._lines = []
        if not ok or not found:
            raise RuntimeError(f'the camera process did not answer {prefix!r}')
        return found[0]

    def send(self, topic: str, count: int, rate: float) -> int:
        """Have the camera publish ``count`` frames at ``rate`` Hz; return when it has."""
        self.process.stdin.write(f'go {topic} {count} {rate}\n')
        self.process.stdin.flush()
        return int(self._expect('sent', 60.0 + 2 * count / rate).split()[1])

    def close(self):
        """End the camera process (it was started here: stopped by its own handle)."""
        if self.process.poll() is None:
            self.process.stdin.write('quit\n')
            self.process.stdin.close()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)


class Bench:
    """The ROS side of the benchmark: probe, bare subscriber, node, their executors."""

    def __init__(self, classifier, with_bare: bool):
        rclpy.init()
        # The node as deployed: default parameters (diagnostics once a second).
        self.node = ClassifierNode(classifier, node_name='gfde_bench_classifier')
        self.probe = rclpy.create_node('gfde_bench_probe')
        self.lock = threading.Condition()  # notified at each result
        self.results = {'node': [], 'bare': []}  # (receive ns, frame_id, stamp ns), drained
        self.diagnostics = None  # (monotonic receive time, {key: value})
        reliable = QoSProfile(depth=100, reliability=QoSReliabilityPolicy.RELIABLE)
        self.probe.create_subscription(Classification, 'classification',
                                       self._collector('node'), reliable)
        self.probe.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag, 10)
        self.pubs = {'node': self.probe.create_publisher(Image, TOPICS['node'], CAMERA_QOS)}
        nodes = [self.node, self.probe]
        self.bare = None
        if with_bare:
            # The bare subscriber: the node's own camera and output QoS, classify inline.
            self.bare = rclpy.create_node('gfde_bench_bare_subscriber')
            bare_out = self.bare.create_publisher(Classification, 'bare/classification',
                                                  params.qos_profile(params.DEFAULTS, 'output'))

            def on_bare_image(msg):
                result = classifier.classify(imgmsg_to_array(msg))
                bare_out.publish(result_to_msg(result, header=msg.header, top_k=5))

            self.bare.create_subscription(Image, TOPICS['bare'], on_bare_image,
                                          params.qos_profile(params.DEFAULTS, 'qos'))
            self.probe.create_subscription(Classification, 'bare/classification',
                                           self._collector('bare'), reliable)
            self.pubs['bare'] = self.probe.create_publisher(Image, TOPICS['bare'], CAMERA_QOS)
            nodes.append(self.bare)
        self.senders = {who: FrameSender(pub) for who, pub in self.pubs.items()}
        # One executor per node, each on its own thread: the bare subscriber's inline classify
        # cannot hold up the probe, and the node gets what a process of its own would.
        self._stop = threading.Event()
        self._executors, self._threads = [], []
        for ros_node in nodes:
            executor = SingleThreadedExecutor()
            executor.add_node(ros_node)
            thread = threading.Thread(target=self._spin, args=(executor,), daemon=True)
            thread.start()
            self._executors.append(executor)
            self._threads.append(thread)

    def _spin(self, executor):
        while not self._stop.is_set():
            executor.spin_once(timeout_sec=0.05)

    def _collector(self, who):
        def on_result(msg):
            now = time.time_ns()
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            with self.lock:
                self.results[who].append((now, msg.header.frame_id, stamp))
                self.lock.notify_all()
        return on_result

    def _on_diag(self, msg):
        for status in msg.status:
            if status.name.startswith(self.node.get_name()):
                values = {kv.key: kv.value for kv in status.values}
                with self.lock:
                    self.diagnostics = (time.monotonic(), values)

    def drain(self, who) -> list:
        """Return and forget the results received for ``who`` so far."""
        with self.lock:
            got, self.results[who] = self.results[who], []
        return got

    def send(self, who, index: int, frame_id: str) -> int:
        """Publish frame ``index`` to ``who`` stamped now; return the stamp in ns."""
        return self.senders[who].send(index, frame_id)

    def round_trip(self, who, index: int, frame_id: str, timeout: float = 2.0):
        """Send one frame and wait for its result; return the latency in ms (None if lost)."""
        sent = self.send(who, index, frame_id)
        deadline = time.monotonic() + timeout

        def arrived():
            return next((r for r in self.results[who] if r[1] == frame_id), None)

        # Waiting on the condition (no polling): the waiting thread takes no interpreter time
        # from the contenders while their frame is in flight.
        with self.lock:
            got = None
            while got is None and time.monotonic() < deadline:
                self.lock.wait(max(0.0, deadline - time.monotonic()))
                got = arrived()
            self.results[who] = []
        return None if got is None else (got[0] - sent) / 1e6

    def diagnostics_after(self, t0: float, timeout: float = 5.0) -> dict:
        """Return the node's first /diagnostics values received after monotonic time ``t0``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                got = self.diagnostics
            if got is not None and got[0] > t0:
                return got[1]
            time.sleep(0.01)
        raise RuntimeError('no /diagnostics from the node')

    def quiet_diagnostics(self, settle_s: float = 0.5) -> dict:
        """Wait until frames in flight are done, then return fresh diagnostics."""
        time.sleep(settle_s)
        for _ in range(20):  # bounded: a node that never settles is reported as it is
            values = self.diagnostics_after(time.monotonic())
            if int(float(values.get('frames_in_flight', 0))) == 0:
                break
        return values

    def wait_ready(self, timeout: float = 30.0) -> bool:
        """Wait for the subscriptions and one round trip per contender."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(pub.get_subscription_count() > 0 for pub in self.pubs.values()):
                break
            time.sleep(0.05)
        for who in self.pubs:
            if not any(self.round_trip(who, k, f'warm-{who}-{k}', 0.5) is not None
                       for k in range(40)):
                return False
            for k in range(10):
                self.round_trip(who, k, f'warm2-{who}-{k}', 0.5)
        return True

    def close(self):
        """Stop the executors and destroy the nodes."""
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        for executor in self._executors:
            executor.shutdown()
        self.node.destroy_node()
        if self.bare is not None:
            self.bare.destroy_node()
        self.probe.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


def latency_comparison(bench, classifier, frames: int, repeats: int, block: int = 20) -> float:
    """Print the three latency series and the node's overhead; return the bare frame rate."""
    arrays = [camera_like(k) for k in range(8)]
    series = {'runtime': [], 'bare': [], 'node': []}
    p50_gaps = []
    lost = {'bare': 0, 'node': 0}
    for repeat in range(repeats):
        this = {'bare': [], 'node': []}
        for start in range(0, frames, block):
            indices = range(start, min(start + block, frames))
            for i in indices:
                t = time.perf_counter()
                classifier.classify(arrays[i % len(arrays)])
                series['runtime'].append((time.perf_counter() - t) * 1e3)
            for who in ('bare', 'node'):
                for i in indices:
                    ms = bench.round_trip(who, i, f'lat-{who}-{repeat}-{i}')
                    if ms is None:
                        lost[who] += 1
                    else:
                        this[who].append(ms)
        for who in this:
            series[who] += this[who]
        p50_gaps.append(_percentile(this['node'], 50) - _percentile(this['bare'], 50))
    print(f'\n640x480 rgb8, one frame at a time, {repeats} repeats of {frames} frames in blocks '
          f'of {block} (ms)')
    print(f'{"":44}{"p50":>9}{"p90":>9}{"p99":>9}{"mean":>9}{"n":>7}')
    for name, key in (('bare runtime classify()', 'runtime'),
                      ('bare subscriber (DDS + classify + result)', 'bare'),
                      ('classifier node end to end (DDS)', 'node')):
        print(f'{name:44}{_summary(series[key])}')
    bare, node, runtime = series['bare'], series['node'], series['runtime']
    print(f'lost in transport: bare subscriber {lost["bare"]}, node {lost["node"]}')
    print(f'transport and message handling (bare subscriber - bare runtime): '
          f'{_percentile(bare, 50) - _percentile(runtime, 50):+.2f} ms p50, '
          f'{statistics.fmean(bare) - statistics.fmean(runtime):+.2f} ms mean')
    print(f"node's own overhead (node - bare subscriber): "
          f'{_percentile(node, 50) - _percentile(bare, 50):+.2f} ms p50 '
          f'(median over repeats {statistics.median(p50_gaps):+.2f}, per repeat '
          f'{" ".join(f"{g:+.2f}" for g in p50_gaps)}), '
          f'{statistics.fmean(node) - statistics.fmean(bare):+.2f} ms mean, '
          f'{_percentile(node, 99) - _percentile(bare, 99):+.2f} ms p99')
    return 1000.0 / statistics.fmean(runtime)


def _ages_ms(results) -> list:
    return [(received - stamp) / 1e6 for received, _, stamp in results]


def runtime_rate(classifier, frames: int = 100) -> float:
    """Return the bare runtime's frames per second over one block of ``frames`` frames."""
    arrays = [camera_like(k) for k in range(8)]
    t = time.perf_counter()
    for i in range(frames):
        classifier.classify(arrays[i % len(arrays)])
    return frames / (time.perf_counter() - t)


def flood(bench, camera, who: str, rate: float, seconds: float) -> dict:
    """Have the independent camera send to ``who`` at ``rate`` Hz; return what came of it."""
    before = bench.quiet_diagnostics()
    bench.drain(who)
    count = max(10, int(rate * seconds))
    t0 = time.perf_counter()
    sent = camera.send(TOPICS[who], count, rate)
    duration = time.perf_counter() - t0
    after = bench.quiet_diagnostics()
    results = sorted(bench.drain(who))
    ages = _ages_ms(results)
    half = len(ages) // 2
    first, second = _percentile(ages[:half], 50), _percentile(ages[half:], 50)
    return {'sent': sent, 'results': len(results), 'duration': duration, 'ages': ages,
            'trend': second - first, 'first': first,
            'books': accounting(sent, before, after) if who == 'node' else None}


def flood_sweep(bench, classifier, rates, seconds: float):
    """Print, per camera rate, what the bare subscriber and the node deliver, and the books."""
    camera = Camera(list(TOPICS.values()))
    print(f'\nfloods from an independent camera process (best effort, depth 1), {seconds:g} s '
          'per rate; node counters from /diagnostics')
    print(f'{"rate Hz":>8}{"who":>6}{"sent":>7}{"results":>9}{"res/s":>8}{"superseded":>11}'
          f'{"lost":>6}{"other":>7}{"unaccounted":>12}{"age p50 ms":>12}{"age trend":>11}'
          '  sustained')
    best = {'bare': 0.0, 'node': 0.0}
    top = {}
    try:
        for rate in rates:
            for who in ('bare', 'node'):
                if rate == max(rates) and who == 'node':
                    before_rate = runtime_rate(classifier)
                got = flood(bench, camera, who, rate, seconds)
                if rate == max(rates):
                    top[who] = got
                    if who == 'node':
                        top['runtime'] = (before_rate + runtime_rate(classifier)) / 2
                sustained = (got['results'] >= 0.95 * got['sent']
                             and not got['trend'] > max(5.0, 0.5 * got['first']))
                if sustained:
                    best[who] = max(best[who], rate)
                books = got['books']
                if books is not None:
                    dropped = books['dropped']
                    superseded = dropped.get('superseded', 0)
                    lost = dropped.get('lost_before_callback', 0)
                    other = sum(dropped.values()) - superseded - lost
                    counts = f'{superseded:11d}{lost:6d}{other:7d}{books["unaccounted"]:12d}'
                else:  # a bare subscriber counts nothing: what it lost is only sent - results
                    counts = f'{"-":>11}{"-":>6}{"-":>7}{got["sent"] - got["results"]:12d}'
                print(f'{rate:8g}{who:>6}{got["sent"]:7d}{got["results"]:9d}'
                      f'{got["results"] / got["duration"]:8.1f}{counts}'
                      f'{_percentile(got["ages"], 50):12.2f}{got["trend"]:+11.2f}  '
                      f'{"yes" if sustained else "no"}', flush=True)
    finally:
        camera.close()
    print(f'\nhighest camera rate sustained: bare subscriber {best["bare"]:g} Hz, node '
          f'{best["node"]:g} Hz (the sweep only tries the listed rates)')
    node, bare = top['node'], top['bare']
    node_rate = node['results'] / node['duration']
    print(f'throughput under the {max(rates):g} Hz flood: node {node_rate:.1f} results/s = '
          f'{100 * node_rate / top["runtime"]:.1f}% of the bare runtime\'s '
          f'{top["runtime"]:.1f} frames/s (timed just before and after); bare subscriber '
          f'{bare["results"] / bare["duration"]:.1f} results/s')
    if max(rates) < top['runtime']:
        print('  (the fastest flood is slower than the bare runtime: it does not saturate the '
              'node, so this ratio is bounded by the camera; add a faster rate)')


def soak(bench, minutes: float, rate: float, interval: float):
    """Feed the node from the independent camera at ``rate`` Hz; print RSS, lag, the books."""
    process = psutil.Process()
    camera = Camera([TOPICS['node']])
    print(f'\nsoak: {minutes:g} min of sending at {rate:g} Hz from an independent camera '
          f'process, a row every {interval:g} s of sending. At each row sending pauses until '
          'the node is quiet (about 1-2 s), so the identity is read with nothing in flight. '
          'RSS of this process (node, classifier, probe with bounded state); age = result '
          'arrival - stamp, over the row')
    print(f'{"t s":>6}{"sent":>8}{"received":>9}{"processed":>10}{"dropped":>9}'
          f'{"unaccounted":>12}{"RSS MB":>9}{"age p50":>9}{"age p99":>9}  drops by reason')
    start_diag = bench.quiet_diagnostics()
    bench.drain('node')
    t0 = time.perf_counter()
    sent, row = 0, 0
    samples = []  # (t s, RSS MB, age p50 ms)
    total = max(1, round(rate * minutes * 60.0))  # minutes of sending, pauses not counted
    try:
        while sent < total:
            count = min(max(1, round(rate * interval)), total - sent)
            sent += camera.send(TOPICS['node'], count, rate)
            books = accounting(sent, start_diag, bench.quiet_diagnostics())
            ages = _ages_ms(bench.drain('node'))
            rss = process.memory_info().rss / 2**20
            t = time.perf_counter() - t0
            samples.append((t, rss, _percentile(ages, 50)))
            reasons = ' '.join(f'{k}={v}' for k, v in books['dropped'].items() if v)
            print(f'{t:6.0f}{sent:8d}{books["received"]:9d}{books["processed"]:10d}'
                  f'{sum(books["dropped"].values()):9d}{books["unaccounted"]:12d}{rss:9.1f}'
                  f'{_percentile(ages, 50):9.2f}{_percentile(ages, 99):9.2f}  {reasons}',
                  flush=True)
            row += 1
    finally:
        camera.close()
    print(f'\nidentity at the end: published {books["published"]} = processed '
          f'{books["processed"]} + counted drops {sum(books["dropped"].values())} + '
          f'unaccounted {books["unaccounted"]}')
    # The first row includes allocator and cache warm-up: the trends start at the second.
    kept = samples[1:] if len(samples) > 2 else samples
    times = [t for t, _, _ in kept]
    rss_slope, rss_change = _trend(times, [r for _, r, _ in kept])
    lag_slope, lag_change = _trend(times, [a for _, _, a in kept])
    first_rss = kept[0][1]
    print(f'RSS: {samples[0][1]:.1f} MB at the first row, {samples[-1][1]:.1f} MB at the last '
          f'({100 * (samples[-1][1] - samples[0][1]) / samples[0][1]:+.2f}%)')
    print(f'RSS trend (least squares, rows 2..{len(samples)}): {rss_slope:+.3f} MB/min, '
          f'{rss_change:+.2f} MB over the fit ({100 * rss_change / first_rss:+.2f}% of '
          f'{first_rss:.1f} MB)')
    print(f'lag trend (age p50 per row): {lag_slope:+.3f} ms/min, {lag_change:+.2f} ms over '
          'the fit')


STARTUP_LINES = {
    'loaded': re.compile(r'loaded in ([0-9.]+) s \((.*)\)'),
    'ready': re.compile(r'classifier ready ([0-9.]+) s after the process started'),
}


def startup(runs: int, bundle: str, timeout: float = 120.0):
    """Start the node as its own process ``runs`` times; time its first result."""
    rclpy.init()
    probe = rclpy.create_node('gfde_bench_startup_probe')
    arrived = []
    probe.create_subscription(Classification, 'classification',
                              lambda msg: arrived.append(time.monotonic()),
                              QoSProfile(depth=10, reliability=QoSReliabilityPolicy.RELIABLE))
    sender = FrameSender(probe.create_publisher(Image, TOPICS['node'], CAMERA_QOS))
    executor = SingleThreadedExecutor()
    executor.add_node(probe)
    params_given = {'model.bundle': bundle} if bundle else {}
    print(f'\nstart-up: {runs} starts of the node process (python -m gfde_perception.ros.node, '
          f'{"bundle " + bundle if bundle else "the embedded model"}, default parameters); a '
          'camera sends a frame every 20 ms from before the start; time = first result - '
          'process start')
    print(f'{"run":>4}{"first result s":>16}{"ready s":>9}{"model load s":>14}  load parts')
    try:
        for run in range(runs):
            arrived.clear()
            log_path = Path(os.environ.get('TMPDIR', '/tmp')) / f'gfde_bench_startup_{run}.log'
            with open(log_path, 'w', encoding='utf-8') as log:
                t0 = time.monotonic()
                process = start_node(node_command(params_given), stdout=log)
                try:
                    while not arrived and time.monotonic() - t0 < timeout:
                        sender.send(0, f'startup-{run}')
                        executor.spin_once(timeout_sec=0.02)
                finally:
                    stop_node(process)
            text = log_path.read_text(encoding='utf-8', errors='replace')
            loaded = STARTUP_LINES['loaded'].search(text)
            ready = STARTUP_LINES['ready'].search(text)
            first = f'{arrived[0] - t0:16.2f}' if arrived else f'{"none":>16}'
            print(f'{run:4d}{first}{float(ready.group(1)) if ready else float("nan"):9.2f}'
                  f'{float(loaded.group(1)) if loaded else float("nan"):14.2f}  '
                  f'{loaded.group(2) if loaded else "(no load line in the log)"}', flush=True)
    finally:
        executor.shutdown()
        probe.destroy_node()
        rclpy.shutdown()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--bundle', default='', help='.gfde bundle (default: the embedded one)')
    parser.add_argument('--backend', default='auto')
    parser.add_argument('--threads', type=int, default=0)
    parser.add_argument('--frames', type=int, default=200, help='frames per series and repeat')
    parser.add_argument('--repeats', type=int, default=3, help='repeats of the latency series')
    parser.add_argument('--rates', default='20,60,120,200,400',
                        help='camera rates (Hz) of the floods, comma-separated')
    parser.add_argument('--seconds', type=float, default=5.0, help='duration of each flood')
    parser.add_argument('--soak', type=float, default=0.0, metavar='MINUTES',
                        help='run the soak for this many minutes instead of the comparison')
    parser.add_argument('--soak-rate', type=float, default=60.0, help='camera rate of the soak')
    parser.add_argument('--interval', type=float, default=15.0,
                        help='seconds between soak rows')
    parser.add_argument('--startup', type=int, default=0, metavar='RUNS',
                        help='time the node process start-up this many times instead')
    parser.add_argument('--camera', default='', help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args(argv)
    # Read by Fast DDS when rclpy.init() creates the participant, not at import.
    os.environ.update(dds_environment())
    if args.camera:
        return run_camera(args.camera.split(','))
    bundle = args.bundle or str(default_bundle_path())
    if not Path(bundle).is_file():
        print(f'error: no bundle at {bundle}; pass --bundle', file=sys.stderr)
        return 1
    print(f'load average before: {_loadavg()}')
    if args.startup:
        startup(args.startup, args.bundle)
        print(f'load average after: {_loadavg()}')
        return 0
    config = RuntimeConfig(backend=args.backend, threads=args.threads, top_k=params.MAX_TOP_K)
    classifier = Classifier(bundle, config)
    print(f'backend {classifier.backend}, '
          f'DDS profile {os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE", "none")}')
    bench = Bench(classifier, with_bare=not args.soak)
    try:
        if not bench.wait_ready():
            print('error: no result came back over DDS (is the Fast DDS profile loaded?)',
                  file=sys.stderr)
            return 1
        if args.soak:
            soak(bench, args.soak, args.soak_rate, args.interval)
        else:
            compare_jpeg_decoders(camera_like(0))
            latency_comparison(bench, classifier, args.frames, args.repeats)
            flood_sweep(bench, classifier, [float(r) for r in args.rates.split(',')],
                        args.seconds)
    finally:
        bench.close()
        classifier.close()
        print(f'load average after: {_loadavg()}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
