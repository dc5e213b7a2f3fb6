# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Exit policies: which threshold each early exit uses on the next frame.

A policy only chooses thresholds; the gate decision itself is
:func:`gfde_perception.gating.should_exit` (a threshold <= 0 always exits, >= 1 never exits
early). The classifier binds a policy to its model before swapping it in (so a policy that does
not fit is refused and the old one kept), asks it for thresholds once at the start of each frame,
and hands it the rolling
:class:`~gfde_perception.runtime.stage_profile.RuntimeProfile` between frames.
"""

from dataclasses import dataclass
import logging
import math
from typing import Optional, Sequence

from gfde_perception.errors import ConfigError
from gfde_perception.gating import first_exit
from gfde_perception.runtime.stage_profile import RuntimeProfile
import numpy as np

LOG = logging.getLogger(__name__)


class ExitPolicy:
    """Base class: fixed thresholds after :meth:`bind`."""

    name = 'threshold'

    def __init__(self):
        self._thresholds = None
        self.num_exits = None

    def bind(self, num_exits: int, default_thresholds: Sequence[float]):
        """
        Fit the policy to a model with ``num_exits`` exits (the final one included).

        :param num_exits: exits of the model.
        :param default_thresholds: the bundle's calibrated thresholds, one per early exit.
        :raises ConfigError: the policy does not fit this model.
        """
        if len(default_thresholds) != num_exits - 1:
            raise ConfigError(f'{num_exits} exits need {num_exits - 1} thresholds, '
                              f'got {len(default_thresholds)}')
        self.num_exits = num_exits
        self._thresholds = self._make(num_exits, tuple(float(t) for t in default_thresholds))

    def _make(self, num_exits: int, defaults: tuple) -> tuple:
        return defaults

    def thresholds(self) -> tuple:
        """Return the thresholds for the next frame, one per early exit."""
        if self._thresholds is None:
            raise ConfigError(f'{type(self).__name__} is not bound to a model yet')
        return self._thresholds

    def update(self, profile: RuntimeProfile):
        """Read the rolling profile between frames (fixed policies ignore it)."""

    def describe(self) -> str:
        """Return a one-line description for logs."""
        return f'{self.name} {self._thresholds}'


class ThresholdPolicy(ExitPolicy):
    """Fixed per-exit thresholds: the bundle's calibrated ones, or those given here."""

    name = 'threshold'

    def __init__(self, thresholds: Optional[Sequence[float]] = None):
        super().__init__()
        if thresholds is not None:
            thresholds = tuple(float(t) for t in thresholds)
            if not all(math.isfinite(t) for t in thresholds):
                raise ConfigError(f'thresholds must be finite, got {thresholds}')
        self.requested = thresholds

    def _make(self, num_exits: int, defaults: tuple) -> tuple:
        if self.requested is None:
            return defaults
        if len(self.requested) != num_exits - 1:
            raise ConfigError(f'{num_exits} exits need {num_exits - 1} thresholds, '
                              f'got {self.requested}')
        return self.requested


class FinalExitPolicy(ExitPolicy):
    """Always run the whole backbone (gates are still evaluated and reported)."""

    name = 'final'

    def _make(self, num_exits: int, defaults: tuple) -> tuple:
        return (1.0,) * (num_exits - 1)


class ForceExitPolicy(ExitPolicy):
    """Leave at exit ``k`` on every frame (for evaluation); ``k = num_exits - 1`` is final."""

    name = 'force'

    def __init__(self, k: int):
        super().__init__()
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise ConfigError(f'force exit index must be an integer >= 0, got {k!r}')
        self.k = k

    def _make(self, num_exits: int, defaults: tuple) -> tuple:
        if self.k >= num_exits:
            raise ConfigError(f'cannot force exit {self.k}: the model has {num_exits} exits '
                              f'(0..{num_exits - 1})')
        return tuple(0.0 if j == self.k else 1.0 for j in range(num_exits - 1))


@dataclass(frozen=True)
class BudgetBounds:
    """
    Range the budget policy may move each threshold in.

    :ivar low: lowest threshold allowed per early exit (a number applies to all); the most
        aggressive setting, used when the budget cannot be met otherwise.
    :ivar high: highest threshold allowed per early exit; the most accurate setting, used when
        the budget allows it.
    """

    low: object = 0.0
    high: object = 1.0

    def resolve(self, n: int) -> tuple:
        """Return (low, high) as tuples of ``n`` floats, validated."""
        low, high = _per_exit(self.low, n, 'low'), _per_exit(self.high, n, 'high')
        for lo, hi in zip(low, high):
            if not 0.0 <= lo <= hi <= 1.0:
                raise ConfigError(f'budget bounds need 0 <= low <= high <= 1 per exit, '
                                  f'got low={low} high={high}')
        return low, high


def _confidence_matrix(profile: RuntimeProfile) -> np.ndarray:
    """Return (early exits, frames) gate confidences of the window, NaN where not computed."""
    early = profile.num_exits - 1
    out = np.full((early, max(len(profile), 1)), np.nan)
    for j, record in enumerate(profile.records):
        known = record.gate_confidence[:early]
        out[:len(known), j] = known
    return out


def _per_exit(value, n: int, name: str) -> tuple:
    if isinstance(value, (int, float)):
        return (float(value),) * n
    value = tuple(float(v) for v in value)
    if len(value) != n:
        raise ConfigError(f'budget bound {name!r} needs {n} values, got {value}')
    return value


class BudgetPolicy(ExitPolicy):
    """
    Hold a target latency or energy per frame at the least accuracy cost, within bounds.

    Thresholds move along one line from ``bounds.high`` (most accurate: frames run deepest) to
    ``bounds.low`` (cheapest), in ``steps`` steps. Every ``replan_every`` frames the policy
    replays the gate confidences recorded in the profile under each candidate setting, prices
    each frame's exit with the profile's mean per-stage latency (and measured joules per ms for
    an energy target), and picks the most accurate setting whose predicted mean meets the
    target. A frame whose confidence at a deeper exit was never computed (it left earlier) is
    priced as running to the final exit, so predictions err on the expensive side; to avoid
    staying more aggressive than needed, the policy also steps one notch towards accuracy when
    the measured mean is well under target. Without measured energy an energy target cannot be
    held: the thresholds stay where they are and :attr:`status` says why.
    """

    name = 'budget'

    def __init__(self, target_latency_ms: Optional[float] = None,
                 target_energy_j: Optional[float] = None,
                 bounds: BudgetBounds = BudgetBounds(), steps: int = 21,
                 replan_every: int = 16, min_frames: int = 8, slack: float = 0.85):
        super().__init__()
        if (target_latency_ms is None) == (target_energy_j is None):
            raise ConfigError('give exactly one of target_latency_ms and target_energy_j')
        target = target_latency_ms if target_latency_ms is not None else target_energy_j
        if not (isinstance(target, (int, float)) and math.isfinite(target) and target > 0):
            raise ConfigError(f'the budget target must be a positive number, got {target!r}')
        if not isinstance(bounds, BudgetBounds):
            bounds = BudgetBounds(*bounds)
        if steps < 2 or replan_every < 1 or min_frames < 1 or not 0.0 < slack < 1.0:
            raise ConfigError('need steps >= 2, replan_every >= 1, min_frames >= 1, '
                              f'0 < slack < 1; got {steps}, {replan_every}, {min_frames}, '
                              f'{slack}')
        self.target = float(target)
        self.unit = 'ms' if target_latency_ms is not None else 'J'
        self.bounds = bounds
        self.steps = steps
        self.replan_every = replan_every
        self.min_frames = min_frames
        self.slack = slack
        self.level = 0  # index into the candidate line: 0 = bounds.high (most accurate)
        self.status = 'waiting for frames'
        self.predicted = math.nan
        self._frames_since_plan = 0
        self._candidates = ()
        self.blocks_per_exit = None

    def _make(self, num_exits: int, defaults: tuple) -> tuple:
        low, high = self.bounds.resolve(num_exits - 1)
        self._candidates = tuple(
            tuple(hi - (hi - lo) * i / (self.steps - 1) for lo, hi in zip(low, high))
            for i in range(self.steps))
        self.level = 0
        return self._candidates[0]

    def update(self, profile: RuntimeProfile):
        self._frames_since_plan += 1
        if self._frames_since_plan < self.replan_every or len(profile) < self.min_frames:
            return
        self._frames_since_plan = 0
        self._plan(profile)

    def predict(self, profile: RuntimeProfile, thresholds: Sequence[float],
                confidences: Optional[np.ndarray] = None) -> float:
        """Predicted mean cost per frame (ms or J) of ``thresholds`` over the profile window."""
        if confidences is None:
            confidences = _confidence_matrix(profile)
        seg, head = profile.mean_stage_ms()
        cumulative = np.cumsum(np.asarray(seg) + np.asarray(head)) + profile.mean_overhead_ms()
        # A confidence that was never computed is NaN: it opens no gate (unless the threshold
        # forces the exit), so such frames are priced as running on - the pessimistic side.
        taken = first_exit(confidences, thresholds)
        mean_ms = float(np.mean(cumulative[taken])) if len(profile) else math.nan
        if self.unit == 'ms':
            return mean_ms
        return mean_ms * profile.joules_per_ms()

    def _plan(self, profile: RuntimeProfile):
        if self.unit == 'J' and math.isnan(profile.joules_per_ms()):
            self.status = ('no measured energy in the profile: an energy target cannot be held; '
                           'thresholds unchanged')
            return
        confidences = _confidence_matrix(profile)
        predictions = [self.predict(profile, c, confidences) for c in self._candidates]
        feasible = [i for i, p in enumerate(predictions) if p <= self.target]
        chosen = feasible[0] if feasible else len(self._candidates) - 1
        measured = (profile.mean_latency_ms() if self.unit == 'ms'
                    else profile.mean_joules())
        if chosen >= self.level and self.level > 0 and measured < self.slack * self.target:
            # Predictions are pessimistic about exits that were skipped; probe one notch.
            chosen = self.level - 1
        self.predicted = predictions[chosen]
        if chosen != self.level:
            LOG.info('budget policy: level %d -> %d (measured %.3g %s, predicted %.3g, '
                     'target %.3g)', self.level, chosen, measured, self.unit,
                     predictions[chosen], self.target)
        self.level = chosen
        self._thresholds = self._candidates[chosen]
        self.status = ('target met' if predictions[chosen] <= self.target
                       else 'target not reachable within bounds: cheapest setting in force')

    def describe(self) -> str:
        return (f'budget target {self.target:g} {self.unit}, level {self.level}/'
                f'{self.steps - 1}, thresholds {tuple(round(t, 3) for t in self.thresholds())}, '
                f'{self.status}')
