#!/usr/bin/env python3
# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Benchmark of the classifier node: its own overhead over DDS transport, its rate, and a soak.

One process, the same 640x480 rgb8 frames and the same Classifier object for every contender:

1. bare runtime: ``classifier.classify(array)`` in a loop (no ROS);
2. bare subscriber: a plain rclpy node that receives the image, views it as an array, runs the
   same ``classify`` in its callback and publishes a ``gfde_msgs/Classification`` back: the
   least any ROS classifier does. It subscribes with the node's camera QoS and publishes with
   the node's output QoS, over the same Fast DDS profile;
3. the classifier node, end to end: the same image over DDS, the node's keep-newest queue and
   worker thread, decode, classify, its result message.

A probe node publishes the frames (best effort, depth 1, like a camera driver) and stamps them
just before ``publish()``; latency is the result's arrival minus that stamp. (2) and (3) differ
only by what the node adds, so (3) - (2) is the node's own overhead and (2) - (1) is transport.
The contenders run in blocks of frames, rotating (single frames interleaved would disturb
each other's caches), repeated ``--repeats`` times. Then a rate sweep for (2) and (3): frames
at a fixed rate for a few seconds each; a rate is sustained when >= 95% of frames give a result
and the frame age does not grow from the first half of the window to the second.

The node's counters are read from its ``/diagnostics`` (never from its internals), and
:func:`accounting` checks the identity published = processed + counted drops by reason.

``--soak MINUTES`` instead runs the node alone at ``--soak-rate`` Hz (default 60) and prints, every
``--interval`` seconds, the process RSS, the frame age (lag) and the accounting identity, then
a least-squares trend of RSS and lag over the run.

Run: ``source tools/env.sh && python tools/bench_node.py --threads 1`` (and ``--soak 10``).
"""

import argparse
import os
from pathlib import Path
import statistics
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
from gfde_perception.ros.node import ClassifierNode, params_qos
from gfde_perception.runtime import Classifier, RuntimeConfig
import numpy as np
import psutil
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, QoSReliabilityPolicy
from sensor_msgs.msg import Image
import simplejpeg

REPO = Path(__file__).resolve().parents[1]
FRAME_SHAPE = (480, 640, 3)


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


class Bench:
    """The ROS side of the benchmark: probe, bare subscriber, node, their executors."""

    def __init__(self, classifier, with_bare: bool):
        rclpy.init()
        self.node = ClassifierNode(
            classifier, node_name='gfde_bench_classifier',
            parameter_overrides=[Parameter('diagnostics.period_s', value=0.25)])
        self.probe = rclpy.create_node('gfde_bench_probe')
        self.lock = threading.Lock()
        self.results = {'node': [], 'bare': []}  # (receive ns, frame_id, stamp ns), drained
        self.diagnostics = None  # (monotonic receive time, {key: value})
        reliable = QoSProfile(depth=100, reliability=QoSReliabilityPolicy.RELIABLE)
        camera = QoSProfile(depth=1, reliability=QoSReliabilityPolicy.BEST_EFFORT)
        self.probe.create_subscription(Classification, 'classification',
                                       self._collector('node'), reliable)
        self.probe.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag, 10)
        self.pubs = {'node': self.probe.create_publisher(Image, 'image', camera)}
        nodes = [self.node, self.probe]
        self.bare = None
        if with_bare:
            # The bare subscriber: the node's own camera and output QoS, classify inline.
            self.bare = rclpy.create_node('gfde_bench_bare_subscriber')
            bare_out = self.bare.create_publisher(Classification, 'bare/classification',
                                                  params_qos(params.DEFAULTS, 'output'))

            def on_bare_image(msg):
                result = classifier.classify(imgmsg_to_array(msg))
                bare_out.publish(result_to_msg(result, header=msg.header, top_k=5))

            self.bare.create_subscription(Image, 'bare/image', on_bare_image,
                                          params_qos(params.DEFAULTS, 'qos'))
            self.probe.create_subscription(Classification, 'bare/classification',
                                           self._collector('bare'), reliable)
            self.pubs['bare'] = self.probe.create_publisher(Image, 'bare/image', camera)
            nodes.append(self.bare)
        # Messages built once: a send only writes the stamp and the frame id.
        self.messages = [array_to_imgmsg(frame, 'rgb8')
                         for frame in [camera_like(k) for k in range(8)]]
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
        msg = self.messages[index % len(self.messages)]
        msg.header.frame_id = frame_id
        now = time.time_ns()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now, 1_000_000_000)
        self.pubs[who].publish(msg)
        return now

    def round_trip(self, who, index: int, frame_id: str, timeout: float = 2.0):
        """Send one frame and wait for its result; return the latency in ms (None if lost)."""
        sent = self.send(who, index, frame_id)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for received, got_id, _ in self.drain(who):
                if got_id == frame_id:
                    return (received - sent) / 1e6
            time.sleep(0.0002)
        return None

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
        return self.diagnostics_after(time.monotonic())

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


def _publish_at(bench, who, rate: float, count: int, prefix: str) -> int:
    t_next = time.perf_counter()
    for i in range(count):
        t_next += 1.0 / rate
        bench.send(who, i, f'{prefix}-{i}')
        delay = t_next - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    return count


def rate_sweep(bench, rates, seconds: float, runtime_rate: float):
    """Print, per camera rate, what the bare subscriber and the node deliver; best of each."""
    print('\ncamera rate sweep (frames published at a fixed rate; node counters from '
          '/diagnostics)')
    print(f'{"rate Hz":>8}{"who":>6}{"sent":>7}{"results":>9}{"superseded":>11}{"other drops":>12}'
          f'{"unaccounted":>12}{"age p50 ms":>12}{"age trend":>11}  sustained')
    best = {'bare': 0.0, 'node': 0.0}
    for rate in rates:
        for who in ('bare', 'node'):
            before = bench.quiet_diagnostics()
            bench.drain(who)
            n = max(10, int(rate * seconds))
            _publish_at(bench, who, rate, n, f'sweep-{who}-{rate:g}')
            after = bench.quiet_diagnostics()
            results = sorted(bench.drain(who))
            ages = _ages_ms(results)
            half = len(ages) // 2
            first, second = _percentile(ages[:half], 50), _percentile(ages[half:], 50)
            trend = second - first
            sustained = len(results) >= 0.95 * n and not trend > max(5.0, 0.5 * first)
            if sustained:
                best[who] = max(best[who], rate)
            if who == 'node':
                books = accounting(n, before, after)
                superseded = books['dropped'].get('superseded', 0)
                counts = (f'{superseded:11d}'
                          f'{sum(books["dropped"].values()) - superseded:12d}'
                          f'{books["unaccounted"]:12d}')
            else:  # a bare subscriber counts nothing: what it lost is only sent - results
                counts = f'{"-":>11}{"-":>12}{n - len(results):12d}'
            print(f'{rate:8g}{who:>6}{n:7d}{len(results):9d}{counts}'
                  f'{_percentile(ages, 50):12.2f}{trend:+11.2f}  {"yes" if sustained else "no"}')
    print(f'\nhighest camera rate sustained: bare subscriber {best["bare"]:g} Hz, node '
          f'{best["node"]:g} Hz; bare runtime frame rate {runtime_rate:.0f} Hz '
          f'(node sustains {100 * best["node"] / runtime_rate:.0f}% of it; the sweep only '
          f'tries the listed rates)')


def soak(bench, minutes: float, rate: float, interval: float):
    """Run the node alone at ``rate`` Hz; print RSS, lag and the accounting identity."""
    process = psutil.Process()
    print(f'\nsoak: {minutes:g} min of sending at {rate:g} Hz, a row every {interval:g} s of '
          'sending. At each row sending pauses until the node is quiet (about 0.75 s), so the '
          'identity is read with nothing in flight. RSS of this process (node, classifier, '
          'probe with bounded state); age = result arrival - stamp, over the row')
    print(f'{"t s":>6}{"sent":>8}{"received":>9}{"processed":>10}{"dropped":>9}'
          f'{"unaccounted":>12}{"RSS MB":>9}{"age p50":>9}{"age p99":>9}  drops by reason')
    start_diag = bench.quiet_diagnostics()
    bench.drain('node')
    t0 = time.perf_counter()
    sent, row = 0, 0
    samples = []  # (t s, RSS MB, age p50 ms)
    total = max(1, round(rate * minutes * 60.0))  # minutes of sending, pauses not counted
    while sent < total:
        count = min(max(1, round(rate * interval)), total - sent)
        sent += _publish_at(bench, 'node', rate, count, f'soak-{row}')
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
    print(f'\nidentity at the end: published {books["published"]} = processed '
          f'{books["processed"]} + counted drops {sum(books["dropped"].values())} + '
          f'unaccounted {books["unaccounted"]} (frames that never reached the node\'s callback: '
          f'{books["published"] - books["received"]})')
    # The first row includes allocator and cache warm-up: the trends start at the second.
    kept = samples[1:] if len(samples) > 2 else samples
    times = [t for t, _, _ in kept]
    rss_slope, rss_change = _trend(times, [r for _, r, _ in kept])
    lag_slope, lag_change = _trend(times, [a for _, _, a in kept])
    first_rss = kept[0][1]
    print(f'RSS trend (least squares, rows 2..{len(samples)}): {rss_slope:+.3f} MB/min, '
          f'{rss_change:+.2f} MB over the fit ({100 * rss_change / first_rss:+.2f}% of '
          f'{first_rss:.1f} MB)')
    print(f'lag trend (age p50 per row): {lag_slope:+.3f} ms/min, {lag_change:+.2f} ms over '
          'the fit')


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--bundle', default='', help='.gfde bundle (default: the embedded one)')
    parser.add_argument('--backend', default='auto')
    parser.add_argument('--threads', type=int, default=0)
    parser.add_argument('--frames', type=int, default=200, help='frames per series and repeat')
    parser.add_argument('--repeats', type=int, default=3, help='repeats of the latency series')
    parser.add_argument('--rates', default='10,20,40,80,160,320',
                        help='camera rates (Hz) of the sweep, comma-separated')
    parser.add_argument('--seconds', type=float, default=3.0, help='duration of each rate')
    parser.add_argument('--soak', type=float, default=0.0, metavar='MINUTES',
                        help='run the soak for this many minutes instead of the comparison')
    parser.add_argument('--soak-rate', type=float, default=60.0, help='camera rate of the soak')
    parser.add_argument('--interval', type=float, default=15.0,
                        help='seconds between soak rows')
    args = parser.parse_args(argv)
    # Read by Fast DDS when rclpy.init() creates the participant, not at import.
    os.environ.setdefault('FASTDDS_DEFAULT_PROFILES_FILE',
                          str(REPO / 'config' / 'fastdds_large_images.xml'))
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    bundle = args.bundle or str(default_bundle_path())
    if not Path(bundle).is_file():
        print(f'error: no bundle at {bundle}; pass --bundle', file=sys.stderr)
        return 1
    print(f'load average before: {_loadavg()}')
    config = RuntimeConfig(backend=args.backend, threads=args.threads, top_k=params.MAX_TOP_K)
    classifier = Classifier(bundle, config)
    print(f'backend {classifier.backend}, '
          f'DDS profile {os.environ["FASTDDS_DEFAULT_PROFILES_FILE"]}')
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
            runtime_rate = latency_comparison(bench, classifier, args.frames, args.repeats)
            rate_sweep(bench, [float(r) for r in args.rates.split(',')], args.seconds,
                       runtime_rate)
    finally:
        bench.close()
        classifier.close()
        print(f'load average after: {_loadavg()}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
