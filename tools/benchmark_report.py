#!/usr/bin/env python3
# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Regenerate docs/BENCHMARK.md: GFDE against the networks a user would deploy instead.

Runs the committed models (the GFDE default with and without its exits, the teacher, the plain
CNN and MobileNetV2 baselines trained by the same pipeline, and the no-distillation ablation) on
the Fashion-MNIST test set through the one runtime path, on onnxruntime and on torch, one
thread, in rotating blocks, three repeats; writes the JSON result, the page, and the plots
(accuracy against mean latency: the Pareto picture; exits taken). See
gfde_perception/evaluation/benchmark.py for the protocol.

Usage (after ``source tools/env.sh``)::

    python tools/benchmark_report.py                 # the whole test set, both backends
    python tools/benchmark_report.py --frames 2000 --repeats 1 --doc /tmp/quick.md
    python tools/benchmark_report.py --from-json runs/benchmark/benchmark.json
"""

import argparse
import json
from pathlib import Path
import sys

REPO = Path(__file__).resolve().parents[1]
DATA = 'gfde_perception/data'
DEFAULT_ROWS = (
    ('teacher', f'{DATA}/teacher.gfde', 'calibrated'),
    ('cnn', f'{DATA}/baselines/cnn-28.gfde', 'calibrated'),
    ('mobilenetv2', f'{DATA}/baselines/mobilenetv2-28.gfde', 'calibrated'),
    ('no_distill', f'{DATA}/ablation-nodistill.gfde', 'calibrated'),
    ('no_exits', f'{DATA}/default.gfde', 'final'),
    ('gfde', f'{DATA}/default.gfde', 'calibrated'),
)


def _arguments(argv):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip(),
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for role, path, _ in DEFAULT_ROWS:
        if role != 'no_exits':
            p.add_argument(f"--{role.replace('_', '-')}", default=path,
                           help=f"bundle of the {role} row ('' leaves the row out)")
    p.add_argument('--data', default='fashion-mnist',
                   help="'fashion-mnist' (the official test split) or an image folder "
                        "(one sub-folder per class, named like the bundles' labels)")
    p.add_argument('--frames', type=int, default=10000, help='test frames (first N)')
    p.add_argument('--backends', default='onnxruntime,torch')
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--block', type=int, default=200, help='frames per rotating block')
    p.add_argument('--warmup', type=int, default=50)
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--out', default='runs/benchmark', help='JSON result and plots')
    p.add_argument('--doc', default='docs/BENCHMARK.md')
    p.add_argument('--from-json', default=None, help='only re-render from a saved result')
    return p.parse_args(argv)


def _frames(source: str, count: int, labels: tuple) -> list:
    from gfde_perception.training.data import load_fashion_mnist, load_image_folder

    data = (load_fashion_mnist('test') if source == 'fashion-mnist'
            else load_image_folder(source, classes=labels))
    n = min(count, len(data))
    return [(data.images[i], int(data.labels[i]), i) for i in range(n)]


def main(argv=None) -> int:
    args = _arguments(argv)
    import os
    os.chdir(REPO)  # paths in the page are repository-relative, the same on every machine
    from gfde_perception.bundle import load_bundle
    from gfde_perception.evaluation.benchmark import (
        benchmark_markdown, check_targets, plot_pareto, Row, run_benchmark)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = 'python tools/benchmark_report.py' + (' ' + ' '.join(argv) if argv else '')
    if args.from_json:
        result = json.loads(Path(args.from_json).read_text())
    else:
        rows = []
        for role, default, policy in DEFAULT_ROWS:
            path = getattr(args, 'gfde' if role == 'no_exits' else role, default)
            if not path:
                continue
            if not Path(path).is_file():
                print(f'benchmark_report: {role}: no bundle at {path}', file=sys.stderr)
                return 2
            rows.append(Row(role, path, policy))
        labels = load_bundle(args.gfde).labels
        frames = _frames(args.data, args.frames, labels)
        result = run_benchmark(rows, frames, backends=tuple(args.backends.split(',')),
                               repeats=args.repeats, block=args.block, warmup=args.warmup,
                               threads=args.threads)
        result['json'] = str(out / 'benchmark.json')
        result['data'] = args.data
        (out / 'benchmark.json').write_text(json.dumps(result, indent=2) + '\n')
    doc = Path(args.doc)
    plot_dir = doc.parent / 'benchmark'
    plot_dir.mkdir(parents=True, exist_ok=True)
    plot_pareto(result, plot_dir / 'pareto.png')
    doc.write_text(benchmark_markdown(result, command, plots=['pareto.png']))
    for backend, data in result['backends'].items():
        print(f'{backend}:')
        for t in check_targets(data['summary']):
            verdict = {True: 'met', False: 'MISSED', None: 'not measured'}[t['met']]
            print(f"  {verdict:12s} {t['what']}: {t['detail']}")
    print(f'wrote {doc} and {plot_dir / "pareto.png"} from {result.get("json")}')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
