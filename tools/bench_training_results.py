#!/usr/bin/env python3
# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Measure the committed models side by side on the Fashion-MNIST test set (docs/TRAINING.md).

Rows: the fine-tuned EfficientNet-Lite0 teacher, the student trained without distillation, the
distilled student (final exit only), and the distilled student with its calibrated early exits.
Accuracy uses all 10,000 test images. Latency is per image, batch 1, preprocessing included,
measured round-robin in short blocks (``--block`` images on every model, then the next block)
so that every model sees the same machine load; the table reports medians and ratios from this
one run.

The student with exits is timed twice: through the in-process loop ``run_cascade`` below
(segments one by one, exit head + gate after each, in this thread) and through
``gfde_perception.runtime.Classifier`` (torch backend, sequential schedule, exit heads on its CPU
worker thread), when the runtime is importable.

    python tools/bench_training_results.py --latency-images 1000 --threads 1 --json out.json
"""

import argparse
import json
from pathlib import Path
import statistics
import sys
import time

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / 'gfde_perception' / 'data'


def _final_only(model, x):
    """Run the student without early exits: all segments, then only the final classifier."""
    tokens = x
    for segment in model.segments:
        tokens, pooled = segment(tokens)
    return model.exit_heads[-1](pooled)


def run_cascade(model, gate, x):
    """In-process early-exit loop: returns (logits, exit index) for one preprocessed image."""
    tokens = x
    last = model.num_exits - 1
    for k, segment in enumerate(model.segments):
        tokens, pooled = segment(tokens)
        logits = model.exit_heads[k](pooled)
        if k < last and gate.should_exit(k, logits[0].numpy()):
            return logits, k
    return logits, last


class Row:
    """One model under test: how to classify a raw image, and what it is."""

    def __init__(self, name, classify, params, note=''):
        self.name, self.classify, self.params, self.note = name, classify, params, note
        self.latencies = []
        self.correct = 0
        self.exits = []


def build_rows(args):
    import torch

    from gfde_perception.bundle import load_bundle
    from gfde_perception.preprocessing import preprocess
    from gfde_perception.training.teacher import load_teacher

    rows = []
    teacher, manifest = load_teacher(args.teacher)
    tspec = manifest['preprocessing']

    def classify_teacher(image):
        x = torch.from_numpy(preprocess(image, tspec))[None]
        return int(teacher(x).argmax(1)), None
    rows.append(Row('teacher (EfficientNet-Lite0, ImageNet-pretrained, fine-tuned)',
                    classify_teacher, sum(p.numel() for p in teacher.parameters()),
                    f'{tspec.input_size[0]}x{tspec.input_size[1]} RGB input'))

    def student_row(path, name):
        bundle = load_bundle(path)
        model = bundle.build_model()
        spec = bundle.preprocessing

        def classify(image):
            x = torch.from_numpy(preprocess(image, spec))[None]
            return int(_final_only(model, x).argmax(1)), None
        params = sum(p.numel() for p in model.parameters())
        return Row(name, classify, params, f'{spec.input_size[0]}x{spec.input_size[1]} grey, '
                   'final exit only'), bundle, model

    if Path(args.nodistill).is_file():
        rows.append(student_row(args.nodistill, 'student, no distillation')[0])
    row, bundle, model = student_row(args.student, 'student, DeiT hard distillation')
    rows.append(row)
    spec = bundle.preprocessing
    gate = bundle.gate

    def classify_loop(image):
        x = torch.from_numpy(preprocess(image, spec))[None]
        logits, k = run_cascade(model, gate, x)
        return int(logits.argmax(1)), k
    rows.append(Row('student, distilled, with early exits (in-process loop)', classify_loop,
                    row.params, 'segments + exit head + gate one by one, this thread'))
    try:
        from gfde_perception.runtime import Classifier, RuntimeConfig

        clf = Classifier(bundle, RuntimeConfig(backend='torch', schedule='sequential',
                                               threads=args.threads, precision='fp32'))

        def classify_exits(image):
            result = clf.classify(image)
            return int(result.class_id), int(result.exit_index)
        rows.append(Row('student, distilled, with early exits (runtime.Classifier)',
                        classify_exits, row.params,
                        f'torch backend ({clf.backend}), sequential schedule, exit heads on '
                        'a CPU worker thread'))
    except ImportError as exc:
        print(f'runtime.Classifier not importable ({exc}); only the in-process loop is timed')
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--teacher', default=str(DATA / 'teacher.safetensors'))
    parser.add_argument('--student', default=str(DATA / 'default.gfde'))
    parser.add_argument('--nodistill', default=str(DATA / 'ablation-nodistill.gfde'))
    parser.add_argument('--fashion-mnist', default='/usr/share/datasets/fashion-mnist')
    parser.add_argument('--latency-images', type=int, default=1000,
                        help='test images timed per model')
    parser.add_argument('--limit', type=int, default=None, help='test images for accuracy')
    parser.add_argument('--threads', type=int, default=1, help='torch CPU threads')
    parser.add_argument('--block', type=int, default=25,
                        help='images per model before switching to the next model')
    parser.add_argument('--json', help='write the measurements here')
    args = parser.parse_args(argv)

    import torch
    from tqdm import tqdm

    from gfde_perception.training.data import load_fashion_mnist

    torch.set_num_threads(args.threads)
    test = load_fashion_mnist('test', args.fashion_mnist)
    n = len(test) if args.limit is None else min(args.limit, len(test))
    rows = build_rows(args)
    with torch.inference_mode():
        for row in rows:  # warm-up outside the timed loop
            for i in range(20):
                row.classify(test.images[i])
        # Round-robin in short blocks: every model sees the same machine load, and no model
        # pays for waking up after another model's worker threads.
        bar = tqdm(total=n, desc='test images', mininterval=2.0)
        for start in range(0, n, args.block):
            block = range(start, min(n, start + args.block))
            for row in rows:
                for i in block:
                    image, label = test.images[i], int(test.labels[i])
                    t0 = time.perf_counter()
                    pred, exit_index = row.classify(image)
                    elapsed = time.perf_counter() - t0
                    if i < args.latency_images:
                        row.latencies.append(elapsed * 1000.0)
                    row.correct += pred == label
                    if exit_index is not None:
                        row.exits.append(exit_index)
            bar.update(len(block))
        bar.close()
    teacher_ms = statistics.median(rows[0].latencies)
    teacher_acc = rows[0].correct / n
    out = {'test_images': n, 'latency_images': min(n, args.latency_images),
           'threads': args.threads, 'block': args.block, 'torch': torch.__version__, 'rows': []}
    print(f'\nFashion-MNIST test set, {n} images; median latency per image over the first '
          f'{out["latency_images"]} (batch 1, preprocessing included, {args.threads} thread(s)'
          f', round-robin in blocks of {args.block} in one run)\n')
    print('| model | params | top-1 (%) | vs teacher (pts) | exit distribution | '
          'median latency (ms) | speed-up vs teacher | notes |')
    print('|---|---|---|---|---|---|---|---|')
    for row in rows:
        acc = row.correct / n
        med = statistics.median(row.latencies)
        dist = ''
        if row.exits:
            counts = np.bincount(row.exits, minlength=max(row.exits) + 1) / len(row.exits)
            dist = ' / '.join(f'{100 * c:.1f}' for c in counts)
        record = {'model': row.name, 'params': int(row.params), 'top1': acc,
                  'delta_vs_teacher_points': 100 * (acc - teacher_acc),
                  'median_latency_ms': med, 'p90_latency_ms': float(np.percentile(
                      row.latencies, 90)), 'speedup_vs_teacher': teacher_ms / med,
                  'exit_distribution': dist, 'note': row.note}
        out['rows'].append(record)
        print(f'| {row.name} | {row.params / 1e6:.2f} M | {100 * acc:.2f} | '
              f'{100 * (acc - teacher_acc):+.2f} | {dist or "-"} | {med:.2f} | '
              f'{teacher_ms / med:.1f}x | {row.note} |')
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
