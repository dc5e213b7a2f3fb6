# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
r"""
``gfde-eval``: replay a rosbag2 bag through one or more configurations and report.

Examples::

    # The embedded model on a labelled bag, offline:
    gfde-eval demo_bag --image-topic /camera/image_raw --label-topic /camera/label

    # Teacher, student without exits, student with exits, side by side in one run:
    gfde-eval demo_bag --image-topic /camera/image_raw --label-topic /camera/label \\
        --config teacher=teacher:gfde_perception/data/teacher.gfde \\
        --config full=bundle:default@final --config gfde=bundle:default \\
        --reference teacher --out runs/eval

Writes ``report.json``, ``report.md``, ``run.json`` (per-frame records) and PNG plots into
``--out``; ``--write-bag`` also writes frames and results as a new bag.
"""

import argparse
import json
from pathlib import Path
import sys

from gfde_perception.choices import (BACKENDS, DEFAULT_ENERGY, DEFAULT_SCHEDULE, ENERGY_SOURCES,
                                     SCHEDULES, WARMUP)
from gfde_perception.errors import ConfigError, GfdeError
from gfde_perception.evaluation import live, offline, plots, report as report_mod
from gfde_perception.evaluation.configurations import (build_configuration, ConfigurationSpec,
                                                       GfdeConfiguration)
from gfde_perception.evaluation.records import EvaluationRun, nan_to_none
from gfde_perception.evaluation.writeback import write_results_bag
from gfde_perception.recording import (ORPHAN_POLICIES, read_labelled_frames, STORAGES,
                                       UNLABELLED_POLICIES)
from gfde_perception.runtime import RuntimeConfig
from gfde_perception.runtime.energy import EnergyMeter
from gfde_perception.runtime.policies import DEFAULT_POLICY, POLICY_USAGE
import numpy as np

DEFAULT_CONFIG = 'gfde=bundle:default'


def build_parser() -> argparse.ArgumentParser:
    """Return the ``gfde-eval`` argument parser."""
    p = argparse.ArgumentParser(prog='gfde-eval', description=__doc__.split('\n\n')[0].strip(),
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('bag', nargs='?', help='rosbag2 bag (directory, .mcap or .db3)')
    p.add_argument('--image-topic', default='/camera/image_raw')
    labels = p.add_mutually_exclusive_group()
    labels.add_argument('--label-topic', default=None,
                        help='topic with the labels (std_msgs/String, Int32 or stamped)')
    labels.add_argument('--sidecar', default=None,
                        help='CSV/JSON file mapping frame indices or stamps to classes')
    p.add_argument('--config', action='append', default=None, metavar='NAME=KIND:PATH[@POLICY]',
                   help='configuration to evaluate (repeat); kinds: bundle, teacher; POLICY '
                        f'(default {DEFAULT_POLICY}): {POLICY_USAGE}; default: {DEFAULT_CONFIG}')
    p.add_argument('--reference', default=None,
                   help='configuration the others are compared with: agreement on an '
                        'unlabelled bag (required there), and the ratios of report.md (default: '
                        'the slowest configuration, so that reductions read as savings)')
    p.add_argument('--primary', default=None, help='configuration of the top-level figures')
    p.add_argument('--role', action='append', default=[], metavar='ROLE=NAME',
                   help='benchmark roles: teacher, gfde, no_exits, baseline')
    p.add_argument('--mode', choices=('offline', 'live'), default='offline')
    p.add_argument('--out', default='runs/eval', help='output folder')
    p.add_argument('--limit', type=int, default=None, help='evaluate the first N frames only')
    p.add_argument('--warmup', type=int, default=5, help='untimed frames per configuration')
    p.add_argument('--order', choices=('interleaved', 'blocked'), default='interleaved')
    p.add_argument('--threads', type=int, default=0, help='torch threads (0 = default)')
    # torch rather than 'auto': every configuration on the same, deterministic backend.
    p.add_argument('--backend', default='torch', choices=BACKENDS,
                   help='runtime backend for bundles')
    p.add_argument('--schedule', default=DEFAULT_SCHEDULE, choices=SCHEDULES,
                   help='runtime schedule for bundles')
    p.add_argument('--runtime-warmup', type=int, default=WARMUP.default,
                   help='frames each runtime Classifier runs at load')
    p.add_argument('--energy', default=DEFAULT_ENERGY, choices=ENERGY_SOURCES,
                   help='energy counter')
    p.add_argument('--on-unlabelled', choices=UNLABELLED_POLICIES, default='error')
    p.add_argument('--on-orphan-labels', choices=ORPHAN_POLICIES, default='error')
    p.add_argument('--tolerance-ns', type=int, default=0,
                   help='largest label-to-frame stamp distance that still matches')
    p.add_argument('--no-sweep', action='store_true', help='skip the exit-threshold sweep')
    p.add_argument('--no-plots', action='store_true')
    p.add_argument('--write-bag', default=None, help='also write frames + results to this bag')
    p.add_argument('--write-bag-storage', choices=STORAGES, default='mcap')
    p.add_argument('--rate', type=float, default=0.0,
                   help='live: publish rate in Hz (0 = the recorded rate)')
    p.add_argument('--result-timeout', type=float, default=5.0,
                   help='live: seconds to wait for the last results after publishing')
    p.add_argument('--from-run', default=None,
                   help='rebuild report and plots from a saved run.json instead of replaying')
    p.add_argument('--quiet', action='store_true', help='no progress bars')
    return p


def _parse_roles(items) -> dict:
    roles = {}
    for item in items:
        role, sep, name = item.partition('=')
        if not sep or role not in ('teacher', 'gfde', 'no_exits', 'baseline'):
            raise ConfigError(f'bad --role {item!r}; expected ROLE=NAME with ROLE one of '
                              'teacher, gfde, no_exits, baseline')
        roles[role] = name
    return roles


def _class_names(configurations) -> tuple:
    names = [tuple(c.labels) for c in configurations if c.labels]
    if any(n != names[0] for n in names[1:]):
        raise ConfigError('configurations disagree on the class names: ' + '; '.join(
            f'{c.spec.name}: {list(c.labels)}' for c in configurations))
    return names[0] if names else ()


def run_evaluation(args) -> dict:
    """Run ``gfde-eval`` with parsed ``args``; return the report dict."""
    out = Path(args.out)
    roles = _parse_roles(args.role)
    if args.from_run:
        run = EvaluationRun.load(args.from_run)
    else:
        if not args.bag:
            raise ConfigError('give a bag to evaluate (or --from-run)')
        specs = [ConfigurationSpec.parse(t) for t in (args.config or [DEFAULT_CONFIG])]
        if args.mode == 'live':
            run = live.run_live_from_args(args, specs)
        else:
            run = _run_offline(args, specs)
    if args.reference is None and not run.labels and len(run.configurations) > 1:
        raise ConfigError('the bag has no labels: name a --reference configuration to compare '
                          'the others with')
    out.mkdir(parents=True, exist_ok=True)
    run.save(out / 'run.json')
    report = report_mod.build_report(run, args.reference, args.primary, roles)
    if not args.no_plots:
        report['plots'] = plots.write_plots(run, report, out)
    (out / 'report.json').write_text(json.dumps(nan_to_none(report), indent=1,
                                                allow_nan=False))
    (out / 'report.md').write_text(report_mod.to_markdown(report))
    if args.write_bag:
        report['written_bag'] = write_results_bag(run, args.write_bag, args.write_bag_storage)
    return report


def _run_offline(args, specs):
    runtime_config = RuntimeConfig(backend=args.backend, threads=args.threads,
                                   schedule=args.schedule, warmup=args.runtime_warmup)
    configurations = []
    meter = None
    try:
        for spec in specs:
            configurations.append(build_configuration(spec, runtime_config))
        class_names = _class_names(configurations)
        frames = read_labelled_frames(
            args.bag, args.image_topic, args.label_topic, args.sidecar,
            class_names=class_names or None, on_unlabelled=args.on_unlabelled,
            on_orphan_labels=args.on_orphan_labels, tolerance_ns=args.tolerance_ns,
            limit=args.limit)
        source = {'bag': str(args.bag), 'image_topic': args.image_topic,
                  'labels': (f'topic {args.label_topic}' if args.label_topic else
                             f'sidecar {args.sidecar}' if args.sidecar else 'nowhere'),
                  'configurations': [s.describe() for s in specs]}
        meter = EnergyMeter.create(args.energy)
        if meter.available:
            meter.measure_baseline()
        run = offline.run_offline(frames, configurations, warmup=args.warmup, order=args.order,
                                  meter=meter, progress=not args.quiet, source=source,
                                  class_names=class_names or frames.class_names or (),
                                  threads=args.threads)
        if not args.no_sweep:
            targets, kind = _sweep_targets(run, args.reference)
            done = {}
            for conf in configurations:
                if isinstance(conf, GfdeConfiguration) and conf.num_exits > 1 and \
                        conf.spec.policy == DEFAULT_POLICY and targets is not None:
                    key = conf.bundle_path
                    if key not in done:
                        done[key] = offline.bundle_tradeoff(conf.bundle, frames, targets, kind)
                    run.tradeoff[conf.spec.name] = done[key]
        return run
    finally:
        for conf in configurations:
            conf.close()
        if meter is not None:
            meter.close()


def _sweep_targets(run, reference):
    if run.labels is not None and all(v is not None for v in run.labels):
        return np.asarray(run.labels, dtype=np.int64), 'labels'
    if reference:
        return np.asarray(run.configuration(reference).class_id, dtype=np.int64), \
            f'agreement with {reference}'
    return None, ''


def main(argv=None) -> int:
    """Run ``gfde-eval``; returns the process exit status."""
    args = build_parser().parse_args(argv)
    try:
        report = run_evaluation(args)
    except GfdeError as exc:
        print(f'gfde-eval: error: {exc}', file=sys.stderr)
        return 2
    head = report['latency_ms']
    acc = report['accuracy']
    print(f"{report['primary']}: {report['frames']} frames, accuracy "
          f"{'n/a' if acc is None else f'{100 * acc:.2f}%'}, latency p50 {head['p50']:.3f} ms "
          f"p99 {head['p99']:.3f} ms; report in {args.out}/report.md")
    return 0


if __name__ == '__main__':
    sys.exit(main())
