#!/usr/bin/env python3
# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Benchmark the runtime, side by side in one run on this machine.

Default: per-frame latency of final-exit-only against the exit policy (bundle thresholds),
under the sequential and the speculative schedule, frames interleaved so that background load
hits every column alike; then the cost of handing an exit head to the CPU worker pool against
calling it inline. ``--segments`` prints the latency of every backbone segment per backend
(torch eager, onnxruntime, torch.compile, CUDA, TensorRT: whichever load here).

    python tools/bench_runtime.py [--bundle B.gfde] [--backend torch] [--frames 300]
    python tools/bench_runtime.py --segments --segment-backends torch,cuda,tensorrt

Without ``--bundle`` the packaged default model is used when it exists, else a randomly
initialised gfnet-edge-32 whose thresholds are set to the median confidence of each exit (the
output says which). Grey 28 px bundles run on the Fashion-MNIST test set and report accuracy.
"""

import argparse
from concurrent.futures import ThreadPoolExecutor
import json
import logging
import os
from pathlib import Path
import sys
import tempfile
import time

from gfde_perception.bundle import Bundle, default_bundle_path, load_bundle, save_bundle
from gfde_perception.gating import GateConfig
from gfde_perception.models import build_model
from gfde_perception.preprocessing import PreprocessSpec
from gfde_perception.runtime import (
    Classifier, FinalExitPolicy, RuntimeConfig, ThresholdPolicy)
from gfde_perception.runtime.backends import BACKENDS
from gfde_perception.runtime.heads import choose_head_runner
import numpy as np
import torch
from tqdm import tqdm


def _synthetic_bundle(folder: Path) -> Bundle:
    torch.manual_seed(0)
    model = build_model('gfnet-edge-32', num_classes=10).eval()
    spec = PreprocessSpec(input_size=(32, 32))
    bundle = Bundle.from_model(model, 'random-gfnet-edge-32', spec,
                               [f'class{i}' for i in range(10)],
                               gate=GateConfig('max_softmax', (1.0,) * 3))
    path = folder / 'random.gfde'
    save_bundle(bundle, path)
    return load_bundle(path)


def _images(bundle: Bundle, count: int) -> tuple:
    spec = bundle.preprocessing
    if spec.channel_order == 'gray' and spec.input_size == (28, 28):
        try:
            from gfde_perception.training.data import load_fashion_mnist  # noqa: PLC0415
            test = load_fashion_mnist('test')
            return list(test.images[:count]), test.labels[:count], 'fashion-mnist test'
        except Exception as exc:  # data not installed: fall back to noise, say so
            print(f'# Fashion-MNIST unavailable ({exc}); using random images', file=sys.stderr)
    rng = np.random.default_rng(0)
    h, w = spec.input_size
    shape = (h, w) if spec.channels == 1 else (h, w, 3)
    return ([rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(count)], None,
            'random uniform noise')


def _median_thresholds(bundle, config, images) -> tuple:
    with Classifier(bundle, config, FinalExitPolicy()) as clf:
        confs = np.array([clf.classify(im).gate_confidence[:-1] for im in images[:100]])
    return tuple(float(v) for v in np.median(confs, axis=0))


def _pct(values, q):
    return float(np.percentile(values, q))


def bench_policies(bundle, images, labels, args, thresholds) -> list:
    """Return rows: schedule, policy, latency stats, exits, accuracy, interleaved per frame."""
    rows = []
    # 'inline' runs the heads on the backbone thread (exit_workers=0): the difference to
    # 'sequential' is what the hand-off to the worker pool costs in the whole pipeline.
    for schedule in ('sequential', 'speculative', 'inline'):
        config = RuntimeConfig(backend=args.backend,
                               schedule='speculative' if schedule == 'speculative' else
                               'sequential', exit_workers=0 if schedule == 'inline' else 1,
                               threads=args.threads, warmup=20, engine_cache_dir=args.cache_dir,
                               energy='none')
        policies = {'final': FinalExitPolicy(), 'threshold': ThresholdPolicy(thresholds)}
        stats = {name: {'ms': [], 'exit': [], 'blocks': [], 'hit': [], 'spec': 0}
                 for name in policies}
        with Classifier(bundle, config) as clf:
            backend = clf.backend
            for i in tqdm(range(args.frames), desc=f'{schedule:11s}', leave=False):
                image = images[i % len(images)]
                for name, policy in policies.items():
                    clf.set_policy(policy)
                    r = clf.classify(image)
                    s = stats[name]
                    s['ms'].append(r.timings.inference_ms)
                    s['exit'].append(r.exit_index)
                    s['blocks'].append(r.blocks_run / r.blocks_total)
                    s['spec'] += r.speculative_segments
                    if labels is not None:
                        s['hit'].append(r.class_id == int(labels[i % len(labels)]))
        for name, s in stats.items():
            rows.append({
                'backend': backend, 'schedule': schedule, 'policy': name,
                'median_ms': float(np.median(s['ms'])), 'p90_ms': _pct(s['ms'], 90),
                'mean_exit': float(np.mean(s['exit'])),
                'blocks_share': float(np.mean(s['blocks'])),
                'accuracy': float(np.mean(s['hit'])) if s['hit'] else None,
                'discarded_segments': s['spec'],
            })
    return rows


def bench_handoff(bundle, args) -> dict:
    """Time one exit head + gate called inline against a round trip through the worker pool."""
    model = bundle.build_model()
    head = model.exit_heads[0]
    dim = next(m.in_features for m in head.modules() if isinstance(m, torch.nn.Linear))
    feature = np.random.default_rng(0).standard_normal(dim).astype(np.float32)
    out = {}
    for impl in ('numpy', 'torch'):
        runner, _, _ = choose_head_runner(head, dim, impl)

        def task(runner=runner):
            return bundle.gate.confidence(runner(feature))
        inline, pooled = [], []
        with ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(task).result()
            for _ in range(args.handoff_iters):
                t0 = time.perf_counter()
                task()
                t1 = time.perf_counter()
                pool.submit(task).result()
                t2 = time.perf_counter()
                inline.append(t1 - t0)
                pooled.append(t2 - t1)
        out[impl] = {'inline_us': float(np.median(inline)) * 1e6,
                     'pool_us': float(np.median(pooled)) * 1e6}
    return out


def segment_table(bundle, kinds, cache_dir, iters: int = 50, precision: str = 'fp16',
                  threads: int = 0) -> str:
    """Median latency of every segment per backend, as a printable table (ratio vs the first)."""
    config = RuntimeConfig(backend='torch', precision=precision, engine_cache_dir=str(cache_dir),
                           threads=threads, energy='none')
    medians, names = {}, {}
    for kind in kinds:
        backend = BACKENDS[kind](bundle, config)
        try:
            backend.load()
        except Exception as exc:
            print(f'# {kind}: not available here ({exc})', file=sys.stderr)
            continue
        backend.input[...] = 0.0
        x0 = backend.start()
        times = [[] for _ in range(backend.num_exits)]
        with torch.inference_mode():
            for i in range(iters + 5):
                x = x0
                for k in range(backend.num_exits):
                    run = backend.run_segment(k, x)
                    backend.pooled_to_numpy(run.pooled)
                    if i >= 5:  # the first calls pay lazy initialisation
                        times[k].append(run.elapsed_ms())
                    x = run.features
        medians[kind] = [float(np.median(t)) for t in times]
        names[kind] = backend.name
        backend.close()
    if not medians:
        return 'no backend loaded'
    base = next(iter(medians))
    header = 'segment  blocks  ' + '  '.join(f'{names[k]:>22s}' for k in medians)
    lines = [header]
    blocks = (0,) + tuple(bundle.config.blocks_per_exit)
    for k in range(len(blocks) - 1):
        cells = []
        for kind, values in medians.items():
            ratio = values[k] / medians[base][k]
            cells.append(f'{values[k]:9.4f} ms ({ratio:5.2f}x)')
        lines.append(f'{k:7d}  {blocks[k] + 1:2d}-{blocks[k + 1]:<3d}  ' + '  '.join(
            f'{c:>22s}' for c in cells))
    total = '  '.join(f'{sum(v):9.4f} ms ({sum(v) / sum(medians[base]):5.2f}x)'.rjust(22)
                      for v in medians.values())
    lines.append(f'{"total":>7s}  {"":6s}  {total}')
    return '\n'.join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    parser.add_argument('--bundle', help='bundle to benchmark (default: packaged model)')
    parser.add_argument('--backend', default='torch', help='backend for the policy benchmark')
    parser.add_argument('--frames', type=int, default=300)
    parser.add_argument('--threads', type=int, default=0)
    parser.add_argument('--handoff-iters', type=int, default=2000)
    parser.add_argument('--segments', action='store_true', help='per-segment table instead')
    parser.add_argument('--segment-backends', default='torch,onnxruntime,cuda,tensorrt')
    parser.add_argument('--precision', default='fp16')
    parser.add_argument('--iters', type=int, default=50)
    parser.add_argument('--cache-dir', default=None)
    parser.add_argument('--json', help='also write the figures to this JSON file')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = tempfile.TemporaryDirectory()
    args.cache_dir = args.cache_dir or tmp.name
    if args.bundle:
        bundle, origin = load_bundle(args.bundle), args.bundle
    elif default_bundle_path().is_file():
        bundle, origin = load_bundle(), str(default_bundle_path())
    else:
        bundle = _synthetic_bundle(Path(tmp.name))
        origin = 'random-weight gfnet-edge-32 (no packaged model yet)'
    print(f'# model {bundle.name}@{bundle.checksum[:12]} from {origin}; host: {os.cpu_count()} '
          f'CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads), CUDA '
          f'{"yes: " + torch.cuda.get_device_name() if torch.cuda.is_available() else "no"}')
    if args.segments:
        kinds = [k.strip() for k in args.segment_backends.split(',') if k.strip()]
        print(segment_table(bundle, kinds, args.cache_dir, args.iters, args.precision,
                            args.threads))
        return 0
    images, labels, source = _images(bundle, max(args.frames, 100))
    thresholds = tuple(bundle.gate.thresholds)
    if origin.startswith('random-weight'):
        config = RuntimeConfig(backend=args.backend, warmup=5, energy='none',
                               engine_cache_dir=args.cache_dir, threads=args.threads)
        thresholds = _median_thresholds(bundle, config, images)
        print(f'# thresholds set to the median confidence per exit: {thresholds}')
    print(f'# images: {source}; {args.frames} frames per column, interleaved; exit policy '
          f'thresholds {tuple(round(t, 3) for t in thresholds)}')
    rows = bench_policies(bundle, images, labels, args, thresholds)
    print(f'{"backend":16s} {"schedule":11s} {"policy":9s} {"median ms":>9s} {"p90 ms":>8s} '
          f'{"vs final":>8s} {"mean exit":>9s} {"blocks":>6s} {"acc":>6s} {"discarded":>9s}')
    for row in rows:
        final = next(r for r in rows if r['schedule'] == row['schedule']
                     and r['policy'] == 'final')
        acc = f'{row["accuracy"]:.3f}' if row['accuracy'] is not None else '   n/a'
        print(f'{row["backend"]:16s} {row["schedule"]:11s} {row["policy"]:9s} '
              f'{row["median_ms"]:9.3f} {row["p90_ms"]:8.3f} '
              f'{row["median_ms"] / final["median_ms"]:7.2f}x {row["mean_exit"]:9.2f} '
              f'{row["blocks_share"]:6.2f} {acc:>6s} {row["discarded_segments"]:9d}')
    seq = {r['policy']: r['median_ms'] for r in rows if r['schedule'] == 'sequential'}
    spec = {r['policy']: r['median_ms'] for r in rows if r['schedule'] == 'speculative'}
    inline = {r['policy']: r['median_ms'] for r in rows if r['schedule'] == 'inline'}
    print(f'speculative / sequential: final {spec["final"] / seq["final"]:.2f}x, '
          f'threshold {spec["threshold"] / seq["threshold"]:.2f}x')
    print(f'worker hand-off in the pipeline (sequential - inline, median per frame): final '
          f'{seq["final"] - inline["final"]:+.3f} ms ({seq["final"] / inline["final"]:.2f}x), '
          f'threshold {seq["threshold"] - inline["threshold"]:+.3f} ms '
          f'({seq["threshold"] / inline["threshold"]:.2f}x)')
    handoff = bench_handoff(bundle, args)
    final_ms = seq['final']
    for impl, h in handoff.items():
        overhead = h['pool_us'] - h['inline_us']
        print(f'hand-off microbenchmark ({impl} head + gate): inline {h["inline_us"]:.1f} us, '
              f'via pool {h["pool_us"]:.1f} us, overhead {overhead:.1f} us per exit '
              f'({overhead * bundle.config.num_exits / 10 / final_ms:.2f}% of a final-exit '
              f'frame with {bundle.config.num_exits} exits)')
    if args.json:
        Path(args.json).write_text(json.dumps({'rows': rows, 'handoff': handoff,
                                               'thresholds': thresholds, 'images': source},
                                              indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
