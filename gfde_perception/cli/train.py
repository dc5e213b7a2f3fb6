# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
``gfde-train``: run the GFDE training steps from a YAML config.

Examples::

    gfde-train --config config/train_default.yaml              # teacher, student, exits
    gfde-train --config config/train_default.yaml --step student
    gfde-train --config my.yaml --set student.optim.epochs=2 --set data.max_train=500
    gfde-train --config config/train_imagefolder.yaml --time-budget 20   # plan epochs to fit
    gfde-train --config config/train_default.yaml --step split    # after 'all': split model
    gfde-train --config config/train_default.yaml --device cuda   # train on the GPU

Every step resumes from its checkpoint in ``output_dir``; a finished step is not re-run unless
``--restart`` is given. Metrics go to ``<output_dir>/metrics.json``; the bundle to ``bundle``.
"""

import argparse
import sys

from gfde_perception.errors import ConfigError, GfdeError, TrainingInterrupted
from gfde_perception.training.config import TrainConfig
from gfde_perception.training.pipeline import run
import yaml

STEPS = ('teacher', 'student', 'exits', 'all', 'split')


def apply_overrides(data: dict, assignments) -> dict:
    """Apply ``key.sub=value`` assignments (values parsed as YAML) to a nested config dict."""
    for item in assignments or ():
        key, sep, value = item.partition('=')
        if not sep or not key:
            raise ConfigError(f'--set expects key.path=value, got {item!r}')
        node = data
        parts = key.split('.')
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f'--set {key}: {part} is not a mapping')
        node[parts[-1]] = yaml.safe_load(value)
    return data


def build_parser() -> argparse.ArgumentParser:
    """Return the ``gfde-train`` argument parser."""
    parser = argparse.ArgumentParser(
        prog='gfde-train', description='Train a GFDE model: teacher, distilled student, exits.')
    parser.add_argument('--config', required=True, help='YAML training config')
    parser.add_argument('--step', choices=STEPS, default='all', help='which step to run')
    parser.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                        help='override a config value, e.g. student.optim.epochs=3')
    parser.add_argument('--output-dir', help='override output_dir')
    parser.add_argument('--bundle', help='override the bundle path')
    parser.add_argument('--time-budget', type=float, metavar='MINUTES',
                        help='plan the epochs so that the whole run fits in MINUTES '
                             '(sets time_budget_minutes; measured step times, printed first)')
    parser.add_argument('--device', metavar='DEVICE',
                        help='where to train: auto (a CUDA device when present, the default), '
                             'cpu, cuda or cuda:N (sets device)')
    parser.add_argument('--restart', action='store_true',
                        help='ignore checkpoints of the steps being run and start over')
    parser.add_argument('--no-progress', action='store_true', help='hide progress bars')
    return parser


def main(argv=None) -> int:
    """Entry point of ``gfde-train``; returns the process exit status."""
    args = build_parser().parse_args(argv)
    try:
        with open(args.config) as f:
            data = yaml.safe_load(f) or {}
        if args.output_dir:
            data['output_dir'] = args.output_dir
        if args.bundle:
            data['bundle'] = args.bundle
        if args.device:
            data['device'] = args.device
        if args.time_budget is not None:
            data['time_budget_minutes'] = args.time_budget
        cfg = TrainConfig.from_dict(apply_overrides(data, args.set))
        metrics = run(cfg, step=args.step, restart=args.restart, progress=not args.no_progress)
    except (TrainingInterrupted, KeyboardInterrupt) as exc:
        # One line, no traceback: what stopped, where the checkpoint is, how to resume.
        print(f'\ngfde-train: {exc or "interrupted before training started"}', file=sys.stderr)
        return 130
    except (GfdeError, OSError) as exc:
        print(f'gfde-train: error: {exc}', file=sys.stderr)
        return 2
    written = (metrics.get('split') or {}).get('bundle') if args.step == 'split' else (
        metrics.get('bundle') if args.step in ('exits', 'all') else None)
    if written:
        print(f'gfde-train: bundle written to {written}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
