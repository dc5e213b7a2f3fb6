# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Split inference over a real rate-limited link: robot and server processes in a network namespace.

The namespace's loopback is shaped with ``tc tbf`` (:class:`ShapedLink`); both processes load
the UDP-only Fast DDS profile, so the features really cross the shaped link. Needs root, ``ip``
and ``tc`` (skipped with that reason elsewhere). Every namespace is deleted, also on failure.
"""

import json
import os
from pathlib import Path
import subprocess
import sys

from gfde_perception.errors import ConfigError
from gfde_perception.evaluation.shaped_link import link_unavailable, ShapedLink
import pytest
from split_fixtures import make_tiny_split_bundle

REPO = Path(__file__).resolve().parents[1]
UDP_PROFILE = REPO / 'config' / 'fastdds_udp_only.xml'

pytestmark = [pytest.mark.ros, pytest.mark.skipif(link_unavailable() is not None,
                                                  reason=f'no shaped link: {link_unavailable()}')]


def _namespaces() -> str:
    return subprocess.run(['ip', 'netns', 'list'], capture_output=True, text=True).stdout


def link_env() -> dict:
    """DDS over UDP only; SUBNET discovery is safe: the namespace has no other interface."""
    env = dict(os.environ, FASTDDS_DEFAULT_PROFILES_FILE=str(UDP_PROFILE),
               ROS_AUTOMATIC_DISCOVERY_RANGE='SUBNET', PYTHONUNBUFFERED='1')
    env.pop('ROS_STATIC_PEERS', None)
    return env


def run_live(link, bundle_path, out, mode, frames, deadline_ms):
    argv = link.wrap([sys.executable, '-m', 'gfde_perception.ros.split_live',
                      '--mode', mode, '--bundle', str(bundle_path), '--server-bundle',
                      str(bundle_path), '--frames', str(frames), '--warmup', '1',
                      '--deadline-ms', str(deadline_ms), '--frame-timeout-s', '20',
                      '--out', str(out)])
    done = subprocess.run(argv, env=link_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(Path(out).read_text())


def test_namespace_is_deleted_also_on_failure():
    with pytest.raises(RuntimeError):
        with ShapedLink(5.0) as link:
            assert link.name in _namespaces()
            raise RuntimeError('boom')
    assert link.name not in _namespaces()
    with pytest.raises(ConfigError):
        ShapedLink(0.0)


def test_features_cross_the_shaped_link_and_each_frame_is_answered_once(tmp_path):
    bundle = make_tiny_split_bundle(tmp_path, split=2, thresholds=(1.0, 1.0))
    path = tmp_path / 'tiny-split.gfde'
    with ShapedLink(5.0) as link:
        result = run_live(link, path, tmp_path / 'served.json', 'split-no-exits', 6, 60000)
        stats = subprocess.run(link.wrap(['tc', '-s', 'qdisc', 'show', 'dev', 'lo']),
                               capture_output=True, text=True).stdout
        # The deadline fallback over the same link: a 1 ms deadline no server can meet.
        late = run_live(link, path, tmp_path / 'late.json', 'split-no-exits', 4, 1.0)
    assert link.name not in _namespaces()
    assert int(stats.split('Sent ', 1)[1].split(' bytes', 1)[0]) > 0  # traffic was shaped
    records = result['records']
    assert len(records) == 6 and all(r['answered'] for r in records)
    assert {r['answered_by'] for r in records} == {'server'}
    assert result['duplicates'] == 0
    counts = result['robot_counts']
    assert counts['offloaded'] == counts['server'] == 7 and counts['pending'] == 0
    assert {r['answered_by'] for r in late['records']} == {'robot-fallback'}
    assert late['duplicates'] == 0 and all(r['answered'] for r in late['records'])
    assert late['robot_counts']['fallback'] == 5 and late['robot_counts']['server'] == 0
    assert bundle.model_id  # the bundle both sides loaded
