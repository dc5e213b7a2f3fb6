# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Exit policies: which threshold each early exit uses on the next frame, and their one grammar.

A policy only chooses thresholds; the gate decision itself is
:func:`gfde_perception.gating.should_exit` (a threshold <= 0 always exits, >= 1 never exits
early). The classifier binds a policy to its model before swapping it in (so a policy that does
not fit is refused and the old one kept), asks it for thresholds once at the start of each frame,
and hands it the rolling
:class:`~gfde_perception.runtime.stage_profile.RuntimeProfile` between frames.

Every tool names a policy in one grammar, parsed by :func:`parse_policy` (the node's
``exit.policy`` parameter, ``gfde-infer --policy``, ``gfde-eval --config NAME=KIND:PATH@POLICY``):

* ``calibrated``: the bundle's calibrated thresholds (the default);
* ``threshold=T[,T...]``: fixed thresholds, one per early exit, or one value for all of them;
* ``final``: never leave early (gates are still evaluated and reported);
* ``force=K``: leave at exit ``K`` on every frame (``K = num_exits - 1`` is the final exit);
* ``budget=Xms`` or ``budget=XJ``: hold a mean latency (ms) or energy (J) per frame.

Every policy writes itself back in the grammar (:meth:`ExitPolicy.spec`), and its keyword is the
``policy`` field of each result. A new policy is a subclass here plus one entry in
:data:`_GRAMMAR`.
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
    """Base class: fixed thresholds after :meth:`bind`; ``name`` is the grammar keyword."""

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

    def spec(self) -> str:
        """Return the policy in the grammar of :func:`parse_policy` (it parses back to it)."""
        return self.name

    def describe(self) -> str:
        """Return a one-line description for logs."""
        return f'{self.spec()} {self._thresholds}'


class ThresholdPolicy(ExitPolicy):
    """
    Fixed per-exit thresholds: the bundle's calibrated ones (``calibrated``), or those given.

    :param thresholds: one per early exit, or a single value for every early exit; None takes
        the bundle's calibrated thresholds.
    """

    def __init__(self, thresholds: Optional[Sequence[float]] = None):
        super().__init__()
        if thresholds is not None:
            thresholds = tuple(float(t) for t in thresholds)
            if not thresholds or not all(math.isfinite(t) for t in thresholds):
                raise ConfigError(f'thresholds must be finite numbers, got {thresholds}')
        self.requested = thresholds

    @property
    def name(self) -> str:
        """Return 'calibrated' for the bundle's own thresholds, else 'threshold'."""
        return 'calibrated' if self.requested is None else 'threshold'

    def spec(self) -> str:
        if self.requested is None:
            return 'calibrated'
        return 'threshold=' + ','.join(f'{t:g}' for t in self.requested)

    def _make(self, num_exits: int, defaults: tuple) -> tuple:
        if self.requested is None:
            return defaults
        if len(self.requested) == 1:
            return self.requested * (num_exits - 1)
        if len(self.requested) != num_exits - 1:
            raise ConfigError(f'{num_exits} exits need {num_exits - 1} thresholds (or one for '
                              f'all), got {self.requested}')
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

    def spec(self) -> str:
        return f'force={self.k}'

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

    def spec(self) -> str:
        return f'budget={self.target:g}{self.unit}'

    def describe(self) -> str:
        return (f'budget target {self.target:g} {self.unit}, level {self.level}/'
                f'{self.steps - 1}, thresholds {tuple(round(t, 3) for t in self.thresholds())}, '
                f'{self.status}')


# ----------------------------------------------------------------------------- the grammar

DEFAULT_POLICY = 'calibrated'


def _floats(value: str) -> tuple:
    return tuple(float(v) for v in value.split(','))


def _budget(value: str, bounds: BudgetBounds) -> BudgetPolicy:
    for unit, keyword in (('ms', 'target_latency_ms'), ('J', 'target_energy_j')):
        if value.endswith(unit) or value.endswith(unit.lower()):
            return BudgetPolicy(**{keyword: float(value[:-len(unit)])}, bounds=bounds)
    raise ValueError(f"a budget needs its unit: 'ms' or 'J', got {value!r}")


# keyword -> (form shown to users, what it does, builder(value, budget bounds) -> ExitPolicy).
# A form with '=' takes a value; one without takes none.
_GRAMMAR = {
    'calibrated': ('calibrated', "the bundle's calibrated thresholds (the default)",
                   lambda value, bounds: ThresholdPolicy()),
    'threshold': ('threshold=T[,T...]', 'fixed thresholds, one per early exit or one for all',
                  lambda value, bounds: ThresholdPolicy(_floats(value))),
    'final': ('final', 'never exit early', lambda value, bounds: FinalExitPolicy()),
    'force': ('force=K', 'always leave at exit K', lambda value, bounds: ForceExitPolicy(
        int(value))),
    'budget': ('budget=Xms|XJ', 'hold a mean latency (ms) or energy (J) per frame', _budget),
}
POLICY_FORMS = tuple(form for form, _, _ in _GRAMMAR.values())
POLICY_USAGE = '; '.join(f'{form}: {what}' for form, what, _ in _GRAMMAR.values())


def parse_policy(text: str, bounds: BudgetBounds = BudgetBounds()) -> ExitPolicy:
    """
    Build the exit policy ``text`` names (see the module docstring); it is not bound yet.

    :param text: e.g. 'calibrated', 'threshold=0.8,0.9', 'final', 'force=0', 'budget=5ms'.
    :param bounds: the range a budget policy may move each threshold in.
    :return: the policy; :meth:`ExitPolicy.bind` (done by the classifier) checks it against the
        model.
    :raises ConfigError: an unknown keyword, a missing, unexpected or malformed value.
    """
    keyword, sep, value = str(text).strip().partition('=')
    entry = _GRAMMAR.get(keyword.strip())
    if entry is None:
        raise ConfigError(f'unknown exit policy {text!r}; use one of: {", ".join(POLICY_FORMS)}')
    form, _, build = entry
    if sep != ('=' if '=' in form else '') or (sep and not value.strip()):
        raise ConfigError(f'exit policy {text!r} must be written {form}')
    try:
        return build(value.strip(), bounds)
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f'exit policy {text!r} must be written {form}: {exc}') from None
