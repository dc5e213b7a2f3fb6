#!/usr/bin/env python3
# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Train the image-folder template and a plain CNN on the same folder in the same time; compare.

The check behind docs/TRAINING.md's small-data figures (issue 10). For each data folder
(``<root>/train`` and ``<root>/test``, one sub-folder per class, as ``tools/small_datasets.py``
writes them):

1. ``gfde-train --config config/train_imagefolder.yaml`` with only the paths and the colour
   settings changed, as a user would, under the template's time budget;
2. the plain small CNN (``cnn-28``, 0.47 M parameters at 28x28 grey) trained by the same tool,
   with the same preprocessing, augmentation and time budget, without a teacher.

Both runs are timed wall-clock (the whole ``gfde-train`` process); the table gives their test
accuracy (the GFDE bundle with its calibrated exits), the difference, and the plans they chose.

    python tools/small_data_check.py runs/data/mnist-5k runs/data/digits --out runs/small-data
"""

import argparse
import json
from pathlib import Path
import subprocess
import sys
import time

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / 'config' / 'train_imagefolder.yaml'
GREY = ['student.preprocessing.channel_order=gray', 'student.preprocessing.mean=[0.449]',
        'student.preprocessing.std=[0.226]', 'teacher.preprocessing.channel_order=gray',
        'teacher.preprocessing.mean=[0.449]', 'teacher.preprocessing.std=[0.226]']
CNN = ['student.model=cnn-28', 'student.overrides={}', 'teacher.kind=none',
       'student.distillation=none']


def _train(name: str, data: Path, out: Path, extra, budget) -> dict:
    """Run gfde-train in a fresh process; return its metrics and wall-clock seconds."""
    sets = [f'data.root={data / "train"}', f'data.test_root={data / "test"}'] + GREY + extra
    cmd = [sys.executable, '-m', 'gfde_perception.cli.train', '--config', str(TEMPLATE),
           '--output-dir', str(out), '--bundle', str(out / f'{name}.gfde'), '--no-progress']
    if budget is not None:
        cmd += ['--time-budget', str(budget)]
    for item in sets:
        cmd += ['--set', item]
    print('$', ' '.join(cmd), flush=True)
    started = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - started
    metrics = json.loads((out / 'metrics.json').read_text())
    return {'wall_s': wall, 'metrics': metrics}


def _test_accuracy(metrics: dict) -> float:
    """Top-1 (%) of the bundle on the test folder: with exits when the model has them."""
    report = metrics['exits']['test']
    return 100.0 * report['accuracy']


def main(argv=None) -> int:
    """Run the comparison for every folder and print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument('folders', nargs='+', type=Path, help='data folders (train/, test/)')
    parser.add_argument('--out', type=Path, default=Path('runs/small-data'))
    parser.add_argument('--budget', type=float, default=None,
                        help="minutes per run (default: the template's time_budget_minutes)")
    parser.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                        help='a config override for both runs, e.g. threads=1')
    args = parser.parse_args(argv)
    rows = []
    for folder in args.folders:
        out = args.out / folder.name
        gfde = _train('gfde', folder.resolve(), out / 'gfde', args.set, args.budget)
        cnn = _train('cnn', folder.resolve(), out / 'cnn', CNN + args.set, args.budget)
        rows.append((folder.name, gfde, cnn))
    lines = ['| data | GFDE test top-1 (%) | exit 0 rate | GFDE wall (min) | GFDE plan '
             '| CNN test top-1 (%) | CNN wall (min) | CNN epochs | GFDE - CNN (points) |',
             '|---|---|---|---|---|---|---|---|---|']
    for name, gfde, cnn in rows:
        g, c = gfde['metrics'], cnn['metrics']
        plan = g.get('plan', {})
        exit0 = 100 * (g['exits']['test'].get('exit_rates') or [1.0])[0]
        lines.append(
            f'| {name} | {_test_accuracy(g):.2f} | {exit0:.1f}% | {gfde["wall_s"] / 60:.1f} | '
            f'teacher {plan.get("teacher_mode")} +{plan.get("teacher_epochs")} ep, student '
            f'{plan.get("student_epochs")} ep | {_test_accuracy(c):.2f} | '
            f'{cnn["wall_s"] / 60:.1f} | {c.get("plan", {}).get("student_epochs")} | '
            f'{_test_accuracy(g) - _test_accuracy(c):+.2f} |')
    print('\n'.join(lines))
    (args.out / 'small_data.md').write_text('\n'.join(lines) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
