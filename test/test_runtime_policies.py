# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""Exit policies and the rolling profile, from synthetic frame records (no model needed)."""

import math

from gfde_perception.errors import ConfigError
from gfde_perception.runtime.config import RuntimeConfig
from gfde_perception.runtime.policies import (
    BudgetBounds, BudgetPolicy, DEFAULT_POLICY, FinalExitPolicy, ForceExitPolicy, parse_policy,
    POLICY_FORMS, ThresholdPolicy)
from gfde_perception.runtime.stage_profile import FrameRecord, RuntimeProfile
import numpy as np
import pytest

SEG_MS = (1.0, 2.0, 2.0, 3.0)  # per segment
HEAD_MS = 0.1


def _frame(confs, exit_k, joules=math.nan):
    """Make a frame that ran segments 0..exit_k with the given gate confidences."""
    seg = SEG_MS[:exit_k + 1]
    head = (HEAD_MS,) * (exit_k + 1)
    return FrameRecord(0.2, seg, head, 0.2 + sum(seg) + sum(head), exit_k,
                       tuple(confs[:exit_k + 1]), joules)


def _profile(frames, window=64):
    profile = RuntimeProfile(4, window, blocks_per_exit=(1, 3, 5, 8))
    for f in frames:
        profile.add(f)
    return profile


def _full_frames(n=40, seed=0):
    """Frames that ran to the end, so every gate confidence is known."""
    rng = np.random.default_rng(seed)
    return [_frame(tuple(rng.uniform(0, 1, 4)), 3) for _ in range(n)]


def test_fixed_policies_bind_to_the_model():
    p = ThresholdPolicy()
    p.bind(4, (0.3, 0.4, 0.5))
    assert p.thresholds() == (0.3, 0.4, 0.5) and p.name == 'calibrated'
    p = ThresholdPolicy((0.0, 1.0, 0.2))
    p.bind(4, (0.3, 0.4, 0.5))
    assert p.thresholds() == (0.0, 1.0, 0.2) and p.name == 'threshold'
    p = ThresholdPolicy((0.7,))  # one value for every early exit
    p.bind(4, (0.3, 0.4, 0.5))
    assert p.thresholds() == (0.7, 0.7, 0.7)
    f = FinalExitPolicy()
    f.bind(4, (0.3, 0.4, 0.5))
    assert f.thresholds() == (1.0, 1.0, 1.0) and f.name == 'final'
    for k, expected in enumerate([(0.0, 1.0, 1.0), (1.0, 0.0, 1.0), (1.0, 1.0, 0.0),
                                  (1.0, 1.0, 1.0)]):
        force = ForceExitPolicy(k)
        force.bind(4, (0.3, 0.4, 0.5))
        assert force.thresholds() == expected and force.name == 'force'
    with pytest.raises(ConfigError, match='cannot force exit 4'):
        ForceExitPolicy(4).bind(4, (0.3, 0.4, 0.5))
    with pytest.raises(ConfigError):
        ForceExitPolicy(-1)
    with pytest.raises(ConfigError, match='need 3 thresholds'):
        ThresholdPolicy((0.5, 0.5)).bind(4, (0.3, 0.4, 0.5))
    with pytest.raises(ConfigError, match='not bound'):
        ThresholdPolicy().thresholds()


def test_profile_summaries_and_missing_stage_estimate():
    profile = _profile([_frame((0.9,), 0), _frame((0.1, 0.9), 1)] * 3, window=4)
    assert len(profile) == 4 and profile.frames_seen == 6
    seg, head = profile.mean_stage_ms()
    assert seg[:2] == pytest.approx((1.0, 2.0))
    # Exits 2 and 3 never ran: priced per block from the stages that did (3 ms / 3 blocks).
    assert seg[2:] == pytest.approx((2.0, 3.0))
    assert head == pytest.approx((HEAD_MS,) * 4)
    assert profile.exit_histogram() == (2, 2, 0, 0)
    assert profile.mean_overhead_ms() == pytest.approx(0.2)
    assert math.isnan(profile.joules_per_ms())


def test_budget_prediction_replays_recorded_confidences():
    profile = _profile(_full_frames())
    budget = BudgetPolicy(target_latency_ms=100.0)
    budget.bind(4, (0.5, 0.5, 0.5))
    cost_final = 0.2 + sum(SEG_MS) + 4 * HEAD_MS
    assert budget.predict(profile, (1.0, 1.0, 1.0)) == pytest.approx(cost_final)
    assert budget.predict(profile, (0.0, 0.0, 0.0)) == pytest.approx(0.2 + 1.0 + HEAD_MS)
    # Unknown confidences (frames that left early) are priced as running to the end.
    early = _profile([_frame((0.9,), 0)] * 10)
    assert budget.predict(early, (0.95, 1.0, 1.0)) == pytest.approx(cost_final)


def _drive(policy, frames_fn, n_frames):
    """Feed frames produced under the policy's current thresholds back into its profile."""
    profile = RuntimeProfile(4, 64, blocks_per_exit=(1, 3, 5, 8))
    rng = np.random.default_rng(1)
    for _ in range(n_frames):
        confs = tuple(rng.uniform(0, 1, 4))
        t = policy.thresholds()
        exit_k = next((k for k in range(3) if t[k] <= 0 or (t[k] < 1 and confs[k] >= t[k])), 3)
        profile.add(frames_fn(confs, exit_k))
        policy.update(profile)
    return profile


def test_budget_latency_target_is_held_at_least_accuracy_cost():
    generous = BudgetPolicy(target_latency_ms=1000.0, replan_every=4)
    generous.bind(4, (0.5, 0.5, 0.5))
    _drive(generous, _frame, 80)
    assert generous.level == 0 and generous.thresholds() == (1.0, 1.0, 1.0)
    assert generous.status == 'target met'

    tight = BudgetPolicy(target_latency_ms=4.0, replan_every=4)
    tight.bind(4, (0.5, 0.5, 0.5))
    profile = _drive(tight, _frame, 200)
    assert 0 < tight.level < tight.steps - 1
    assert profile.mean_latency_ms() <= 4.0 * 1.15
    # Costs fall as thresholds fall; the policy sits at the most accurate feasible setting
    # (give or take the one-notch probe towards accuracy).
    costs = [tight.predict(profile, c) for c in tight._candidates]
    assert all(a >= b - 1e-9 for a, b in zip(costs, costs[1:]))
    most_accurate_feasible = next(i for i, c in enumerate(costs) if c <= 4.0)
    assert abs(tight.level - most_accurate_feasible) <= 1

    impossible = BudgetPolicy(target_latency_ms=0.01, replan_every=4,
                              bounds=BudgetBounds(low=0.3, high=0.9))
    impossible.bind(4, (0.5, 0.5, 0.5))
    _drive(impossible, _frame, 60)
    assert impossible.thresholds() == pytest.approx((0.3, 0.3, 0.3))
    assert 'not reachable' in impossible.status


def test_budget_energy_target_needs_measured_energy():
    unmeasured = BudgetPolicy(target_energy_j=0.001, replan_every=4)
    unmeasured.bind(4, (0.5, 0.5, 0.5))
    _drive(unmeasured, _frame, 40)
    assert unmeasured.level == 0 and 'no measured energy' in unmeasured.status

    def measured(confs, exit_k):
        f = _frame(confs, exit_k)
        return f._replace(joules=0.01 * f.inference_ms)  # 10 W while inferring
    energy = BudgetPolicy(target_energy_j=0.05, replan_every=4)
    energy.bind(4, (0.5, 0.5, 0.5))
    profile = _drive(energy, measured, 200)
    assert energy.level > 0
    assert profile.mean_joules() <= 0.05 * 1.15


def test_budget_validation():
    with pytest.raises(ConfigError, match='exactly one'):
        BudgetPolicy()
    with pytest.raises(ConfigError, match='exactly one'):
        BudgetPolicy(target_latency_ms=1.0, target_energy_j=1.0)
    with pytest.raises(ConfigError, match='positive'):
        BudgetPolicy(target_latency_ms=-1.0)
    with pytest.raises(ConfigError, match='0 <= low <= high <= 1'):
        BudgetPolicy(target_latency_ms=1.0, bounds=BudgetBounds(0.8, 0.2)).bind(4, (0.5,) * 3)
    with pytest.raises(ConfigError, match='needs 3 values'):
        BudgetPolicy(target_latency_ms=1.0, bounds=BudgetBounds((0.1, 0.2), 1.0)).bind(
            4, (0.5,) * 3)


def test_runtime_config_validation():
    assert RuntimeConfig().backend == 'auto'
    assert RuntimeConfig.from_dict({'backend': 'torch', 'threads': 2}).threads == 2
    for bad in ({'backend': 'gpu'}, {'precision': 'int8'}, {'schedule': 'eager'},
                {'exit_workers': -1}, {'top_k': True}, {'threads': -1},
                {'energy_baseline_s': 100}, {'head_impl': 'c'}, {'energy': 'perf'}):
        with pytest.raises(ConfigError):
            RuntimeConfig(**bad)
    with pytest.raises(ConfigError, match='unknown runtime configuration keys'):
        RuntimeConfig.from_dict({'backnd': 'torch'})


@pytest.mark.parametrize('text,kind,thresholds', [
    ('calibrated', ThresholdPolicy, (0.3, 0.4, 0.5)),
    ('threshold=0.8,0.9,0.95', ThresholdPolicy, (0.8, 0.9, 0.95)),
    ('threshold=0.8', ThresholdPolicy, (0.8, 0.8, 0.8)),
    ('final', FinalExitPolicy, (1.0, 1.0, 1.0)),
    ('force=1', ForceExitPolicy, (1.0, 0.0, 1.0)),
    ('budget=5ms', BudgetPolicy, (1.0, 1.0, 1.0)),
    ('budget=0.2J', BudgetPolicy, (1.0, 1.0, 1.0)),
])
def test_the_policy_grammar_names_every_policy_and_writes_it_back(text, kind, thresholds):
    policy = parse_policy(text)
    assert type(policy) is kind
    policy.bind(4, (0.3, 0.4, 0.5))
    assert policy.thresholds() == pytest.approx(thresholds)
    # Written back in the same grammar, the keyword is the policy's name (the result field).
    assert policy.spec() == text and policy.spec().partition('=')[0] == policy.name
    assert parse_policy(policy.spec()).spec() == text


def test_the_policy_grammar_refuses_with_the_form_to_use():
    assert DEFAULT_POLICY == 'calibrated' and 'calibrated' in POLICY_FORMS
    assert parse_policy(' threshold=0.80 ').spec() == 'threshold=0.8'
    assert parse_policy('budget=4ms').unit == 'ms' and parse_policy('budget=0.5j').unit == 'J'
    for bad, reason in (('sometimes', 'unknown exit policy'), ('default', 'unknown'),
                        ('force', 'force=K'), ('force=x', 'force=K'), ('final=1', 'final'),
                        ('threshold=', 'threshold=T'), ('threshold=a,b', 'threshold=T'),
                        ('threshold=nan', 'finite'), ('budget=5', 'unit'),
                        ('budget=-1ms', 'positive'), ('force:1', 'unknown')):
        with pytest.raises(ConfigError, match=reason):
            parse_policy(bad)
    bounds = BudgetBounds(0.2, 0.6)
    assert parse_policy('budget=3ms', bounds).bounds is bounds
