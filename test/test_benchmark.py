# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""The model benchmark (evaluation/benchmark.py, tools/benchmark_report.py) on tiny bundles."""

import importlib.util
import json
from pathlib import Path

from gfde_perception.bundle import Bundle, save_bundle
from gfde_perception.errors import ConfigError
from gfde_perception.evaluation.benchmark import (
    benchmark_markdown, check_targets, describe_bundle, pareto_front, readme_summary, Row,
    run_benchmark)
from gfde_perception.models import build_model
from gfde_perception.preprocessing import PreprocessSpec
import numpy as np
import pytest
from runtime_fixtures import make_tiny_bundle
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def rows(tmp_path_factory):
    folder = tmp_path_factory.mktemp('bench')
    make_tiny_bundle(folder, gray=True, num_classes=4)
    torch.manual_seed(3)
    cnn = build_model('cnn-28', img_size=16, in_chans=1, num_classes=4).eval()
    spec = PreprocessSpec(input_size=(16, 16), channel_order='gray', mean=(0.5,), std=(0.25,))
    labels = [f'class{i}' for i in range(4)]
    save_bundle(Bundle.from_model(cnn, 'cnn', spec, labels), folder / 'cnn.gfde')
    tiny = str(folder / 'tiny.gfde')
    return [Row('teacher', str(folder / 'cnn.gfde')), Row('cnn', str(folder / 'cnn.gfde')),
            Row('no_exits', tiny, 'final'), Row('gfde', tiny, 'calibrated')]


@pytest.fixture(scope='module')
def result(rows):
    rng = np.random.default_rng(0)
    frames = [(rng.integers(0, 256, (16, 16), dtype=np.uint8), int(i % 4), i)
              for i in range(24)]
    return run_benchmark(rows, frames, backends=('torch',), repeats=2, block=4, warmup=2,
                         threads=1, progress=False, log=lambda line: None)


def test_every_row_runs_every_frame_and_ratios_come_from_the_same_repeat(result):
    summary = result['backends']['torch']['summary']
    assert set(summary['roles']) == {'teacher', 'cnn', 'no_exits', 'gfde'}
    assert len(result['backends']['torch']['repeats']) == 2
    for role in summary['roles'].values():
        assert 0.0 <= role['accuracy'] <= 1.0 and role['mean_ms'] > 0
    # The same bundle, final exit only: every frame ran the whole backbone.
    assert summary['roles']['no_exits']['exit_fractions'][-1] == 1.0
    ratio = summary['ratios']['gfde/cnn']
    assert len(ratio['mean_ratio_per_repeat']) == 2
    assert ratio['mean_ratio'] == pytest.approx(float(np.median(ratio['mean_ratio_per_repeat'])))


def test_rows_describe_their_bundles(result, rows):
    described = {r['role']: r['bundle'] for r in result['rows']}
    assert described['cnn']['family'] == 'convnet' and described['gfde']['family'] == 'gfde'
    cnn = build_model('cnn-28', img_size=16, in_chans=1, num_classes=4)
    assert described['cnn']['params'] == sum(p.numel() for p in cnn.parameters())
    assert described['cnn']['file_bytes'] == Path(rows[1].path).stat().st_size
    assert described['gfde']['full_macs'] > 0
    assert describe_bundle(rows[1].path) == described['cnn']


def test_targets_and_pages_are_computed_from_the_result(result):
    summary = result['backends']['torch']['summary']
    targets = {t['target']: t for t in check_targets(summary)}
    ratio = summary['ratios']['gfde/cnn']['mean_ratio']
    assert targets['gfde_vs_cnn_latency']['met'] == (ratio <= 0.5)
    acc = {r: summary['roles'][r]['accuracy'] for r in ('gfde', 'cnn')}
    assert targets['gfde_vs_cnn_accuracy']['met'] == (acc['gfde'] >= acc['cnn'])
    page = benchmark_markdown(result, 'python tools/benchmark_report.py')
    assert f'{ratio:.3f}x' in page and '## The rows' in page
    table = readme_summary(result, primary='torch')
    assert table.count('\n| ') == 4  # one line per row under the header
    assert f"{100 * acc['gfde']:.2f}%" in table


def test_pareto_front_keeps_only_rows_nothing_beats_on_both():
    points = {'fast': (1.0, 90.0), 'slow_better': (3.0, 95.0), 'dominated': (2.0, 89.0),
              'tie_slower': (1.5, 90.0)}
    assert pareto_front(points) == ['fast', 'slow_better']


def test_roles_are_checked(rows):
    with pytest.raises(ConfigError, match='role'):
        Row('resnet', rows[0].path)
    with pytest.raises(ConfigError, match='unique'):
        run_benchmark([rows[0], rows[0]], [], backends=('torch',))


def test_report_tool_rewrites_only_the_readme_block(result, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the tool changes to the repository; this restores the cwd
    spec = importlib.util.spec_from_file_location('benchmark_report',
                                                  REPO / 'tools' / 'benchmark_report.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    saved = tmp_path / 'benchmark.json'
    saved.write_text(json.dumps(dict(result, command='python tools/benchmark_report.py')))
    readme = tmp_path / 'README.md'
    readme.write_text('intro\n<!-- benchmark:begin -->\nold\n<!-- benchmark:end -->\nrest\n')
    doc = tmp_path / 'docs' / 'BENCHMARK.md'
    assert tool.main(['--from-json', str(saved), '--doc', str(doc), '--readme',
                      str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith('intro\n<!-- benchmark:begin -->\n') and text.endswith(
        '<!-- benchmark:end -->\nrest\n')
    assert 'old' not in text and readme_summary(result).split('\n')[0] in text
    assert (tmp_path / 'docs' / 'benchmark' / 'pareto.png').stat().st_size > 10000
    assert 'python tools/benchmark_report.py' in doc.read_text()
