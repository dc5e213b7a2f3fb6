# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
tools/bench_node.py: the accounting identity it checks, and smoke runs of both modes.

The benchmark runs in a subprocess on this test run's DDS domain (conftest) with a tiny bundle;
its figures are printed, never checked against a time.
"""

import importlib.util
import os
from pathlib import Path
import subprocess
import sys

import pytest
from runtime_fixtures import make_tiny_bundle

pytestmark = [pytest.mark.ros, pytest.mark.benchmark]

SCRIPT = Path(__file__).resolve().parents[1] / 'tools' / 'bench_node.py'


def _load_bench():
    spec = importlib.util.spec_from_file_location('bench_node', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_accounting_adds_every_counted_reason_and_names_the_rest():
    accounting = _load_bench().accounting
    before = {'frames_received': '10', 'frames_processed': '8', 'dropped.superseded': '2',
              'dropped.bad_input': '0', 'dropped.bad_input.truncated': '0'}
    after = {'frames_received': '105', 'frames_processed': '90', 'dropped.superseded': '7',
             'dropped.bad_input': '3', 'dropped.bad_input.truncated': '3',
             'dropped.lost_before_callback': '4'}  # a reason the node may add later
    books = accounting(100, before, after)
    assert books['processed'] == 82 and books['received'] == 95
    # bad_input.<kind> refines bad_input: counted once; a new top-level reason is counted.
    assert books['dropped'] == {'bad_input': 3, 'lost_before_callback': 4, 'superseded': 5}
    assert books['unaccounted'] == 100 - 82 - 12
    assert accounting(94, before, after)['unaccounted'] == 0


@pytest.fixture(scope='module')
def tiny_bundle(tmp_path_factory):
    folder = tmp_path_factory.mktemp('bench')
    make_tiny_bundle(folder)
    return str(folder / 'tiny.gfde')


def _run(args, timeout=240, env=None):
    result = subprocess.run([sys.executable, str(SCRIPT), '--backend', 'torch', '--threads', '1',
                             *args], capture_output=True, text=True, timeout=timeout, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_comparison_reports_bare_subscriber_and_node_side_by_side(tiny_bundle):
    out = _run(['--bundle', tiny_bundle, '--frames', '6', '--repeats', '1', '--rates', '20,50',
                '--seconds', '0.5'])
    for line in ('load average before', 'load average after', 'JPEG decode',
                 'bare subscriber (DDS + classify + result)', 'classifier node end to end',
                 "node's own overhead (node - bare subscriber)", 'highest camera rate sustained',
                 'floods from an independent camera process', 'throughput under the 50 Hz'):
        assert line in out, line
    rows = [line.split() for line in out.splitlines() if line.strip().startswith(('20 ', '50 '))]
    assert {(row[0], row[1]) for row in rows} == {('20', 'bare'), ('20', 'node'),
                                                  ('50', 'bare'), ('50', 'node')}
    for row in rows:
        if row[1] == 'node':
            # sent, results, res/s, superseded, lost, other, unaccounted: every frame the
            # independent camera sent is in the node's books.
            assert int(row[8]) == 0, f'unaccounted frames at {row[0]} Hz: {row}'


def test_soak_reports_rss_lag_and_the_identity(tiny_bundle):
    out = _run(['--bundle', tiny_bundle, '--soak', '0.1', '--soak-rate', '30',
                '--interval', '2'])
    assert 'identity at the end: published 180 = processed' in out
    assert 'unaccounted 0' in out
    assert 'RSS trend' in out and 'lag trend' in out


def test_startup_times_the_first_result_of_a_node_process(tiny_bundle, tmp_path):
    # The node process keeps its load-time decisions in a cache of this test's own.
    out = _run(['--bundle', tiny_bundle, '--startup', '1'],
               env=dict(os.environ, GFDE_CACHE_DIR=str(tmp_path)))
    row = next(line.split() for line in out.splitlines() if line.strip().startswith('0 '))
    assert float(row[1]) > 0 and float(row[2]) > 0, row  # first result and ready, in s
    assert 'bundle' in out and 'backend' in out  # the node's own split of the load time
