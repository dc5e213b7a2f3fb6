# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""Smoke test of tools/bench_runtime.py on a tiny bundle (figures are printed, not checked)."""

from conftest import tool_module
import pytest
from runtime_fixtures import make_tiny_bundle

bench_runtime = tool_module('bench_runtime')


@pytest.mark.benchmark
def test_segment_table_lists_every_loaded_backend(tmp_path, capsys):
    bundle = make_tiny_bundle(tmp_path)
    table = bench_runtime.segment_table(bundle, ('torch', 'onnxruntime', 'cuda'), tmp_path,
                                        iters=3, threads=1)
    lines = table.splitlines()
    assert 'torch-cpu' in lines[0] and 'onnxruntime-cpu' in lines[0]
    assert len(lines) == 1 + bundle.config.num_exits + 1  # header, segments, total
    if 'cuda' not in lines[0]:
        assert 'cuda: not available here' in capsys.readouterr().err


@pytest.mark.benchmark
def test_policy_benchmark_runs_side_by_side(tmp_path, capsys):
    make_tiny_bundle(tmp_path)
    status = bench_runtime.main(['--bundle', str(tmp_path / 'tiny.gfde'), '--frames', '6',
                                 '--threads', '1', '--handoff-iters', '20', '--cache-dir',
                                 str(tmp_path), '--json', str(tmp_path / 'bench.json')])
    out = capsys.readouterr().out
    assert status == 0
    for schedule in ('sequential', 'speculative', 'inline'):
        for policy in ('final', 'threshold'):
            assert any(schedule in line and policy in line for line in out.splitlines())
    assert 'worker hand-off in the pipeline' in out and 'hand-off microbenchmark' in out
    assert (tmp_path / 'bench.json').is_file()
