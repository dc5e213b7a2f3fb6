# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
The evaluation report: figures computed from an :class:`EvaluationRun`, as JSON and Markdown.

Every figure is computed here from the per-frame records, and every ratio compares two
configurations of the same run (same frames, same machine, same timing loop). The JSON's
top-level ``frames``, ``accuracy``, ``latency_ms``, ``exit_histogram`` and ``energy`` describe
the *primary* configuration (the first one, unless chosen); ``configurations`` holds all of them
and ``comparisons`` every pair.
"""

import math
from typing import Optional, Sequence

from gfde_perception.errors import ConfigError
from gfde_perception.evaluation.records import EvaluationRun, MISSING
import numpy as np

SCHEMA = 'gfde-eval-report/1'
PERCENTILES = (50, 90, 99)
# The GFDE paper's headline (GFNet + DeiT distillation + early exits vs its teacher).
PAPER = {'latency_reduction_pct': 38.87, 'energy_reduction_pct': 64.74,
         'max_accuracy_loss_points': 3.0}


def _finite(values) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    return arr[np.isfinite(arr)]


def latency_summary(values) -> dict:
    """p50/p90/p99/mean/min/max/std of the finite latencies in ms (None when there are none)."""
    arr = _finite(values)
    if not arr.size:
        return {f'p{p}': None for p in PERCENTILES} | {'mean': None, 'min': None, 'max': None,
                                                       'std': None}
    out = {f'p{p}': float(np.percentile(arr, p)) for p in PERCENTILES}
    out.update(mean=float(arr.mean()), min=float(arr.min()), max=float(arr.max()),
               std=float(arr.std()))
    return out


def confusion_matrix(labels, predictions, num_classes: int) -> list:
    """Count ``[true][predicted]`` pairs over frames with a label and an answer."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    for y, p in zip(labels, predictions):
        if y is not None and p != MISSING and 0 <= y < num_classes and 0 <= p < num_classes:
            matrix[y, p] += 1
    return matrix.tolist()


def _num_classes(run: EvaluationRun) -> int:
    if run.class_names:
        return len(run.class_names)
    seen = [c for r in run.configurations for c in r.class_id if c != MISSING]
    seen += [y for y in (run.labels or []) if y is not None]
    return max(seen) + 1 if seen else 0


def configuration_summary(run: EvaluationRun, records, reference=None) -> dict:
    """Figures of one configuration (see the module docstring)."""
    pred = np.asarray(records.class_id, dtype=np.int64)
    answered = pred != MISSING
    summary = {'name': records.name, 'info': records.info,
               'frames': int(answered.sum()), 'dropped': int((~answered).sum())}
    if run.labels is not None:
        labels = np.asarray([MISSING if y is None else y for y in run.labels], dtype=np.int64)
        valid = answered & (labels != MISSING)
        summary['accuracy'] = float(np.mean(pred[valid] == labels[valid])) if valid.any() else None
        summary['labelled_frames'] = int(valid.sum())
        summary['confusion_matrix'] = confusion_matrix(run.labels, records.class_id,
                                                       _num_classes(run))
    else:
        summary['accuracy'] = None
    if reference is not None:
        ref = np.asarray(reference.class_id, dtype=np.int64)
        both = answered & (ref != MISSING)
        summary['agreement'] = {
            'reference': reference.name,
            'rate': float(np.mean(pred[both] == ref[both])) if both.any() else None}
    summary['latency_ms'] = latency_summary(records.latency_ms)
    if _finite(records.inference_ms).size:
        summary['runtime_inference_ms'] = latency_summary(records.inference_ms)
    if _finite(records.node_total_ms).size:
        summary['node_total_ms'] = latency_summary(records.node_total_ms)
    mean_ms = summary['latency_ms']['mean']
    summary['throughput_fps'] = 1000.0 / mean_ms if mean_ms else None
    exits = np.asarray(records.exit_index, dtype=np.int64)[answered]
    counts = np.bincount(exits, minlength=records.num_exits).tolist() if exits.size else (
        [0] * records.num_exits)
    total = max(1, sum(counts))
    summary['exit_histogram'] = {'counts': counts, 'fractions': [c / total for c in counts]}
    blocks = _finite(records.blocks_fraction)
    summary['blocks_fraction'] = float(blocks.mean()) if blocks.size else None
    joules = _finite(records.energy_j)
    measured = bool(records.energy_measured and joules.size)
    summary['energy'] = {
        'measured': measured,
        'joules_per_frame': float(joules.mean()) if measured else None,
        'source': records.energy_source if measured else 'none',
        'method': records.energy_method or ('' if measured else 'no energy counter'),
    }
    return summary


def _pct_reduction(baseline, candidate) -> Optional[float]:
    if baseline is None or candidate is None or not baseline:
        return None
    return 100.0 * (1.0 - candidate / baseline)


def compare(baseline: dict, candidate: dict) -> dict:
    """Ratios of ``candidate`` against ``baseline`` (two configuration summaries of one run)."""
    acc_b, acc_c = baseline.get('accuracy'), candidate.get('accuracy')
    lat_b, lat_c = baseline['latency_ms'], candidate['latency_ms']
    e_b, e_c = baseline['energy'], candidate['energy']
    both_measured = e_b['measured'] and e_c['measured']
    return {
        'baseline': baseline['name'], 'candidate': candidate['name'],
        'accuracy_loss_points': (100.0 * (acc_b - acc_c)
                                 if acc_b is not None and acc_c is not None else None),
        'latency_reduction_pct': _pct_reduction(lat_b['mean'], lat_c['mean']),
        'p50_latency_reduction_pct': _pct_reduction(lat_b['p50'], lat_c['p50']),
        'p99_latency_reduction_pct': _pct_reduction(lat_b['p99'], lat_c['p99']),
        'speedup': (lat_b['mean'] / lat_c['mean']
                    if lat_b['mean'] and lat_c['mean'] else None),
        'energy_reduction_pct': (_pct_reduction(e_b['joules_per_frame'], e_c['joules_per_frame'])
                                 if both_measured else None),
        'energy_note': ('' if both_measured else
                        'not measured: no energy counter on this host (no estimate is mixed in)'),
    }


def build_report(run: EvaluationRun, reference: Optional[str] = None,
                 primary: Optional[str] = None, roles: Optional[dict] = None,
                 plots: Sequence[str] = ()) -> dict:
    """
    Compute the report of ``run``.

    :param run: the per-frame records.
    :param reference: configuration whose predictions others are compared with (agreement);
        used instead of accuracy when the bag has no labels.
    :param primary: configuration described by the top-level keys (default: the first).
    :param roles: optional ``{'teacher': name, 'gfde': name, 'no_exits': name,
        'baseline': name}`` for the benchmark summary.
    :param plots: file names of plots produced beside the report.
    :return: a JSON-ready dict.
    :raises ConfigError: an unknown configuration name.
    """
    names = [r.name for r in run.configurations]
    for label, name in (('reference', reference), ('primary', primary)):
        if name is not None and name not in names:
            raise ConfigError(f'{label} configuration {name!r} is not in this run ({names})')
    for role, name in (roles or {}).items():
        if name not in names:
            raise ConfigError(f'role {role} names {name!r}, which is not in this run ({names})')
    ref_records = run.configuration(reference) if reference else None
    summaries = [configuration_summary(run, r, ref_records) for r in run.configurations]
    by_name = {s['name']: s for s in summaries}
    for name, curve in run.tradeoff.items():
        by_name[name]['tradeoff'] = curve
    head = by_name[primary or names[0]]
    comparisons = [compare(b, c) for b in summaries for c in summaries if b is not c]
    return {
        'schema': SCHEMA,
        'mode': run.mode,
        'source': run.source,
        'host': run.host,
        'settings': run.settings,
        'class_names': list(run.class_names),
        'labelled': run.labels is not None,
        'reference': reference,
        'primary': head['name'],
        'frames': head['frames'],
        'accuracy': head['accuracy'],
        'latency_ms': head['latency_ms'],
        'exit_histogram': head['exit_histogram'],
        'energy': head['energy'],
        'configurations': summaries,
        'comparisons': comparisons,
        'roles': dict(roles or {}),
        'paper': dict(PAPER),
        'plots': list(plots),
    }


def find_comparison(report: dict, baseline: str, candidate: str) -> dict:
    """Return the comparison of ``candidate`` against ``baseline`` from a report."""
    for item in report['comparisons']:
        if item['baseline'] == baseline and item['candidate'] == candidate:
            return item
    raise ConfigError(f'no comparison {candidate!r} vs {baseline!r} in the report')


# ----------------------------------------------------------------------------- Markdown


def _fmt(value, spec='.2f', suffix='') -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return 'n/a'
    return f'{value:{spec}}{suffix}'


def _pct(value) -> str:
    return _fmt(None if value is None else 100.0 * value, '.2f', '%')


def configuration_table(report: dict) -> list:
    """Markdown rows: one per configuration (live runs add the frames each node dropped)."""
    quality = 'accuracy' if report['labelled'] else 'agreement'
    live = report['mode'] == 'live'
    rows = [f'| configuration | kind / policy | backend | {quality} | p50 ms | p90 ms | p99 ms '
            '| mean ms | backbone used | exits taken | J/frame |' + (' dropped |' if live else ''),
            '|---|---|---|---|---|---|---|---|---|---|---|' + ('---|' if live else '')]
    for s in report['configurations']:
        info = s['info']
        if report['labelled']:
            q = _pct(s['accuracy'])
        else:
            q = _pct((s.get('agreement') or {}).get('rate'))
        lat = s['latency_ms']
        exits = ' / '.join(str(c) for c in s['exit_histogram']['counts'])
        energy = (_fmt(s['energy']['joules_per_frame'], '.4f') if s['energy']['measured']
                  else 'not measured')
        rows.append(
            f"| {s['name']} | {info.get('kind', '?')} / {info.get('policy') or '-'} | "
            f"{info.get('backend', '?')} | {q} | {_fmt(lat['p50'])} | {_fmt(lat['p90'])} | "
            f"{_fmt(lat['p99'])} | {_fmt(lat['mean'])} | {_pct(s['blocks_fraction'])} | "
            f'{exits} | {energy} |' + (f" {s['dropped']} of {s['frames'] + s['dropped']} |"
                                       if live else ''))
    return rows


def comparison_rows(report: dict, pairs: Sequence[tuple]) -> list:
    """Markdown rows comparing candidate with baseline for each ``(baseline, candidate)``."""
    rows = ['| candidate vs baseline | accuracy loss (points) | mean latency reduction | '
            'p99 latency reduction | speed-up | energy reduction |',
            '|---|---|---|---|---|---|']
    for baseline, candidate in pairs:
        c = find_comparison(report, baseline, candidate)
        energy = (_fmt(c['energy_reduction_pct'], '.2f', '%')
                  if c['energy_reduction_pct'] is not None else 'not measured')
        rows.append(f"| {candidate} vs {baseline} | {_fmt(c['accuracy_loss_points'])} | "
                    f"{_fmt(c['latency_reduction_pct'], '.2f', '%')} | "
                    f"{_fmt(c['p99_latency_reduction_pct'], '.2f', '%')} | "
                    f"{_fmt(c['speedup'], '.2f', 'x')} | {energy} |")
    return rows


def _threads(report: dict) -> str:
    """Return the torch threads the configurations ran with, as the run's settings say."""
    requested = report.get('settings', {}).get('threads') or 0
    if report['mode'] == 'live' and not requested:
        return "the nodes' default threads"  # each node chose; this process cannot tell
    count = requested or report.get('host', {}).get('torch_threads')
    if count is None:
        return '? threads'
    return f"{count} thread{'' if count == 1 else 's'}"


def _host_line(report: dict) -> str:
    host = report.get('host', {})
    settings = report.get('settings', {})
    return (f"Measured on {host.get('processor', '?')} ({host.get('cpu_count', '?')} CPUs, "
            f"torch {host.get('torch', '?')}, {_threads(report)}, "
            f"CUDA: {'yes, ' + host['gpu'] if host.get('cuda') else 'no'}); "
            f"{report['mode']} replay, order {settings.get('order', '?')}, "
            f"warm-up {settings.get('warmup', '?')} frames.")


def _slowest(report: dict) -> str:
    """Name of the configuration with the highest mean latency (the first when none has one)."""
    timed = [s for s in report['configurations'] if s['latency_ms']['mean'] is not None]
    if not timed:
        return report['configurations'][0]['name']
    return max(timed, key=lambda s: s['latency_ms']['mean'])['name']


def to_markdown(report: dict) -> str:
    """Human-readable summary of a report (what ``gfde-eval`` writes as ``report.md``)."""
    src = report.get('source', {})
    head = next(s for s in report['configurations'] if s['name'] == report['primary'])
    lines = ['# gfde-eval report', '',
             f"Bag `{src.get('bag', '?')}`, topic `{src.get('image_topic', '?')}`, "
             f"labels from {src.get('labels', 'nowhere')}; {head['frames'] + head['dropped']} "
             f"frames (primary configuration: `{report['primary']}`).", '',
             _host_line(report), '', '## Configurations', '']
    lines += configuration_table(report)
    if not report['labelled'] and report.get('reference'):
        lines += ['', f"The bag has no labels: quality is agreement with `{report['reference']}`."]
    if report['mode'] == 'live':
        lines += ['', '"dropped": frames published to the node that got no result within the '
                  'wait (superseded in its keep-newest queue, refused, or lost in transport).']
    names = [s['name'] for s in report['configurations']]
    base = report.get('reference') or _slowest(report)
    pairs = [(base, n) for n in names if n != base]
    if pairs:
        why = '' if report.get('reference') else ' (the slowest; choose another with --reference)'
        lines += ['', f'## Against `{base}`{why}', ''] + comparison_rows(report, pairs)
    curves = [s for s in report['configurations'] if s.get('tradeoff')]
    for s in curves:
        t = s['tradeoff']
        op = t['operating_point']
        lines += ['', f"## Exit-threshold trade-off of `{s['name']}` ({t['metric']}, against "
                  f"{t['target']})", '',
                  f"Calibrated thresholds {', '.join(f'{v:.3f}' for v in op['thresholds'])}: "
                  f"{_pct(op['accuracy'])} with {_pct(op['blocks_fraction'])} of the backbone. "
                  'Per-exit accuracy (all frames forced to one exit): '
                  + ', '.join(_pct(a) for a in t['per_exit_accuracy']) + '.', '',
                  '| threshold | accuracy | backbone used | exits taken |', '|---|---|---|---|']
        for p in t['curve'][::2]:
            lines.append(f"| {p['threshold']:.2f} | {_pct(p['accuracy'])} | "
                         f"{_pct(p['blocks_fraction'])} | "
                         f"{' / '.join(str(c) for c in p['exit_histogram'])} |")
    if report.get('plots'):
        lines += ['', '## Plots', ''] + [f'![{p}]({p})' for p in report['plots']]
    return '\n'.join(lines) + '\n'
