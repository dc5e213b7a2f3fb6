# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Exit gates: uncertainty statistics of an exit's logits against a per-exit threshold.

The gate lives outside every ``nn.Module`` (plain numpy) so that exported graphs stay static:
exit heads return logits, and the decision to stop is taken here.

Confidence metrics, all in [0, 1] with 1 = certain:

* ``max_softmax``: the top-1 probability;
* ``margin``: top-1 minus top-2 probability;
* ``entropy``: ``1 - H(p) / log K``;
* ``learned``: ``sigmoid(w . [max_softmax, margin, entropy] + b)``, a tiny logistic gate fitted
  during calibration (``learned_weights = (w1, w2, w3, b)``).

Threshold convention: a threshold <= 0 always exits, a threshold >= 1 never exits early,
otherwise exit iff ``confidence >= threshold``.
"""

from dataclasses import dataclass
import math
from typing import Mapping, Optional

from gfde_perception.choices import GATE_METRICS
from gfde_perception.errors import ConfigError
import numpy as np


# The three statistics; 'learned' is a logistic gate over them.
BASE_METRICS = tuple(m for m in GATE_METRICS if m != 'learned')


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis (float64)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def uncertainty_features(logits: np.ndarray) -> np.ndarray:
    """Return the three base confidences as (..., 3): max_softmax, margin, entropy."""
    return _base_features(softmax(_check_logits(logits)))


def _check_logits(logits) -> np.ndarray:
    arr = np.asarray(logits)
    if arr.ndim not in (1, 2) or arr.shape[-1] < 1:
        raise ConfigError(f'logits must be (K,) or (B, K) with K >= 1, got shape {arr.shape}')
    if not np.issubdtype(arr.dtype, np.number):
        raise ConfigError(f'logits must be numeric, got {arr.dtype}')
    if not np.isfinite(arr).all():
        raise ConfigError('logits contain NaN or infinite values')
    return arr


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free logistic


def confidence(logits: np.ndarray, metric: str = 'max_softmax',
               learned_weights: Optional[tuple] = None):
    """
    Confidence in [0, 1] of (K,) logits (a float) or (B, K) logits (a (B,) array).

    :param logits: one exit's logits.
    :param metric: 'max_softmax', 'margin', 'entropy' or 'learned'.
    :param learned_weights: (w_max_softmax, w_margin, w_entropy, bias) for 'learned'.
    :raises ConfigError: unknown metric, missing learned weights, bad logits.
    """
    if metric not in GATE_METRICS:
        raise ConfigError(f'gate metric must be one of {GATE_METRICS}, got {metric!r}')
    return confidence_from_probs(softmax(_check_logits(logits)), metric, learned_weights)


def confidence_from_probs(probs: np.ndarray, metric: str = 'max_softmax',
                          learned_weights: Optional[tuple] = None):
    """
    Confidence from softmax probabilities (K,) or (B, K); computes only what ``metric`` needs.

    The runtime calls this once per exit with the probabilities it also reports, so each frame
    computes one softmax per exit and nothing more.
    """
    if metric == 'max_softmax':
        conf = probs.max(axis=-1)
    elif metric == 'margin':
        k = probs.shape[-1]
        if k == 1:
            conf = np.ones(probs.shape[:-1])
        else:
            top2 = np.partition(probs, k - 2, axis=-1)[..., k - 2:]  # (..., 2): second, first
            conf = top2[..., 1] - top2[..., 0]
    elif metric == 'entropy':
        conf = _entropy_confidence(probs)
    elif metric == 'learned':
        w = _check_learned(learned_weights)
        conf = _sigmoid(_base_features(probs) @ w[:3] + w[3])
    else:
        raise ConfigError(f'gate metric must be one of {GATE_METRICS}, got {metric!r}')
    conf = np.clip(conf, 0.0, 1.0)
    return float(conf) if np.ndim(conf) == 0 else conf


def _entropy_confidence(probs: np.ndarray) -> np.ndarray:
    k = probs.shape[-1]
    if k == 1:
        return np.ones(probs.shape[:-1])
    with np.errstate(divide='ignore', invalid='ignore'):
        plogp = np.where(probs > 0, probs * np.log(np.where(probs > 0, probs, 1.0)), 0.0)
    return 1.0 - (-plogp.sum(axis=-1)) / math.log(k)


def _base_features(probs: np.ndarray) -> np.ndarray:
    """Return the three base confidences of probabilities as (..., 3)."""
    return np.stack([confidence_from_probs(probs, m) * np.ones(probs.shape[:-1])
                     for m in BASE_METRICS], axis=-1)


def exits_now(conf: float, threshold: float) -> bool:
    """Scalar exit decision (the per-frame path): the rule of :func:`should_exit`."""
    return threshold <= 0.0 or (threshold < 1.0 and conf >= threshold)


def _check_learned(weights) -> np.ndarray:
    if weights is None:
        raise ConfigError('metric "learned" needs learned_weights (w1, w2, w3, bias)')
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.shape != (4,) or not np.isfinite(w).all():
        raise ConfigError(f'learned_weights must be 4 finite numbers, got {weights!r}')
    return w


def should_exit(conf, threshold):
    """
    Exit decision: threshold <= 0 always, >= 1 never, else ``conf >= threshold``.

    Scalars give a bool; arrays broadcast and give a bool array.
    """
    conf = np.asarray(conf, dtype=np.float64)
    thr = np.asarray(threshold, dtype=np.float64)
    if np.isnan(thr).any():
        raise ConfigError('threshold is NaN')
    out = np.where(thr <= 0.0, True, np.where(thr >= 1.0, False, conf >= thr))
    return bool(out) if out.ndim == 0 else out


def first_exit(confidences: np.ndarray, thresholds) -> np.ndarray:
    """
    Return the index of the exit taken by each sample.

    :param confidences: (E, B) confidence of each early exit (final exit excluded), or (E,).
    :param thresholds: E thresholds.
    :return: (B,) int array (or an int for (E,) input): the first early exit whose gate opens,
        or E (the final classifier) when none does.
    """
    conf = np.asarray(confidences, dtype=np.float64)
    thr = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    single = conf.ndim == 1
    if single:
        conf = conf[:, None]  # (E, 1)
    if conf.ndim != 2 or conf.shape[0] != len(thr):
        raise ConfigError(f'confidences of shape {np.shape(confidences)} do not match '
                          f'{len(thr)} thresholds')
    if not len(thr):  # only the final classifier
        taken = np.zeros(conf.shape[1], dtype=np.int64)
    else:
        decide = np.asarray(should_exit(conf, thr[:, None]), dtype=bool)  # (E, B)
        taken = np.where(decide.any(axis=0), decide.argmax(axis=0), len(thr))
    return int(taken[0]) if single else taken


@dataclass(frozen=True)
class GateConfig:
    """
    Which statistic gates the exits and each early exit's threshold.

    :ivar metric: 'max_softmax', 'margin', 'entropy' or 'learned'.
    :ivar thresholds: one per early exit (the final classifier has none).
    :ivar learned_weights: (w_max_softmax, w_margin, w_entropy, bias), required for 'learned'.
    """

    metric: str = 'max_softmax'
    thresholds: tuple = ()
    learned_weights: Optional[tuple] = None

    def __post_init__(self):
        if self.metric not in GATE_METRICS:
            raise ConfigError(f'gate metric must be one of {GATE_METRICS}, got {self.metric!r}')
        try:
            thr = tuple(float(t) for t in self.thresholds)
        except (TypeError, ValueError):
            raise ConfigError(f'thresholds must be numbers, got {self.thresholds!r}') from None
        if any(math.isnan(t) for t in thr):
            raise ConfigError(f'thresholds must not be NaN, got {thr}')
        object.__setattr__(self, 'thresholds', thr)
        if self.metric == 'learned' or self.learned_weights is not None:
            w = _check_learned(self.learned_weights)
            object.__setattr__(self, 'learned_weights', tuple(float(v) for v in w))

    def confidence(self, logits: np.ndarray):
        """Confidence of one exit's logits under this gate's metric."""
        return confidence(logits, self.metric, self.learned_weights)

    def confidence_from_probs(self, probs: np.ndarray):
        """Confidence of one exit's softmax probabilities under this gate's metric."""
        return confidence_from_probs(probs, self.metric, self.learned_weights)

    def should_exit(self, exit_index: int, logits: np.ndarray):
        """Gate decision for early exit ``exit_index`` given its logits."""
        if not 0 <= exit_index < len(self.thresholds):
            raise ConfigError(f'exit {exit_index} has no threshold ({len(self.thresholds)} '
                              f'early exits)')
        return should_exit(self.confidence(logits), self.thresholds[exit_index])

    def with_thresholds(self, thresholds) -> 'GateConfig':
        """Return a copy with other thresholds (same count)."""
        thresholds = tuple(thresholds)
        if len(thresholds) != len(self.thresholds):
            raise ConfigError(f'need {len(self.thresholds)} thresholds, got {len(thresholds)}')
        return GateConfig(self.metric, thresholds, self.learned_weights)

    def to_dict(self) -> dict:
        """Return a JSON-ready dict."""
        return {'metric': self.metric, 'thresholds': list(self.thresholds),
                'learned_weights': None if self.learned_weights is None
                else list(self.learned_weights)}

    @classmethod
    def from_dict(cls, data: Mapping) -> 'GateConfig':
        """Build from :meth:`to_dict` output; unknown keys are a :class:`ConfigError`."""
        if not isinstance(data, Mapping):
            raise ConfigError(f'gate config must be a mapping, got {type(data).__name__}')
        unknown = set(data) - {'metric', 'thresholds', 'learned_weights'}
        if unknown:
            raise ConfigError(f'unknown gate keys: {sorted(unknown)}')
        kwargs = dict(data)
        for key in ('thresholds', 'learned_weights'):
            if isinstance(kwargs.get(key), list):
                kwargs[key] = tuple(kwargs[key])
        if 'thresholds' in kwargs and not isinstance(kwargs['thresholds'], tuple):
            raise ConfigError(f'thresholds must be a list, got {kwargs["thresholds"]!r}')
        return cls(**kwargs)
