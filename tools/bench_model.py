#!/usr/bin/env python3
# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Parameters, MACs and CPU latency of GFNet variants: FFT form vs deployable forms.

Every form of one variant is timed in the same run, round-robin (one call of each form per
round), so that load from other processes hits all forms alike; the table gives medians and
the ratio to the FFT form. Batch 1, float32, eager PyTorch, ``--threads`` intra-op threads.

    nice -n 10 python tools/bench_model.py --variants gfnet-edge-28 gfnet-ti --rounds 20
"""

import argparse
import json
import statistics
import sys
import time

from gfde_perception.models import build_model, model_summary, to_deployable
import torch
from tqdm import tqdm

DEFAULT_VARIANTS = ('gfnet-edge-28', 'gfnet-edge-32', 'gfnet-edge-64', 'gfnet-ti', 'gfnet-xs',
                    'gfnet-h-ti')
FORMS = ('fft', 'conv', 'dft', 'deploy')


def _onnx_runner(model, x, path):
    import onnxruntime as ort

    from gfde_perception.models import export_onnx
    export_onnx(model, path, x)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(path, opts, providers=['CPUExecutionProvider'])
    feed = {'input': x.numpy()}
    return lambda: session.run(['logits'], feed)


def bench_variant(name: str, rounds: int, warmup: int, onnx_dir: str = None) -> dict:
    """Time every form of one variant side by side; return a JSON-ready row."""
    torch.manual_seed(0)
    model = build_model(name, exit_blocks=()).eval()
    cfg = model.config.backbone
    x = torch.randn(1, cfg.in_chans, cfg.img_size, cfg.img_size)
    models = {'fft': model}
    for form in FORMS[1:]:
        models[form] = to_deployable(model, form)
    runners = {}
    for form, m in models.items():
        runners[form] = (lambda m=m: m(x))
    if onnx_dir:
        runners['onnxruntime (deploy)'] = _onnx_runner(models['deploy'], x,
                                                       f'{onnx_dir}/{name}.onnx')
    times = {form: [] for form in runners}
    with torch.inference_mode():
        ref = model(x).logits
        diffs = {form: float((m(x).logits - ref).abs().max()) for form, m in models.items()}
        for i in tqdm(range(warmup + rounds), desc=name, leave=False, file=sys.stderr):
            for form, run in runners.items():
                t0 = time.perf_counter()
                run()
                if i >= warmup:
                    times[form].append((time.perf_counter() - t0) * 1e3)
    median = {form: statistics.median(v) for form, v in times.items()}
    return {
        'variant': name,
        'input': [cfg.in_chans, cfg.img_size, cfg.img_size],
        'params': model_summary(model)['params_total'],
        'macs': {form: sum(model_summary(m)['macs_per_segment']) for form, m in models.items()},
        'latency_ms': median,
        'ratio_to_fft': {form: median[form] / median['fft'] for form in median},
        'max_abs_diff_to_fft': diffs,
    }


def markdown(rows: list) -> str:
    """Format the rows as a markdown table."""
    forms = list(rows[0]['latency_ms'])
    head = ['variant', 'input', 'params', 'GMACs fft', 'GMACs deploy']
    head += [f'{f} ms' for f in forms]
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for r in rows:
        cells = [r['variant'], 'x'.join(map(str, r['input'])), f"{r['params'] / 1e6:.2f} M",
                 f"{r['macs']['fft'] / 1e9:.3f}", f"{r['macs']['deploy'] / 1e9:.3f}"]
        for f in forms:
            ms = r['latency_ms'][f]
            cells.append(f'{ms:.2f}' if f == 'fft' else f"{ms:.2f} ({r['ratio_to_fft'][f]:.2f}x)")
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def main(argv=None) -> int:
    """Run the benchmark and print a markdown table (and JSON with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--variants', nargs='+', default=list(DEFAULT_VARIANTS))
    parser.add_argument('--rounds', type=int, default=20, help='timed calls per form')
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--threads', type=int, default=1, help='torch intra-op threads')
    parser.add_argument('--onnx-dir', help='also time onnxruntime on the deploy form; '
                                           'ONNX files are written here')
    parser.add_argument('--json', help='write the rows to this JSON file')
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = [bench_variant(v, args.rounds, args.warmup, args.onnx_dir)
            for v in tqdm(args.variants, desc='variants', file=sys.stderr)]
    print(f'batch 1, float32, {args.threads} thread(s), median of {args.rounds} round-robin '
          f'calls; torch {torch.__version__}')
    print(markdown(rows))
    worst = max(d for r in rows for d in r['max_abs_diff_to_fft'].values())
    print(f'max |logits - fft logits| over all forms: {worst:.2e}')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
