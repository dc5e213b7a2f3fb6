# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Unit tier of the node's ROS-free parts: statistics, health, the frame mailbox, parameters.

(The worker between mailbox and classifier has its own tests: test_runtime_worker.py.)

These run without rclpy (the parameter table and the mailbox import none), from plain numbers.
"""

import math
import threading

from gfde_perception.choices import BACKENDS, ENERGY_SOURCES, PRECISIONS, SCHEDULES
from gfde_perception.errors import ConfigError
from gfde_perception.ros import parameters as params
from gfde_perception.runtime import RuntimeConfig
from gfde_perception.runtime.frame_mailbox import LatestFrameMailbox
from gfde_perception.runtime.policies import DEFAULT_POLICY
from gfde_perception.stats import (DROP_BAD_INPUT, DROP_LOST, DROP_SUPERSEDED, ERROR,
                                   evaluate_health, HealthBounds, OK, percentiles,
                                   PipelineStats, WARN)
import pytest


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_percentiles_nearest_rank():
    assert percentiles(range(1, 101)) == (50, 90, 99)
    assert percentiles([7.0]) == (7.0, 7.0, 7.0)
    assert all(math.isnan(v) for v in percentiles([]))


def test_stats_window_rates_drops_and_exits():
    clock = FakeClock()
    stats = PipelineStats(window_s=2.0, clock=clock)
    for i in range(10):
        stats.frame_received()
        clock.t += 0.1
        if i % 2:
            stats.frame_dropped(DROP_SUPERSEDED)
        else:
            stats.result_published(i % 3, {'total': float(i), 'segment_0': 1.0})
    stats.frame_dropped(DROP_BAD_INPUT, 'truncated')
    snap = stats.snapshot()
    assert snap.received == 10 and snap.processed == 5
    assert snap.input_rate_hz == pytest.approx(5.0)
    assert snap.output_rate_hz == pytest.approx(2.5)
    assert snap.dropped[DROP_SUPERSEDED] == 5 and snap.bad_input == {'truncated': 1}
    assert snap.exit_counts == {0: 2, 1: 1, 2: 2}
    assert snap.latency_ms['total'] == (4.0, 8.0, 8.0)
    assert not snap.energy_measured and math.isnan(snap.energy_j_per_frame)
    clock.t += 5.0  # everything leaves the window; totals stay
    later = stats.snapshot()
    assert later.input_rate_hz == 0 and later.received == 10
    assert all(math.isnan(v) for v in later.latency_ms['total'])


def test_energy_is_reported_only_when_measured():
    clock = FakeClock()
    stats = PipelineStats(window_s=5.0, clock=clock)
    stats.result_published(0, {}, True, 0.5, 'nvml', '')
    stats.result_published(0, {}, True, 1.5, 'nvml', '')
    snap = stats.snapshot()
    assert snap.energy_measured and snap.energy_j_per_frame == pytest.approx(1.0)
    stats.result_published(0, {}, False, math.nan, 'none', 'no counter')
    snap = stats.snapshot()
    assert not snap.energy_measured and snap.energy_method == 'no counter'


def _snapshot_with(received, processed, total_ms, bad=0, later_s=0.0):
    clock = FakeClock()
    stats = PipelineStats(window_s=1.0, clock=clock)
    for _ in range(received):
        stats.frame_received()
    for _ in range(processed):
        stats.result_published(0, {'total': total_ms})
    for _ in range(bad):
        stats.frame_dropped(DROP_BAD_INPUT, 'truncated')
    clock.t += later_s
    return stats.snapshot()


def test_health_levels_follow_the_bounds():
    bounds = HealthBounds(min_output_rate_hz=5.0, max_latency_ms=10.0, window_s=1.0)
    assert evaluate_health(_snapshot_with(10, 10, 5.0), bounds) == (OK, 'ok')
    level, why = evaluate_health(_snapshot_with(10, 2, 5.0), bounds)
    assert level == WARN and 'output rate' in why
    level, why = evaluate_health(_snapshot_with(10, 10, 15.0), bounds)
    assert level == WARN and 'latency' in why
    assert evaluate_health(_snapshot_with(10, 10, 25.0), bounds)[0] == ERROR
    # Frames waiting for a whole window without a result: a stall.
    level, why = evaluate_health(_snapshot_with(10, 0, 5.0, later_s=1.0), bounds)
    assert level == ERROR and 'no result' in why
    level, why = evaluate_health(_snapshot_with(0, 0, 5.0), bounds)
    assert level == WARN and 'no input' in why
    level, why = evaluate_health(_snapshot_with(10, 10, 5.0, bad=8), bounds)
    assert level == WARN and 'bad input' in why


def test_no_error_while_the_first_result_is_on_its_way():
    # Issue 11, item 9: ERROR "frames arrive but no result" on the first tick after the first
    # frame. Only frames that waited a whole window without any result are a stall.
    clock = FakeClock()
    stats = PipelineStats(window_s=5.0, clock=clock)
    bounds = HealthBounds(window_s=5.0, min_output_rate_hz=10.0)
    stats.frame_received()
    clock.t += 0.2
    stats.frame_received()
    stats.frame_dropped(DROP_SUPERSEDED)
    snap = stats.snapshot()
    assert snap.in_flight == 1 and snap.waiting_s == pytest.approx(0.2)
    assert evaluate_health(snap, bounds)[0] == OK
    clock.t += 4.9  # the first frame has now waited a whole window: a stall
    level, why = evaluate_health(stats.snapshot(), bounds)
    assert level == ERROR and 'no result' in why
    stats.result_published(0, {'total': 1.0})
    snap = stats.snapshot()
    assert snap.in_flight == 0 and snap.waiting_s == 0.0
    assert evaluate_health(snap, bounds)[0] != ERROR


def test_frames_answered_by_a_drop_are_no_stall():
    # Bad or inactive frames end there: nothing waits, so no ERROR however long it goes on
    # (a stream of bad frames is the bad-input WARN's business).
    clock = FakeClock()
    stats = PipelineStats(window_s=1.0, clock=clock)
    for _ in range(20):
        stats.frame_received()
        stats.frame_dropped(DROP_BAD_INPUT, 'truncated')
        clock.t += 0.1
    snap = stats.snapshot()
    assert snap.in_flight == 0 and snap.waiting_s == 0.0
    level, why = evaluate_health(snap, HealthBounds(window_s=1.0))
    assert level == WARN and 'bad input' in why and 'no result' not in why


def test_lost_frames_count_as_dropped_but_were_never_received():
    stats = PipelineStats(window_s=5.0, clock=FakeClock())
    stats.frame_received()
    stats.frames_lost(3)
    stats.frame_received(numbered=False)
    stats.result_published(0, {})
    snap = stats.snapshot()
    assert snap.received == 2 and snap.dropped[DROP_LOST] == 3 and snap.published == 5
    assert snap.in_flight == 1 and snap.unnumbered == 1
    assert snap.published == snap.processed + sum(snap.dropped.values()) + snap.in_flight
    with pytest.raises(ValueError):
        stats.frame_dropped(DROP_LOST)


def test_mailbox_keeps_the_newest_frame_per_topic_and_serves_topics_in_turn():
    box = LatestFrameMailbox()
    assert box.put('a', 1) is None
    assert box.put('a', 2) == 1  # superseded, handed back to be counted
    assert box.put('b', 10) is None
    assert box.put('a', 3) == 2
    # 'b' has waited longer than the re-inserted 'a'.
    assert box.get(timeout=0.1) == ('b', 10)
    assert box.get(timeout=0.1) == ('a', 3)
    assert box.get(timeout=0.05) is None


def test_mailbox_close_wakes_a_waiting_consumer():
    box = LatestFrameMailbox()
    got = []
    thread = threading.Thread(target=lambda: got.append(box.get(timeout=10.0)))
    thread.start()
    box.close()
    thread.join(5.0)
    assert not thread.is_alive() and got == [None]
    assert box.put('a', 1) == 1  # refused while closed
    box.reopen()
    assert box.put('a', 1) is None


def test_parameter_table_is_complete_and_consistent():
    names = params.PARAMETER_NAMES
    assert len(names) == len(set(names))
    for spec in params.PARAMETERS:
        assert spec.description, spec.name
        assert params.check_value(spec, spec.default) is None, spec.name
        if spec.kind in ('int', 'double'):
            assert spec.low is not None and spec.low <= spec.default <= spec.high, spec.name
    for needed in ('model.bundle', 'model.backend', 'exit.policy', 'exit.budget_low',
                   'exit.budget_high', 'top_k', 'topics', 'qos.reliability', 'qos.depth'):
        assert needed in names


def test_parameter_table_takes_its_lists_and_ranges_from_the_one_home():
    # The node accepts exactly what the runtime accepts (they drifted apart before).
    for name, choices in (('model.backend', BACKENDS), ('model.precision', PRECISIONS),
                          ('model.schedule', SCHEDULES), ('model.energy', ENERGY_SOURCES)):
        assert params.BY_NAME[name].choices == choices
    for name, field in (('model.exit_workers', 'exit_workers'), ('model.threads', 'threads'),
                        ('model.warmup', 'warmup'), ('top_k', 'top_k')):
        spec = params.BY_NAME[name]
        RuntimeConfig(**{field: int(spec.low)})
        RuntimeConfig(**{field: int(spec.high)})
        for outside in (spec.low - 1, spec.high + 1):
            with pytest.raises(ConfigError):
                RuntimeConfig(**{field: int(outside)})
        assert spec.default == getattr(RuntimeConfig(), field)
    assert params.BY_NAME['exit.policy'].default == DEFAULT_POLICY
    assert 'threshold=T' in params.BY_NAME['exit.policy'].constraints


@pytest.mark.parametrize('changes,reason', [
    ({'exit.policy': 'sometimes'}, 'unknown exit policy'),
    ({'exit.policy': 'threshold'}, 'threshold=T'),
    ({'exit.policy': 'threshold=0.5,nan'}, 'finite'),
    ({'exit.policy': 'budget'}, 'budget=Xms'),
    ({'exit.policy': 'budget=5'}, 'unit'),
    ({'exit.policy': 'budget=5ms', 'exit.budget_low': 0.9, 'exit.budget_high': 0.2}, 'above'),
    # Refused even while another policy is in force: it could never apply.
    ({'exit.budget_low': 0.9, 'exit.budget_high': 0.2}, 'above'),
    ({'topics': []}, 'at least one'),
    ({'diagnostics.max_bad_input_ratio': 2.0}, r'in \[0, 1\]'),
])
def test_bad_updates_are_refused_with_a_reason(changes, reason):
    with pytest.raises(ConfigError, match=reason):
        params.check_update(params.DEFAULTS, changes)


def test_good_updates_build_the_policy():
    merged, policy = params.check_update(params.DEFAULTS, {'exit.policy': 'threshold=0.3,0.6'})
    assert merged['exit.policy'] == 'threshold=0.3,0.6' and policy.requested == (0.3, 0.6)
    _, policy = params.check_update(params.DEFAULTS, {'exit.policy': 'budget=4ms',
                                                      'exit.budget_low': 0.2})
    assert policy.name == 'budget' and policy.unit == 'ms' and policy.bounds.low == 0.2
    _, policy = params.check_update(params.DEFAULTS, {'top_k': 3})
    assert policy is None
