# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
PNG plots of an evaluation report.

Latency distributions, exit histograms, the exit-threshold trade-off and confusion matrices,
drawn with matplotlib's Agg backend (no display needed). Each ``*_figure`` function builds one
figure, so tests can look at what a reader will see; :func:`write_plots` chooses those the run
has something to show in, and saves them.
"""

from pathlib import Path

import numpy as np

PLOT_FILES = {
    'latency': 'latency.png',
    'exits': 'exit_histogram.png',
    'tradeoff': 'tradeoff.png',
    'confusion': 'confusion.png',
}


def _pyplot():
    # matplotlib here, not at the top: the report and its JSON need none of it (--no-plots).
    import matplotlib
    matplotlib.use('Agg')  # files only: evaluation runs on headless robots and CI
    import matplotlib.pyplot as plt
    return plt


def _plain_log_ticks(axis) -> None:
    """Label a log axis with plain numbers ('20', '6'), not '2x10^1', '6x10^0'."""
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda value, _: f'{value:g}')
    axis.set_major_formatter(plain)
    axis.set_minor_formatter(plain)


def latency_figure(run):
    """Latency distribution of every configuration (box plot over frames, log scale)."""
    plt = _pyplot()
    data, names = [], []
    for records in run.configurations:
        values = np.asarray(records.latency_ms, dtype=np.float64)
        values = values[np.isfinite(values)]
        if values.size:
            data.append(values)
            names.append(records.name)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.4 * len(names) + 2), 4.2))
    ax.boxplot(data, whis=(1, 99), showfliers=False)
    ax.set_xticks(range(1, len(names) + 1), names)
    for i, values in enumerate(data, start=1):
        jitter = np.random.default_rng(i).uniform(-0.18, 0.18, values.size)
        ax.scatter(i + jitter, values, s=3, alpha=0.25)
        ax.text(i, np.percentile(values, 99), f'p50 {np.median(values):.2f}', ha='center',
                va='bottom', fontsize=8)
    ax.set_yscale('log')
    _plain_log_ticks(ax.yaxis)
    ax.set_ylabel('latency per frame (ms, log scale)')
    # Two lines: one would be clipped by the narrow figure of one or two configurations.
    ax.set_title(f'Latency per configuration\n({run.mode}, {run.frames} frames; '
                 'whiskers p1-p99)', fontsize=10)
    ax.grid(True, axis='y', alpha=0.3)
    fig.tight_layout()
    return fig


def exit_histogram_figure(report: dict):
    """
    Share of frames leaving at each exit, grouped by configuration; None without exits.

    Only configurations with early exits are drawn: a model without them (the teacher) has no
    exit to choose and would read as leaving at exit 0 on every frame.
    """
    summaries = [s for s in report['configurations']
                 if len(s['exit_histogram']['counts']) > 1]
    if not summaries:
        return None
    plt = _pyplot()
    most = max(len(s['exit_histogram']['counts']) for s in summaries)
    width = 0.8 / max(1, len(summaries))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * most + 3), 4.2))
    for j, s in enumerate(summaries):
        fractions = s['exit_histogram']['fractions']
        x = np.arange(len(fractions)) + (j - (len(summaries) - 1) / 2) * width
        ax.bar(x, [100 * f for f in fractions], width, label=s['name'])
    ax.set_xticks(range(most), [f'exit {k}' + (' (final)' if k == most - 1 else '')
                                for k in range(most)])
    ax.set_ylabel('frames leaving here (%)')
    ax.set_ylim(0, 105)
    ax.set_title('Exit taken per frame')
    ax.legend(fontsize=8)
    ax.grid(True, axis='y', alpha=0.3)
    fig.tight_layout()
    return fig


def tradeoff_figure(curves: list, target: str):
    """
    Accuracy (or agreement) and backbone share against the shared exit threshold.

    :param curves: the configuration summaries that carry a ``tradeoff`` sweep.
    :param target: what the y axis measures: 'accuracy' or 'agreement with NAME'.
    """
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for s in curves:
        t = s['tradeoff']
        thr = [p['threshold'] for p in t['curve']]
        acc = [100 * p['accuracy'] for p in t['curve']]
        cost = [100 * p['blocks_fraction'] for p in t['curve']]
        line, = left.plot(thr, acc, marker='o', ms=3, label=f"{s['name']}: {t['target']}")
        left.plot(thr, cost, ls='--', color=line.get_color(), label=f"{s['name']}: backbone used")
        right.plot(cost, acc, marker='o', ms=3, color=line.get_color(), label=s['name'])
        op = t['operating_point']
        right.scatter([100 * op['blocks_fraction']], [100 * op['accuracy']], marker='*', s=150,
                      color=line.get_color(), zorder=5, label=f"{s['name']} calibrated")
    left.set_xlabel('exit threshold (same for every early exit)')
    left.set_ylabel('%')
    left.set_title(f'{target} and compute vs threshold')
    left.legend(fontsize=7)
    left.grid(True, alpha=0.3)
    right.set_xlabel('backbone used (% of blocks, mean over frames)')
    right.set_ylabel(f'{target} (%)')
    right.set_title('trade-off curve')
    right.legend(fontsize=7)
    right.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig


def confusion_figure(summaries: list, class_names):
    """Row-normalised confusion matrices, one panel per summary that carries one."""
    plt = _pyplot()
    names = class_names or [str(i) for i in range(len(summaries[0]['confusion_matrix']))]
    n = len(summaries)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    side = 3.2 + 0.25 * len(names)
    fig, axes = plt.subplots(rows, cols, figsize=(side * cols, side * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis('off')
    for ax, s in zip(axes.flat, summaries):
        counts = np.asarray(s['confusion_matrix'], dtype=np.float64)
        norm = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        ax.imshow(norm, cmap='Blues', vmin=0, vmax=1)
        ticks = range(len(names))
        ax.set_xticks(ticks, names, rotation=60, ha='right', fontsize=7)
        ax.set_yticks(ticks, names, fontsize=7)
        for (i, j), c in np.ndenumerate(counts):
            if c:
                ax.text(j, i, int(c), ha='center', va='center', fontsize=6,
                        color='white' if norm[i, j] > 0.5 else 'black')
        acc = s.get('accuracy')
        ax.set_title(f"{s['name']} (accuracy {100 * acc:.1f}%)" if acc is not None
                     else s['name'], fontsize=9)
        ax.set_xlabel('predicted', fontsize=8)
        ax.set_ylabel('true', fontsize=8)
    fig.tight_layout()
    return fig


def write_plots(run, report: dict, out_dir) -> list:
    """Write every applicable plot into ``out_dir``; return the file names written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    curves = [s for s in report['configurations'] if s.get('tradeoff')]
    target = 'accuracy' if report['labelled'] else f"agreement with {report.get('reference')}"
    labelled = [s for s in report['configurations'] if s.get('confusion_matrix')]
    figures = (('latency', latency_figure(run)), ('exits', exit_histogram_figure(report)),
               ('tradeoff', tradeoff_figure(curves, target) if curves else None),
               ('confusion', confusion_figure(labelled, report.get('class_names'))
                if labelled else None))
    written = []
    for key, fig in figures:
        if fig is not None:
            fig.savefig(out_dir / PLOT_FILES[key], dpi=120)
            _pyplot().close(fig)
            written.append(PLOT_FILES[key])
    return written
