# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
What a reader of ``report.md`` and the plots sees, from hand-made per-frame records (no model).

Each test pins one thing a report got wrong before: negative "reductions" against the first
configuration, the thread count in the header, dropped frames of a live run, the teacher in the
exit histogram, the clipped latency title and its '2x10^1' log ticks.
"""

import re

from gfde_perception.evaluation import plots
from gfde_perception.evaluation.records import ConfigurationRecords, EvaluationRun, MISSING
from gfde_perception.evaluation.report import build_report, to_markdown
import numpy as np
import pytest

FRAMES = 8
LABELS = [0, 1, 2, 0, 1, 2, 0, 1]


def _records(name, latency_ms, num_exits, exits=None, kind='bundle', dropped=()):
    rng = np.random.default_rng(len(name))
    exits = exits if exits is not None else [0] * FRAMES
    records = ConfigurationRecords(name, {'name': name, 'kind': kind, 'num_exits': num_exits,
                                          'policy': 'calibrated', 'backend': 'torch-cpu'})
    for i in range(FRAMES):
        if i in dropped:
            records.append_drop()
            continue
        records.class_id.append(LABELS[i])
        records.score.append(0.9)
        records.exit_index.append(exits[i])
        records.blocks_fraction.append((exits[i] + 1) / num_exits)
        records.blocks_run.append(exits[i] + 1)
        records.latency_ms.append(float(latency_ms * rng.uniform(0.9, 1.1)))
        records.inference_ms.append(float('nan'))
        records.energy_j.append(float('nan'))
        records.node_total_ms.append(float('nan'))
    records.blocks_total = num_exits
    return records


def _run(mode='offline', threads=1, torch_threads=1, dropped=()):
    # Listed fastest first, as a user would list the model of interest first.
    configurations = [
        _records('gfde', 2.0, 4, exits=[0, 1, 3, 0, 0, 2, 3, 1], dropped=dropped),
        _records('teacher', 9.0, 1, kind='teacher', dropped=dropped),
    ]
    return EvaluationRun(mode=mode, source={'bag': 'bag', 'image_topic': '/camera/image_raw'},
                         class_names=('a', 'b', 'c'), stamps_ns=list(range(FRAMES)),
                         labels=list(LABELS), configurations=configurations,
                         host={'processor': 'x86_64', 'cpu_count': 2, 'torch': '2',
                               'torch_threads': torch_threads, 'cuda': False},
                         settings={'order': 'interleaved', 'warmup': 1, 'threads': threads})


def _section(markdown: str, heading: str) -> list:
    block = markdown.split(heading, 1)[1].split('\n\n')[1]
    return block.splitlines()


def test_without_a_reference_ratios_are_against_the_slowest_configuration():
    markdown = to_markdown(build_report(_run()))
    assert '## Against `teacher` (the slowest' in markdown
    rows = _section(markdown, '## Against')
    assert rows[2].startswith('| gfde vs teacher |')
    reductions = [float(v) for v in re.findall(r'(-?\d+\.\d+)%', rows[2])]
    assert reductions and all(v > 0 for v in reductions), rows[2]
    # A reference, when given, is what the others are compared with.
    named = to_markdown(build_report(_run(), reference='gfde'))
    assert '## Against `gfde`\n' in named


@pytest.mark.parametrize('mode,threads,torch_threads,expected', [
    ('offline', 1, 1, '1 thread,'),
    ('offline', 0, 2, '2 threads,'),
    ('live', 1, 2, '1 thread,'),  # the nodes ran with 1; this process had 2
    ('live', 0, 2, "the nodes' default threads,"),
])
def test_the_header_names_the_threads_the_configurations_ran_with(
        mode, threads, torch_threads, expected):
    header = to_markdown(build_report(_run(mode, threads, torch_threads))).splitlines()[4]
    assert expected in header and '1 threads' not in header


def test_a_live_report_lists_the_frames_each_node_dropped():
    report = build_report(_run('live', dropped=(2, 5)))
    markdown = to_markdown(report)
    table = _section(markdown, '## Configurations')
    assert table[0].endswith('| dropped |')
    assert all(row.endswith(f'| 2 of {FRAMES} |') for row in table[2:])
    assert f'; {FRAMES} frames' in markdown.splitlines()[2]
    assert report['configurations'][0]['frames'] == FRAMES - 2
    run = _run('live', dropped=(2, 5))
    assert run.configurations[0].blocks_run[2] == MISSING


def test_the_exit_histogram_leaves_out_models_without_exits():
    report = build_report(_run())
    fig = plots.exit_histogram_figure(report)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    plots._pyplot().close(fig)
    assert labels == ['gfde']
    teacher_only = build_report(_run())
    teacher_only['configurations'] = [s for s in teacher_only['configurations']
                                      if s['name'] == 'teacher']
    assert plots.exit_histogram_figure(teacher_only) is None


def test_the_latency_plot_title_fits_and_its_log_ticks_are_plain_numbers():
    run = _run('live')
    fig = plots.latency_figure(run)
    try:
        fig.canvas.draw()
        ax = fig.axes[0]
        renderer = fig.canvas.get_renderer()
        title = ax.title.get_window_extent(renderer)
        figure = fig.bbox
        assert title.x0 >= figure.x0 and title.x1 <= figure.x1 and title.y1 <= figure.y1
        labels = [t.get_text() for t in ax.yaxis.get_majorticklabels()
                  + ax.yaxis.get_minorticklabels() if t.get_text()]
        assert labels, 'no tick labels drawn'
        assert all(re.fullmatch(r'\d+(\.\d+)?', text) for text in labels), labels
    finally:
        plots._pyplot().close(fig)
