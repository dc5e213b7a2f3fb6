#!/usr/bin/env python3
# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Regenerate docs/BENCHMARK.md: the GFDE paper's comparison on our data, from one gfde-eval run.

Steps (each figure in the page is read from the run's report.json, nothing is typed by hand):

1. build a labelled bag of the Fashion-MNIST test split with ``gfde-make-bag`` (once);
2. run ``gfde-eval`` offline with the teacher, the student without exits (``@final``), the
   student with its calibrated exits and, when given, a separate classic CNN baseline, side by
   side in one process;
3. write docs/BENCHMARK.md and copy the plots to docs/benchmark/.

Usage (after ``source tools/env.sh``)::

    python tools/benchmark_report.py                      # defaults below
    python tools/benchmark_report.py --frames 500 --teacher runs/default/teacher.safetensors
"""

import argparse
import json
import os
from pathlib import Path
import shutil
import sys

REPO = Path(__file__).resolve().parents[1]


def _arguments(argv):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip(),
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--bundle', default='default',
                   help="GFDE bundle ('default' = gfde_perception/data/default.gfde)")
    p.add_argument('--teacher', default='gfde_perception/data/teacher.safetensors',
                   help='fine-tuned teacher saved by gfde-train (default: the committed one)')
    p.add_argument('--ablation',
                   default='gfde_perception/data/ablation-nodistill.gfde',
                   help='student trained without distillation (a row of its own when the file '
                        "exists; '' to leave it out)")
    p.add_argument('--baseline', default=None,
                   help='optional separate classic CNN (teacher format); without it the '
                        'teacher (EfficientNet-Lite0, a classic CNN) is the CNN baseline')
    p.add_argument('--frames', type=int, default=10000,
                   help='Fashion-MNIST test frames (default: the whole test set)')
    p.add_argument('--bag', default='runs/benchmark/fashion_mnist_test_bag')
    p.add_argument('--out', default='runs/benchmark/eval')
    p.add_argument('--doc', default='docs/BENCHMARK.md')
    p.add_argument('--threads', type=int, default=1,
                   help='torch threads per configuration (1 is steadiest on shared cores)')
    p.add_argument('--backend', default='torch')
    p.add_argument('--from-report', default=None,
                   help='only regenerate the page from an existing report.json')
    return p.parse_args(argv)


def _missing(args) -> list:
    from gfde_perception.evaluation.configurations import resolve_bundle_path

    missing = []
    try:
        bundle = resolve_bundle_path(args.bundle)
    except Exception as exc:  # noqa: B902 - the bundle module may not exist yet
        missing.append(f'the GFDE bundle ({exc})')
    else:
        if not Path(bundle).is_file():
            missing.append(f'the GFDE bundle {bundle} (train it: gfde-train --config '
                           'config/train_default.yaml)')
    if not Path(args.teacher).is_file():
        missing.append(f'the fine-tuned teacher {args.teacher} (gfde-train step teacher)')
    if args.baseline and not Path(args.baseline).is_file():
        missing.append(f'the baseline {args.baseline}')
    return missing


def _student_epochs(path):
    from gfde_perception.bundle import load_bundle
    from gfde_perception.evaluation.configurations import resolve_bundle_path

    provenance = load_bundle(resolve_bundle_path(path)).provenance
    return provenance.get('config', {}).get('student', {}).get('optim', {}).get('epochs')


def _schedule_note(args) -> str:
    """Say, from the bundles' provenance, when the ablation trained for another schedule."""
    if not (args.ablation and Path(args.ablation).is_file()):
        return ''
    ours, ablation = _student_epochs(args.bundle), _student_epochs(args.ablation)
    if ours == ablation:
        return ''
    return (f'\nThe `no_distill` ablation was trained for {ablation} student epochs and the '
            f"distilled student for {ours} (from the bundles' provenance), so their accuracy "
            'difference mixes the effect of distillation with that of the longer schedule.\n')


def main(argv=None) -> int:
    args = _arguments(argv)
    # Paths are relative to the repository, so the page names them the same on every machine.
    os.chdir(REPO)
    from gfde_perception.cli import evaluate, make_bag
    from gfde_perception.evaluation.report import benchmark_markdown

    command = 'python tools/benchmark_report.py' + (' ' + ' '.join(argv) if argv else '')
    out = Path(args.out)
    if args.from_report:
        report = json.loads(Path(args.from_report).read_text())
        out = Path(args.from_report).parent
    else:
        missing = _missing(args)
        if missing:
            print('benchmark_report: cannot run, missing:\n  ' + '\n  '.join(missing),
                  file=sys.stderr)
            return 2
        if not Path(args.bag).exists():
            Path(args.bag).parent.mkdir(parents=True, exist_ok=True)
            rc = make_bag.main([args.bag, '--fashion-mnist', '--split', 'test',
                                '--count', str(args.frames), '--encoding', 'mono8',
                                '--label-type', 'string', '--quiet'])
            if rc:
                return rc
        configs = [f'teacher=teacher:{args.teacher}', f'no_exits=bundle:{args.bundle}@final',
                   f'gfde=bundle:{args.bundle}']
        roles = ['teacher=teacher', 'gfde=gfde', 'no_exits=no_exits']
        if args.ablation and Path(args.ablation).is_file():
            configs.append(f'no_distill=bundle:{args.ablation}@final')
        if args.baseline:
            configs.append(f'cnn=teacher:{args.baseline}')
            roles.append('baseline=cnn')
        argv_eval = [args.bag, '--image-topic', '/camera/image_raw', '--label-topic',
                     '/camera/label', '--out', str(out), '--reference', 'teacher',
                     '--primary', 'gfde', '--threads', str(args.threads), '--backend',
                     args.backend, '--limit', str(args.frames)]
        for c in configs:
            argv_eval += ['--config', c]
        for r in roles:
            argv_eval += ['--role', r]
        rc = evaluate.main(argv_eval)
        if rc:
            return rc
        report = json.loads((out / 'report.json').read_text())
    doc = Path(args.doc)
    plot_dir = doc.parent / 'benchmark'
    plot_dir.mkdir(parents=True, exist_ok=True)
    for name in report.get('plots', []):
        shutil.copyfile(out / name, plot_dir / name)
    page = benchmark_markdown(report, command, plot_dir=plot_dir.name)
    if not args.baseline and not report['roles'].get('baseline'):
        page += ('\nThe classic CNN baseline of this run is the teacher itself '
                 '(EfficientNet-Lite0, an ImageNet-pretrained CNN fine-tuned on Fashion-MNIST); '
                 'pass `--baseline FILE` to add a separate one.\n')
    page += _schedule_note(args)
    doc.write_text(page)
    print(f'wrote {doc} from {out / "report.json"}')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
