# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
The model benchmark: GFDE against the networks a user would deploy instead, side by side.

Every row is a ``.gfde`` bundle run by the one runtime path (:class:`~gfde_perception.runtime.
Classifier`: preprocessing, backbone segments, exit heads, gates, result), on the same frames,
backend and thread count, in one process. The protocol is /work/shared/BENCHMARKING.md's:
batch 1, warm-up frames discarded, the rows timed in rotating blocks of frames (never frame by
frame), the whole comparison repeated, and every ratio taken within one repeat and reported as
the median over repeats, with the load average before and after.

A row names a role: ``teacher``, ``cnn`` (a plain small CNN), ``mobilenetv2``, ``no_exits``
(the GFDE student run to its final exit), ``gfde`` (the student with its calibrated exits) and
optionally ``no_distill`` (the same student trained without the teacher). :data:`TARGETS` are
the bars the default model must clear; :func:`check_targets` says which are met, with numbers.
"""

from dataclasses import dataclass
import math
import os
import time
from typing import Optional, Sequence

from gfde_perception.bundle import load_bundle
from gfde_perception.errors import ConfigError
from gfde_perception.evaluation.configurations import build_configuration, ConfigurationSpec
from gfde_perception.evaluation.offline import host_info, run_offline
from gfde_perception.evaluation.report import configuration_summary
from gfde_perception.models.flops import model_summary
from gfde_perception.models.registry import FAMILIES
from gfde_perception.runtime import RuntimeConfig
from gfde_perception.runtime.policies import DEFAULT_POLICY
import numpy as np

ROLES = ('teacher', 'cnn', 'mobilenetv2', 'no_exits', 'no_distill', 'gfde')
# (name, what, candidate role, baseline role, kind, bound). Kinds: 'ratio' (candidate mean
# latency / baseline mean latency <= bound), 'speedup' (baseline / candidate >= bound),
# 'acc_ge' (candidate accuracy >= baseline accuracy - bound points), 'acc_min' (candidate
# accuracy >= bound percent).
TARGETS = (
    ('teacher_accuracy', 'teacher top-1 >= 94.0%', 'teacher', None, 'acc_min', 94.0),
    ('gfde_vs_cnn_accuracy', 'GFDE with exits at least as accurate as the plain CNN', 'gfde',
     'cnn', 'acc_ge', 0.0),
    ('gfde_vs_cnn_latency', 'GFDE mean latency <= 0.5x the plain CNN', 'gfde', 'cnn', 'ratio',
     0.5),
    ('gfde_vs_teacher_latency', 'GFDE mean latency <= 0.25x the teacher', 'gfde', 'teacher',
     'ratio', 0.25),
    ('gfde_vs_mobilenetv2_latency', 'GFDE mean latency <= 0.5x MobileNetV2', 'gfde',
     'mobilenetv2', 'ratio', 0.5),
    ('gfde_vs_teacher_accuracy', 'GFDE within 1.0 point of the teacher', 'gfde', 'teacher',
     'acc_ge', 1.0),
    ('exits_speedup', 'exits: >= 2x less mean latency than the same student without them',
     'gfde', 'no_exits', 'speedup', 2.0),
    ('exits_accuracy', 'exits: <= 0.5 point loss against the same student without them',
     'gfde', 'no_exits', 'acc_ge', 0.5),
)


@dataclass(frozen=True)
class Row:
    """One benchmarked model: a role, a bundle path and the exit policy it runs with."""

    role: str
    path: str
    policy: str = DEFAULT_POLICY

    def __post_init__(self):
        if self.role not in ROLES:
            raise ConfigError(f'benchmark role must be one of {ROLES}, got {self.role!r}')

    def spec(self) -> ConfigurationSpec:
        """Return the evaluation configuration of this row."""
        kind = 'teacher' if self.role == 'teacher' else 'bundle'
        return ConfigurationSpec(self.role, kind, self.path,
                                 DEFAULT_POLICY if kind == 'teacher' else self.policy)


def describe_bundle(path) -> dict:
    """Describe a row's bundle: model family, size, cost and training length (provenance)."""
    bundle = load_bundle(path)
    params = sum(int(np.prod(v.shape)) for k, v in bundle.state_dict.items()
                 if not k.endswith(('running_mean', 'running_var', 'num_batches_tracked')))
    test = (bundle.metrics.get('exits') or {}).get('test') or {}
    teacher = bundle.provenance.get('step') == 'teacher'
    student = (bundle.provenance.get('config') or {}).get('student') or {}
    epochs = (bundle.metrics.get('fine_tune_epochs') if teacher
              else (student.get('optim') or {}).get('epochs'))
    family = next((name for name, entry in FAMILIES.items() if type(bundle.config) is entry[0]),
                  type(bundle.config).__name__)
    full = test.get('full_macs') or model_summary(bundle.build_model())['macs_to_exit'][-1]
    return {'name': bundle.name, 'family': family, 'params': params,
            'file_bytes': os.path.getsize(path), 'full_macs': full,
            'expected_macs': test.get('expected_macs', full), 'epochs': epochs,
            'distillation': None if teacher else student.get('distillation')}


def _summaries(run) -> dict:
    return {r.name: configuration_summary(run, r) for r in run.configurations}


def run_benchmark(rows: Sequence[Row], frames: Sequence, *, backends=('onnxruntime', 'torch'),
                  repeats: int = 3, block: int = 200, warmup: int = 50, threads: int = 1,
                  progress: bool = True, log=print) -> dict:
    """
    Run every row on every frame, per backend, ``repeats`` times; return a JSON-ready result.

    :param rows: the models (roles unique).
    :param frames: a list of ``(image, label, stamp_ns)``.
    :param backends: runtime backends, each timed separately (rows never mix backends).
    :param repeats: whole comparisons per backend; ratios are medians over them.
    :param block: frames per block of the rotating order.
    :param warmup: frames run untimed through every row first.
    :param threads: intra-op threads of every row (torch and onnxruntime alike).
    :return: ``{'rows', 'backends': {name: {'repeats': [...], 'summary': {...}}}, 'host',
        'settings', 'load'}``.
    """
    roles = [r.role for r in rows]
    if len(set(roles)) != len(roles):
        raise ConfigError(f'benchmark roles must be unique, got {roles}')
    if repeats < 1:
        raise ConfigError(f'repeats must be >= 1, got {repeats}')
    result = {'rows': [{'role': r.role, 'path': r.path, 'policy': r.policy,
                        'bundle': describe_bundle(r.path)} for r in rows],
              'backends': {}, 'host': host_info(threads),
              'settings': {'repeats': repeats, 'block': block, 'warmup': warmup,
                           'threads': threads, 'frames': len(frames),
                           'order': 'rotating-blocks'},
              'load': {'before': list(os.getloadavg())}}
    started = time.perf_counter()
    for backend in backends:
        config = RuntimeConfig(backend=backend, threads=threads)
        configurations = [build_configuration(r.spec(), config) for r in rows]
        try:
            names = {c.spec.name: c.describe().get('backend') for c in configurations}
            log(f'benchmark: {backend}: rows run on {names}')
            repeat_summaries = []
            for i in range(repeats):
                # Rotate the starting row too, so no row always runs first in a block.
                order = configurations[i % len(rows):] + configurations[:i % len(rows)]
                run = run_offline(frames, order, warmup=warmup if i == 0 else 0,
                                  order='rotating-blocks', block=block, progress=progress,
                                  threads=threads)
                repeat_summaries.append(_summaries(run))
                log(f'benchmark: {backend} repeat {i + 1}/{repeats} done, load '
                    f'{os.getloadavg()[0]:.2f}')
            result['backends'][backend] = {
                'runs_on': names, 'repeats': repeat_summaries,
                'summary': summarize(repeat_summaries)}
        finally:
            for c in configurations:
                c.close()
    result['load']['after'] = list(os.getloadavg())
    result['seconds'] = time.perf_counter() - started
    return result


def summarize(repeats: Sequence[dict]) -> dict:
    """Per role: accuracy, medians over repeats of p50/mean/p99, exit fractions; ratios."""
    roles = list(repeats[0])
    out = {'roles': {}, 'ratios': {}}
    for role in roles:
        lat = [r[role]['latency_ms'] for r in repeats]
        accs = {r[role]['accuracy'] for r in repeats}
        if len(accs) != 1:
            raise ConfigError(f'{role}: predictions differ between repeats ({sorted(accs)})')
        first = repeats[0][role]
        out['roles'][role] = {
            'accuracy': first['accuracy'], 'frames': first['frames'],
            'p50_ms': float(np.median([v['p50'] for v in lat])),
            'mean_ms': float(np.median([v['mean'] for v in lat])),
            'p99_ms': float(np.median([v['p99'] for v in lat])),
            'mean_ms_per_repeat': [v['mean'] for v in lat],
            'exit_fractions': first['exit_histogram']['fractions'],
            'blocks_fraction': first['blocks_fraction'],
            'backend': first['info'].get('backend'),
        }
    for cand in roles:
        for base in roles:
            if cand == base:
                continue
            ratios = [r[cand]['latency_ms']['mean'] / r[base]['latency_ms']['mean']
                      for r in repeats]
            p50 = [r[cand]['latency_ms']['p50'] / r[base]['latency_ms']['p50'] for r in repeats]
            out['ratios'][f'{cand}/{base}'] = {
                'mean_ratio': float(np.median(ratios)), 'mean_ratio_per_repeat': ratios,
                'p50_ratio': float(np.median(p50))}
    return out


def check_targets(summary: dict) -> list:
    """Evaluate :data:`TARGETS` on one backend's summary; missing roles are 'not measured'."""
    roles, ratios = summary['roles'], summary['ratios']
    out = []
    for key, what, cand, base, kind, bound in TARGETS:
        row = {'target': key, 'what': what, 'value': None, 'met': None, 'detail': ''}
        if cand not in roles or (base is not None and base not in roles):
            row['detail'] = 'not measured (row missing)'
            out.append(row)
            continue
        if kind == 'acc_min':
            value = 100.0 * roles[cand]['accuracy']
            row.update(value=value, met=value >= bound, detail=f'{value:.2f}%')
        elif kind == 'acc_ge':
            gap = 100.0 * (roles[base]['accuracy'] - roles[cand]['accuracy'])
            row.update(value=gap, met=gap <= bound + 1e-9,
                       detail=f'{100 * roles[cand]["accuracy"]:.2f}% vs '
                              f'{100 * roles[base]["accuracy"]:.2f}% ({-gap:+.2f} points)')
        else:
            ratio = ratios[f'{cand}/{base}']['mean_ratio']
            if kind == 'ratio':
                row.update(value=ratio, met=ratio <= bound, detail=f'{ratio:.3f}x')
            else:
                row.update(value=1.0 / ratio, met=1.0 / ratio >= bound,
                           detail=f'{1.0 / ratio:.2f}x less')
        out.append(row)
    return out


def _fmt(value, spec='.3f') -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return '-'
    return format(value, spec)


def benchmark_markdown(result: dict, command: str, plots: Sequence[str] = (),
                       primary: str = 'onnxruntime') -> str:
    """Render docs/BENCHMARK.md from a :func:`run_benchmark` result (nothing typed by hand)."""
    s = result['settings']
    host = result['host']
    lines = [
        '# Benchmark: GFDE against the networks a user would deploy instead', '',
        f'Generated by `{command}`. Every figure on this page is computed from that run '
        f"(`{result.get('json', 'benchmark.json')}`); nothing is typed by hand.", '',
        f"Protocol: {s['frames']} frames per row, batch 1, {s['threads']} thread(s) for every "
        'row and backend, preprocessing included, every row run by the same runtime path '
        '(`gfde_perception.runtime.Classifier`); rows timed in rotating blocks of '
        f"{s['block']} frames, {s['warmup']} warm-up frames discarded, the whole comparison "
        f"repeated {s['repeats']} times per backend; latencies are medians over the repeats "
        'and every ratio is taken within a repeat, then the median over repeats is reported.',
        '',
        f"Machine: {host.get('machine')} ({host.get('cpu_count')} CPUs), torch "
        f"{host.get('torch')}, CUDA: {'yes' if host.get('cuda') else 'no'}. Load average "
        f"before {', '.join(f'{v:.2f}' for v in result['load']['before'])}, after "
        f"{', '.join(f'{v:.2f}' for v in result['load']['after'])}; run took "
        f"{result.get('seconds', 0) / 60:.1f} min.", '']
    lines += ['## The rows', '',
              '| row | bundle | family | params | MMACs (full) | MMACs (expected) | epochs | '
              'distillation | file |', '|---|---|---|---|---|---|---|---|---|']
    for row in result['rows']:
        b = row.get('bundle') or {}
        macs = [b.get('full_macs'),
                b.get('full_macs') if row['policy'] == 'final' else b.get('expected_macs')]
        lines.append(
            f"| {row['role']} | `{os.path.basename(row['path'])}` ({row['policy']}) | "
            f"{b.get('family', '-')} | {b.get('params', 0) / 1e6:.2f} M | "
            + ' | '.join(_fmt(m / 1e6 if m else None, '.1f') for m in macs)
            + f" | {b.get('epochs') or '-'} | {b.get('distillation') or '-'} | "
            f"{b.get('file_bytes', 0) / 1e6:.2f} MB |")
    lines.append('')
    for backend, data in result['backends'].items():
        summary = data['summary']
        lines += [f'## Backend: {backend}', '',
                  '| row | model | top-1 | p50 ms | mean ms | p99 ms | mean vs cnn | '
                  'exits taken |', '|---|---|---|---|---|---|---|---|']
        for row in result['rows']:
            r = summary['roles'].get(row['role'])
            if r is None:
                continue
            vs = summary['ratios'].get(f"{row['role']}/cnn", {}).get('mean_ratio')
            exits = ' / '.join(f'{100 * f:.0f}%' for f in r['exit_fractions'])
            lines.append(
                f"| {row['role']} | `{os.path.basename(row['path'])}` | "
                f"{100 * r['accuracy']:.2f}% | {_fmt(r['p50_ms'])} | {_fmt(r['mean_ms'])} | "
                f"{_fmt(r['p99_ms'])} | {_fmt(vs, '.2f') + 'x' if vs else '-'} | {exits} |")
        lines += ['', '| target | measured | met |', '|---|---|---|']
        for t in check_targets(summary):
            verdict = {True: 'yes', False: '**no**', None: '-'}[t['met']]
            lines.append(f"| {t['what']} | {t['detail']} | {verdict} |")
        lines.append('')
        if backend == primary:
            lines += ['Mean-latency ratio of GFDE with exits per repeat: ' + '; '.join(
                f'vs {base}: ' + ', '.join(f'{v:.3f}' for v in summary['ratios'].get(
                    f'gfde/{base}', {}).get('mean_ratio_per_repeat', []))
                for base in ('cnn', 'teacher', 'mobilenetv2', 'no_exits')
                if f'gfde/{base}' in summary['ratios']) + '.', '']
    if plots:
        lines += ['## Plots', ''] + [f'![{p}](benchmark/{p})' for p in plots] + ['']
    return '\n'.join(lines)


ROLE_TITLES = {'teacher': 'teacher', 'cnn': 'plain CNN', 'mobilenetv2': 'MobileNetV2',
               'no_distill': 'GFDE trained without the teacher',
               'no_exits': 'GFDE, final exit only',
               'gfde': '**GFDE with exits** (the embedded default)'}


def readme_summary(result: dict, primary: str = 'onnxruntime') -> str:
    """Render the README's results table: every row, accuracy, mean latency, targets."""
    backends = list(result['backends'])
    head = ('| model | params | top-1 | ' + ' | '.join(
        f'{b} mean ms (vs CNN)' for b in backends) + ' |')
    lines = [head, '|' + '---|' * (3 + len(backends))]
    for row in result['rows']:
        role = row['role']
        b = row.get('bundle') or {}
        first = result['backends'][backends[0]]['summary']['roles'][role]
        cells = []
        for backend in backends:
            summary = result['backends'][backend]['summary']
            r = summary['roles'][role]
            vs = summary['ratios'].get(f'{role}/cnn', {}).get('mean_ratio')
            cells.append(f"{_fmt(r['mean_ms'])} ({_fmt(vs, '.2f') + 'x' if vs else '1x'})")
        lines.append(f"| {ROLE_TITLES.get(role, role)}: `{b.get('family', '-')}` | "
                     f"{b.get('params', 0) / 1e6:.2f} M | {100 * first['accuracy']:.2f}% | "
                     + ' | '.join(cells) + ' |')
    primary = primary if primary in result['backends'] else backends[0]
    targets = check_targets(result['backends'][primary]['summary'])
    missed = [t for t in targets if t['met'] is False]
    met = [t for t in targets if t['met']]
    lines += ['', f'Targets on {primary}: {len(met)} met, {len(missed)} missed'
              + (': ' + '; '.join(f"{t['what']} ({t['detail']})" for t in missed)
                 if missed else '') + '.']
    return '\n'.join(lines)


def pareto_front(points: dict) -> list:
    """Names of the rows no other row beats on both accuracy and mean latency, fastest first."""
    front, best = [], -1.0
    for name, (ms, acc) in sorted(points.items(), key=lambda kv: (kv[1][0], -kv[1][1])):
        if acc > best:
            front.append(name)
            best = acc
    return front


def plot_pareto(result: dict, path, title: Optional[str] = None) -> None:
    """Accuracy against mean latency: one panel per backend, every row, the Pareto front."""
    import matplotlib
    matplotlib.use('Agg')  # files only: benchmarks run on headless robots and CI
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter

    colours = dict(zip(ROLES, ('tab:red', 'tab:blue', 'tab:purple', 'tab:orange', 'tab:brown',
                               'tab:green')))
    backends = list(result['backends'])
    fig, axes = plt.subplots(1, len(backends), figsize=(5.2 * len(backends), 4.6), sharey=True,
                             squeeze=False)
    for ax, backend in zip(axes[0], backends):
        roles = result['backends'][backend]['summary']['roles']
        points = {role: (r['mean_ms'], 100 * r['accuracy']) for role, r in roles.items()}
        front = pareto_front(points)
        ax.step([points[n][0] for n in front], [points[n][1] for n in front], where='post',
                color='grey', linestyle='--', linewidth=1, zorder=1,
                label='Pareto front (no row is both faster and more accurate)')
        for role, (ms, acc) in points.items():
            ax.scatter(ms, acc, s=80 if role == 'gfde' else 55, c=colours.get(role, 'k'),
                       marker='*' if role == 'gfde' else 'o', edgecolors='black',
                       linewidths=0.5, zorder=3)
            ax.annotate(role, (ms, acc), textcoords='offset points', xytext=(6, 4), fontsize=8)
        ax.set_xscale('log')
        ax.xaxis.set_major_formatter(FormatStrFormatter('%g'))
        ax.xaxis.set_minor_formatter(FormatStrFormatter('%g'))
        ax.tick_params(axis='x', which='minor', labelsize=7)
        ax.set_xlabel('mean ms per frame, preprocessing included (log)')
        ax.set_title(f'{backend}, {result["settings"]["threads"]} thread(s)', fontsize=10)
        ax.grid(True, which='both', alpha=0.3)
        ax.legend(fontsize=7, loc='lower right')
    axes[0][0].set_ylabel('top-1 accuracy (%)')
    fig.suptitle(title or 'Accuracy against mean latency (up and left is better)')
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
