#!/usr/bin/env python3
# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Split inference against running everything on the robot and against offloading: one run.

Measures, for the split bundle(s) and the unsplit student they replace:

1. bytes per frame: the raw 640x480 rgb8 frame, the model input as PNG and as JPEG (q90), the
   bottleneck codes, and each as a serialised DDS message (CDR);
2. accuracy of every mode on the Fashion-MNIST test set (model input from the 28x28 originals,
   as in training);
3. robot-side compute (MACs of linear and convolution layers, plus the global filters' FFT
   estimate) and latency against the full student: one process, one torch thread, batch 1,
   640x480 frames with preprocessing, contenders timed in rotating blocks, three repeats,
   medians (docs/BENCHMARKING.md's protocol);
4. end-to-end latency against link rate, computed from (3) plus bytes / rate plus the server
   time, and measured with the real nodes over a shaped link (``--live``: a network namespace
   with tc tbf, DDS over UDP only) for all on the robot, offload of the frame, offload of the
   model input, split without exits and split with exits; the break-even rates;
5. a larger colour input (224x224 RGB, one photo shipped with matplotlib) where the bytes of the
   model input are large: bytes and compute only (no labelled colour data set here).

    nice -n 5 python tools/bench_split.py --live --out docs/split   # as root, for --live

Writes ``bench.json``, ``bench.md`` and ``split_latency.png`` under ``--out``.
"""

import argparse
import itertools
import json
import os
from pathlib import Path
import subprocess
import sys
import tempfile
import time

from gfde_perception.bundle import default_bundle_path, load_bundle
from gfde_perception.evaluation.shaped_link import link_unavailable, ShapedLink
from gfde_perception.feature_codec import packed_size
from gfde_perception.gating import GateConfig
from gfde_perception.image_codec import array_to_compressed, compressed_to_array
from gfde_perception.models import build_model
from gfde_perception.models.flops import filter_macs
from gfde_perception.models.layers import GlobalFilter
from gfde_perception.models.split import (
    BottleneckConfig, probe_features, SplitConfig, SplitModel)
from gfde_perception.preprocessing import input_pixels, preprocess, preprocess_batch
from gfde_perception.recording.labelled_bag import resize
from gfde_perception.runtime import Classifier, RuntimeConfig
from gfde_perception.runtime.policies import FinalExitPolicy
from gfde_perception.runtime.split import SplitRobot, SplitServer
from gfde_perception.split_bundle import default_split_bundle_path, load_split_bundle
from gfde_perception.training.calibration import cascade_report
from gfde_perception.training.data import load_fashion_mnist
from gfde_perception.training.split import evaluate_split, split_outputs
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
RAW_FRAME = (480, 640, 3)
MODES = ('all on robot', 'offload frame', 'offload input (PNG)', 'split without exits',
         'split with exits')


# --- compute ---------------------------------------------------------------------------------

def count_macs(fn, *inputs) -> int:
    """Count the MACs of linear and convolution layers (and GFNet filters) that ``fn`` runs."""
    total = [0]

    def hook(module, args, output):
        if isinstance(module, torch.nn.Linear):
            total[0] += output.numel() // output.shape[-1] * module.in_features \
                * module.out_features
        elif isinstance(module, torch.nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            total[0] += output.numel() * module.in_channels // module.groups * k
        elif isinstance(module, GlobalFilter):
            x = args[0]  # (B, N, C)
            side = int(round(x.shape[1] ** 0.5))
            total[0] += filter_macs(x.shape[2], side, 'fft')

    handles = [m.register_forward_hook(hook) for m in _modules(fn)]
    try:
        with torch.inference_mode():
            fn(*inputs)
    finally:
        for h in handles:
            h.remove()
    return total[0]


def _modules(fn):
    owner = getattr(fn, '__self__', None)
    modules = owner.modules() if isinstance(owner, torch.nn.Module) else []
    return [m for m in modules
            if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d, GlobalFilter))]


def robot_macs(model: SplitModel, x) -> dict:
    """Count the MACs of the full student, of an offloaded frame's robot side, of each exit."""
    head = model.head

    def full(inp):
        for segment in head.segments:
            inp, pooled = segment(inp)
        return head.exit_heads[-1](pooled)

    def robot(inp):
        features, _ = model.run_robot(inp)
        return model.encode(features)

    def exit_k(inp, k):
        for segment in list(head.segments)[:k + 1]:
            inp, pooled = segment(inp)
        return head.exit_heads[k](pooled)

    return {'full': count_macs(_bound(head, full), x),
            'robot_offloaded': count_macs(_bound(model, robot), x),
            'robot_exit': [count_macs(_bound(head, lambda inp, k=k: exit_k(inp, k)), x)
                           for k in range(model.config.split)]}


class _bound:
    """A callable that names the module whose layers :func:`count_macs` hooks."""

    def __init__(self, module, fn):
        self.__self__ = module
        self.fn = fn

    def __call__(self, *args):
        return self.fn(*args)


# --- data ------------------------------------------------------------------------------------

def test_set(limit: int, seed: int = 0):
    data = load_fashion_mnist('test')
    if limit and limit < len(data):
        keep = np.sort(np.random.default_rng(seed).choice(len(data), limit, replace=False))
        data = data.subset(keep)
    return data


def camera_frame(image: np.ndarray) -> np.ndarray:
    grey = resize(image, (RAW_FRAME[1], RAW_FRAME[0]))
    return np.repeat(grey[:, :, None], 3, axis=2)


def input_bytes(frames, spec) -> dict:
    """Mean encoded size of the model input, and the JPEG-decoded inputs."""
    png, jpeg = [], []
    for frame in frames:
        pixels = input_pixels(frame, spec)
        pixels = pixels[:, :, 0] if spec.channels == 1 else pixels
        png.append(len(array_to_compressed(pixels, 'png')))
        jpeg.append(len(array_to_compressed(pixels, 'jpeg', 90)))
    return {'png': float(np.mean(png)), 'jpeg': float(np.mean(jpeg))}


def message_sizes(split_bundle, frames) -> dict:
    """Mean serialised (CDR) size of the message each mode sends over the link."""
    try:
        from rclpy.serialization import serialize_message

        from gfde_perception.ros.conversions import (
            array_to_compressed_imgmsg, array_to_imgmsg, packet_to_featuresmsg)
    except ImportError:
        return {}
    spec = split_bundle.preprocessing
    robot = SplitRobot(split_bundle, thresholds=(1.0,) * split_bundle.config.split)
    sizes = {'frame': [], 'input_png': [], 'input_jpeg': [], 'features': []}
    for frame in frames:
        pixels = input_pixels(frame, spec)
        pixels = pixels[:, :, 0] if spec.channels == 1 else pixels
        sizes['frame'].append(len(serialize_message(array_to_imgmsg(frame, 'rgb8'))))
        for fmt in ('png', 'jpeg'):
            msg = array_to_compressed_imgmsg(pixels, fmt)
            sizes[f'input_{fmt}'].append(len(serialize_message(msg)))
        msg = packet_to_featuresmsg(robot.process(frame).packet)
        sizes['features'].append(len(serialize_message(msg)))
    return {k: float(np.mean(v)) for k, v in sizes.items()}


# --- accuracy --------------------------------------------------------------------------------

def accuracy_table(split_bundle, student_bundle, data) -> dict:
    """Accuracy (fractions) of every mode on ``data``."""
    model = split_bundle.build()
    outputs = split_outputs(model, data, split_bundle.preprocessing)
    acc = evaluate_split(outputs, data.labels, split_bundle.gate, student_bundle.gate)
    # The model input sent as JPEG: decoded on the server, then the unsplit student (final).
    spec = student_bundle.preprocessing
    student = student_bundle.build_model()
    decoded = [compressed_to_array('jpeg', array_to_compressed(im, 'jpeg', 90))
               for im in data.images]
    with torch.inference_mode():
        logits = student(torch.from_numpy(preprocess_batch(decoded, spec))).logits.numpy()
    acc['offload_input_jpeg'] = float((logits.argmax(1) == data.labels).mean())
    acc['n'] = len(data)
    return acc


# --- latency ---------------------------------------------------------------------------------

def time_blocks(contenders: dict, frames, block: int, repeats: int) -> dict:
    """Median per-call milliseconds of each contender, timed in rotating blocks."""
    samples = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            for i in range(block):
                frame = frames[i % len(frames)]
                t0 = time.perf_counter()
                fn(frame)
                samples[name].append((time.perf_counter() - t0) * 1e3)
    return {name: {'p50': float(np.median(v)), 'mean': float(np.mean(v)), 'n': len(v)}
            for name, v in samples.items()}


def latency_table(split_bundle, student_bundle, frames, block, repeats) -> dict:
    config = RuntimeConfig(backend='torch', schedule='sequential', exit_workers=0, warmup=5,
                           threads=1, energy='none', head_impl='numpy')
    with Classifier(student_bundle, config) as exits, \
            Classifier(student_bundle, config, policy=FinalExitPolicy()) as final:
        split = split_bundle.config.split
        robot = SplitRobot(split_bundle)
        robot_all = SplitRobot(split_bundle, thresholds=(1.0,) * split)
        server = SplitServer(split_bundle)
        packets = [robot_all.process(f).packet for f in frames[:8]]
        spec = student_bundle.preprocessing

        def encode(frame, fmt):
            pixels = input_pixels(frame, spec)
            return array_to_compressed(pixels[:, :, 0] if spec.channels == 1 else pixels, fmt)
        small = itertools.cycle([input_pixels(f, spec) for f in frames[:8]])
        packets = itertools.cycle(packets)
        contenders = {
            'student with exits (robot)': exits.classify,
            'student final only': final.classify,
            'split robot side, offloaded frame': robot_all.process,
            'split robot side, with exits': robot.process,
            'model input to PNG': lambda f: encode(f, 'png'),
            'model input to JPEG': lambda f: encode(f, 'jpeg'),
            'server: split tail': lambda f: server.process(next(packets)),
            'server: student on the model input': lambda f: final.classify(next(small)),
        }
        for fn in contenders.values():  # warm-up outside the timed blocks
            for f in frames[:5]:
                fn(f)
        return time_blocks(contenders, frames, block, repeats)


# --- end-to-end model and break-even -------------------------------------------------------

def e2e_model(lat, sizes, bytes_, offload_rate, server_speedup: float = 1.0) -> dict:
    """
    Per mode: fixed milliseconds, bytes on the link and the share of frames that send them.

    :param server_speedup: the server's compute time is the time measured here divided by it
        (1 = a server as fast as this CPU).
    """
    robot = lat['student with exits (robot)']['mean']
    server_student = lat['server: student on the model input']['mean'] / server_speedup
    split_robot = lat['split robot side, offloaded frame']['mean']
    tail = lat['server: split tail']['mean'] / server_speedup
    exits_robot = lat['split robot side, with exits']['mean']
    frame_bytes = sizes.get('frame', bytes_['raw'])
    return {
        'all on robot': {'fixed_ms': robot, 'bytes': 0, 'share': 0.0},
        'offload frame': {'fixed_ms': server_student, 'bytes': frame_bytes, 'share': 1.0},
        'offload input (PNG)': {'fixed_ms': lat['model input to PNG']['mean'] + server_student,
                                'bytes': sizes.get('input_png', bytes_['input_png']),
                                'share': 1.0},
        'split without exits': {'fixed_ms': split_robot + tail,
                                'bytes': sizes.get('features', bytes_['features']),
                                'share': 1.0},
        # Mean over frames: every frame pays the robot side, offloaded ones the tail and link.
        'split with exits': {'fixed_ms': exits_robot + offload_rate * tail,
                             'bytes': sizes.get('features', bytes_['features']),
                             'share': offload_rate},
    }


def e2e_ms(entry, rate_mbit) -> float:
    return entry['fixed_ms'] + entry['share'] * entry['bytes'] * 8 / (rate_mbit * 1e3)


def break_even(a, b) -> str:
    """Where mode ``b`` has a lower mean latency than mode ``a``, in link rate."""
    # fixed_a + bits_a / R = fixed_b + bits_b / R, bits in kbit so that R is in Mbit/s.
    bits_a = a['share'] * a['bytes'] * 8 / 1e3
    bits_b = b['share'] * b['bytes'] * 8 / 1e3
    dfix = a['fixed_ms'] - b['fixed_ms']
    dbits = bits_b - bits_a
    if dbits == 0:
        return 'always faster' if dfix > 0 else 'never faster'
    if dbits > 0:
        return f'faster above {dbits / dfix:.3g} Mbit/s' if dfix > 0 else 'never faster'
    return 'always faster' if dfix >= 0 else f'faster below {dbits / dfix:.3g} Mbit/s'


# --- live ------------------------------------------------------------------------------------

def live_runs(split_path, student_path, rates, frames, frame_limit_bytes, out_dir) -> dict:
    """Mean measured end-to-end latency per (mode, rate) over a shaped link."""
    env = dict(os.environ, FASTDDS_DEFAULT_PROFILES_FILE=str(REPO / 'config' /
                                                             'fastdds_udp_only.xml'),
               ROS_AUTOMATIC_DISCOVERY_RANGE='SUBNET', PYTHONUNBUFFERED='1')
    live_modes = {'split with exits': 'split', 'split without exits': 'split-no-exits',
                  'offload input (PNG)': 'offload-input', 'offload frame': 'offload-frame'}
    results = {}
    for rate in rates:
        with ShapedLink(rate) as link:
            for name, mode in live_modes.items():
                n = frames
                if mode == 'offload-frame':
                    # A 900 KB frame takes ~7 s per Mbit/s: a few frames tell enough there.
                    n = max(2, min(frames, int(frame_limit_bytes * rate / 1e6)))
                out = Path(out_dir) / f'live_{mode}_{rate:g}.json'
                argv = link.wrap([sys.executable, '-m', 'gfde_perception.ros.split_live',
                                  '--mode', mode, '--bundle', str(split_path),
                                  '--server-bundle',
                                  str(split_path if mode.startswith('split') else student_path),
                                  '--frames', str(n), '--warmup', '1', '--out', str(out),
                                  '--frame-timeout-s', '120'])
                done = subprocess.run(argv, env=env, capture_output=True, text=True,
                                      timeout=1800)
                if done.returncode != 0:
                    print(done.stderr[-2000:], file=sys.stderr)
                    results[f'{name}@{rate:g}'] = None
                    continue
                data = json.loads(out.read_text())
                lat = [r['latency_ms'] for r in data['records'] if r['answered']]
                results[f'{name}@{rate:g}'] = {
                    'mean_ms': float(np.mean(lat)) if lat else None,
                    'p50_ms': float(np.median(lat)) if lat else None, 'frames': len(lat),
                    'duplicates': data['duplicates'],
                    'answered_by': {s: sum(r.get('answered_by') == s for r in data['records'])
                                    for s in ('robot', 'server', 'robot-fallback')}}
                print(f'live {name} @ {rate:g} Mbit/s: {results[f"{name}@{rate:g}"]}',
                      file=sys.stderr)
    return results


# --- larger colour input ---------------------------------------------------------------------

def colour_config(photo_path) -> dict:
    """Bytes and compute of a 224x224 RGB GFNet-Ti split (untrained: no accuracy)."""
    import cv2

    photo = cv2.cvtColor(cv2.imread(str(photo_path)), cv2.COLOR_BGR2RGB)
    model = build_model('gfnet-ti', num_classes=10).eval()
    shape = probe_features(model, (3, 224, 224), 1)
    cfg = SplitConfig(model.config, 1, (3, 224, 224), shape,
                      bottleneck=BottleneckConfig(channels=8, bits=4, stride=1, hidden=128))
    split = SplitModel(cfg).eval()
    split.head.load_state_dict(model.state_dict())
    x = torch.randn(1, 3, 224, 224)
    macs = robot_macs(split, x)
    pixels = cv2.resize(photo, (224, 224), interpolation=cv2.INTER_AREA)
    return {
        'model': 'gfnet-ti (224x224 RGB, 12 blocks, exits after 3/6/9), split after segment 0',
        'features': shape.to_dict(), 'code_shape': list(cfg.code_shape),
        'bytes': {'raw_frame': int(np.prod(RAW_FRAME)), 'input_raw': 224 * 224 * 3,
                  'input_png': len(array_to_compressed(pixels, 'png')),
                  'input_jpeg': len(array_to_compressed(pixels, 'jpeg', 90)),
                  'features_float32': shape.numel * 4,
                  'bottleneck': packed_size(int(np.prod(cfg.code_shape)), 4)},
        'macs': macs, 'photo': Path(photo_path).name,
    }


# --- report ----------------------------------------------------------------------------------

def markdown(report) -> str:
    b, acc, lat = report['bytes'], report['accuracy'], report['latency']
    macs, e2e, fast = report['macs'], report['e2e'], report['e2e_fast_server']
    raw = b['raw']
    lines = [f"Split bundle `{report['split_bundle']}` ({report['tail']} tail, robot runs "
             f"{report['split']} segment(s), bottleneck {report['code_shape']} at "
             f"{report['bits']} bits); unsplit student `{report['student_bundle']}`.",
             f"Load average before/after: {report['load_before']} / {report['load_after']}.", '',
             '| mode | bytes per offloaded frame (payload / DDS message) | % of raw frame | '
             'top-1 | robot MMACs per frame (mean) | robot ms (mean) |',
             '|---|---|---|---|---|---|']
    msg = report['message_bytes']
    off = acc['offload_rate']
    rows = [
        ('all on robot (student with exits)', '0', '-', acc['student_with_exits'],
         report['macs_mean_robot_exits'] / 1e6,
         lat['student with exits (robot)']['mean']),
        ('offload frame (server: student)', f"{raw:,} / {msg.get('frame', 0):,.0f}", 100.0,
         acc['student_final'], 0.0, 0.0),
        ('offload model input, PNG', f"{b['input_png']:.0f} / {msg.get('input_png', 0):.0f}",
         100 * b['input_png'] / raw, acc['student_final'], 0.0,
         lat['model input to PNG']['mean']),
        ('offload model input, JPEG q90', f"{b['input_jpeg']:.0f} / "
         f"{msg.get('input_jpeg', 0):.0f}", 100 * b['input_jpeg'] / raw,
         acc['offload_input_jpeg'], 0.0, lat['model input to JPEG']['mean']),
        ('split without exits', f"{b['features']} / {msg.get('features', 0):.0f}",
         100 * b['features'] / raw, acc['split_without_exits'], macs['robot_offloaded'] / 1e6,
         lat['split robot side, offloaded frame']['mean']),
        (f'split with exits ({100 * off:.1f}% offloaded)',
         f"{b['features']} / {msg.get('features', 0):.0f}", 100 * b['features'] / raw,
         acc['split_with_exits'], report['macs_mean_split_exits'] / 1e6,
         lat['split robot side, with exits']['mean']),
    ]
    for name, by, pct, a, m, ms in rows:
        pct = pct if isinstance(pct, str) else f'{pct:.3f}%'
        lines.append(f'| {name} | {by} | {pct} | {100 * a:.2f}% | {m:.2f} | {ms:.2f} |')
    share = lat['split robot side, offloaded frame']['mean'] / lat['student final only']['mean']
    lines += ['', f"Full student: {macs['full'] / 1e6:.2f} MMACs; robot side of an offloaded "
                  f"frame: {macs['robot_offloaded'] / 1e6:.2f} MMACs "
                  f"({100 * macs['robot_offloaded'] / macs['full']:.1f}%); robot latency of "
                  'an offloaded frame '
                  f"{lat['split robot side, offloaded frame']['mean']:.2f} ms against "
                  f"{lat['student final only']['mean']:.2f} ms for the full student "
                  f'({100 * share:.0f}%).',
              '', '| end-to-end mean latency (ms) | ' + ' | '.join(
                  f'{r:g} Mbit/s' for r in report['rates']) + ' |',
              '|---|' + '---|' * len(report['rates'])]
    for mode in MODES:
        cells = []
        for r in report['rates']:
            cell = f'{e2e_ms(e2e[mode], r):.1f} / {e2e_ms(fast[mode], r):.1f}'
            live = report.get('live', {}).get(f'{mode}@{r:g}')
            if live and live.get('mean_ms') is not None:
                cell += f' ({live["mean_ms"]:.1f})'
            cells.append(cell)
        lines.append(f'| {mode} | ' + ' | '.join(cells) + ' |')
    lines += ['', 'Each cell: computed with the server as fast as this CPU / computed with a '
                  f"server {report['server_speedup']:g}x faster (an assumption); in brackets, "
                  'measured with the real nodes over the shaped link (server on this CPU; DDS '
                  'over UDP, reliable QoS, so per-message overhead, fragmentation and repairs '
                  'are in it). Computed = robot time + payload x 8 / rate + server time.', '',
              '| break-even (mean latency) | server = this CPU | server '
              f"{report['server_speedup']:g}x faster |", '|---|---|---|']
    for key, rate in report['break_even'].items():
        lines.append(f'| {key} | {rate} | {report["break_even_fast_server"][key]} |')
    col = report.get('colour')
    if col:
        cb = col['bytes']
        lines += ['', f"Larger colour input ({col['model']}; photo `{col['photo']}`): raw "
                      f"frame {cb['raw_frame']:,} B, model input raw {cb['input_raw']:,} B, "
                      f"PNG {cb['input_png']:,} B, JPEG q90 {cb['input_jpeg']:,} B, features "
                      f"at the split as float32 {cb['features_float32']:,} B, bottleneck "
                      f"{col['code_shape']} at 4 bits {cb['bottleneck']:,} B "
                      f"({100 * cb['bottleneck'] / cb['input_jpeg']:.1f}% of the JPEG); robot "
                      f"compute of an offloaded frame {col['macs']['robot_offloaded'] / 1e6:.0f}"
                      f" of {col['macs']['full'] / 1e6:.0f} MMACs "
                      f"({100 * col['macs']['robot_offloaded'] / col['macs']['full']:.1f}%). "
                      'Untrained: accuracy not measured.']
    return '\n'.join(lines) + '\n'


def plot(report, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    rates = np.logspace(np.log10(0.5), np.log10(200), 100)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for mode in MODES:
        entry = report['e2e'][mode]
        line, = ax.plot(rates, [e2e_ms(entry, r) for r in rates], label=mode)
        ax.plot(rates, [e2e_ms(report['e2e_fast_server'][mode], r) for r in rates], '--',
                color=line.get_color(), linewidth=0.8)
        live = [(r, report.get('live', {}).get(f'{mode}@{r:g}')) for r in report['rates']]
        pts = [(r, v['mean_ms']) for r, v in live if v and v.get('mean_ms') is not None]
        if pts:
            ax.plot(*zip(*pts), 'o', color=line.get_color())
    ax.set_xscale('log')
    ax.set_yscale('log')
    ax.set_xlabel('link rate (Mbit/s)')
    ax.set_ylabel('mean end-to-end latency per frame (ms)')
    ax.set_title(f"Lines: computed (dashed: server {report['server_speedup']:g}x faster); "
                 'dots: measured over tc tbf', fontsize=9)
    ax.grid(True, which='both', alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    parser.add_argument('--split-bundle', default=str(default_split_bundle_path()))
    parser.add_argument('--student-bundle', default=str(default_bundle_path()),
                        help='the unsplit model (all on robot, and the offload server)')
    parser.add_argument('--test-images', type=int, default=10000)
    parser.add_argument('--timing-frames', type=int, default=200,
                        help='frames per block; 3 repeats of every contender')
    parser.add_argument('--rates', default='1,5,20,100')
    parser.add_argument('--live', action='store_true',
                        help='also run the nodes over a shaped link (root, ip, tc)')
    parser.add_argument('--live-frames', type=int, default=20)
    parser.add_argument('--server-speedup', type=float, default=10.0,
                        help='the second computed column assumes a server this much faster')
    parser.add_argument('--out', default='docs/split')
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rates = [float(r) for r in args.rates.split(',')]
    load_before = os.getloadavg()
    split_bundle = load_split_bundle(args.split_bundle)
    student = load_bundle(args.student_bundle)
    data = test_set(args.test_images)
    frames = [camera_frame(im) for im in data.images[:64]]
    acc = accuracy_table(split_bundle, student, data)
    print(f'accuracy: {acc}', file=sys.stderr)
    model = split_bundle.build()
    x = torch.from_numpy(preprocess(frames[0], split_bundle.preprocessing))[None]
    macs = robot_macs(model, x)
    # Mean robot compute with exits: each exit's share pays up to that exit, the rest the
    # robot side of an offloaded frame.
    rates_split = acc['exit_rates']
    macs_split = sum(r * m for r, m in zip(rates_split, macs['robot_exit'])) \
        + rates_split[-1] * macs['robot_offloaded']
    student_report = cascade_report(*_student_cascade(student, data))
    per_exit = student.metrics.get('exits', {}).get('test', {}).get('per_exit', [])
    macs_exits = float('nan')
    if per_exit:
        macs_exits = sum(r * e['cumulative_macs']
                         for r, e in zip(student_report['exit_rates'], per_exit))
    encoded = input_bytes(frames, student.preprocessing)
    bytes_ = {'raw': int(np.prod(RAW_FRAME)), 'input_png': encoded['png'],
              'input_jpeg': encoded['jpeg'],
              'features': packed_size(int(np.prod(split_bundle.config.code_shape)),
                                      split_bundle.config.bottleneck.bits),
              'features_float32': split_bundle.config.head_features.numel * 4}
    sizes = message_sizes(split_bundle, frames)
    lat = latency_table(split_bundle, student, frames, args.timing_frames, 3)
    print(f'latency: {json.dumps(lat)}', file=sys.stderr)
    e2e = e2e_model(lat, sizes, bytes_, acc['offload_rate'])
    fast = e2e_model(lat, sizes, bytes_, acc['offload_rate'], args.server_speedup)
    pairs = [('all on robot', m) for m in MODES[1:]] + [
        ('offload input (PNG)', 'split with exits'), ('offload frame', 'split with exits')]

    def crossings(model):
        return {f'{b} vs {a}': break_even(model[a], model[b]) for a, b in pairs}
    report = {
        'split_bundle': _shown(args.split_bundle), 'student_bundle': _shown(args.student_bundle),
        'tail': split_bundle.config.tail, 'split': split_bundle.config.split,
        'code_shape': list(split_bundle.config.code_shape),
        'bits': split_bundle.config.bottleneck.bits, 'bytes': bytes_, 'message_bytes': sizes,
        'accuracy': acc, 'macs': macs, 'macs_mean_split_exits': macs_split,
        'macs_mean_robot_exits': macs_exits, 'latency': lat, 'e2e': e2e, 'rates': rates,
        'e2e_fast_server': fast, 'server_speedup': args.server_speedup,
        'break_even': crossings(e2e), 'break_even_fast_server': crossings(fast),
        'threads': 1, 'load_before': [round(v, 2) for v in load_before],
    }
    if args.live:
        reason = link_unavailable()
        if reason:
            print(f'no live runs: {reason}', file=sys.stderr)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                report['live'] = live_runs(args.split_bundle, args.student_bundle, rates,
                                           args.live_frames, 3e6, tmp)
    photo = _matplotlib_photo()
    if photo is not None:
        report['colour'] = colour_config(photo)
    report['load_after'] = [round(v, 2) for v in os.getloadavg()]
    text = markdown(report)
    (out / 'bench.json').write_text(json.dumps(report, indent=1, default=float))
    (out / 'bench.md').write_text(text)
    plot(report, out / 'split_latency.png')
    print(text)
    return 0


def _shown(path) -> str:
    """Return a path as the docs show it: relative to the repository when inside it."""
    path = Path(path).resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def _student_cascade(student, data):
    model = student.build_model()
    with torch.inference_mode():
        out = model(torch.from_numpy(preprocess_batch(list(data.images),
                                                      student.preprocessing)))
    gate: GateConfig = student.gate
    early = [lg.numpy() for lg in out.exit_logits]
    return ([gate.confidence(lg) for lg in early], [lg.argmax(1) for lg in early],
            out.logits.numpy().argmax(1), data.labels, gate.thresholds)


def _matplotlib_photo():
    try:
        from matplotlib import cbook
        return cbook.get_sample_data('grace_hopper.jpg', asfileobj=False)
    except (ImportError, OSError, ValueError):
        return None


if __name__ == '__main__':
    sys.exit(main())
