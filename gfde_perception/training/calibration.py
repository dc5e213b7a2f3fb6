# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Per-exit threshold calibration and cascade statistics (numpy only).

Rule (``budget_points`` = N, ``confidence`` = c): exits are calibrated in order; exit k sees
the validation images that no earlier exit took, and gets the threshold that lets it take as many
of them as possible while its accuracy on the images it takes stays within N percentage points of
the final exit's accuracy on those same images. Summed over exits, the cascade then loses at most
N points against the final exit (each exit's loss is bounded on its share).

The loss measured on validation images is an estimate; picking the largest exit rate whose
estimate just fits the budget favours thresholds where the estimate happens to be low, so on new
images the loss lands above the budget more often than not. With ``confidence`` c > 0.5 the
bound is applied to the one-sided upper confidence limit (level c) of the loss instead: the mean
accuracy difference minus z(c) standard errors. c is a nominal level, not an exact guarantee,
because the rule searches over every threshold; in a simulation (test_training_calibration) the
plain estimate exceeded a 0.5-point budget on new images in 73% of calibrations (0.67 points
lost on average), the 0.9 bound in 28% (0.21 points on average). The margin shrinks as
1 / sqrt(images taken): a small validation split gets cautious thresholds, a large one nearly
the empirical ones.
"""

from statistics import NormalDist

from gfde_perception.errors import ConfigError
import numpy as np

#: ``confidence`` of the plain empirical rule (no margin).
EMPIRICAL = 0.5


def _z(confidence: float) -> float:
    if not EMPIRICAL <= confidence < 1.0:
        raise ConfigError(f'confidence must be in [0.5, 1), got {confidence}')
    return NormalDist().inv_cdf(confidence)


def calibrate_threshold(conf: np.ndarray, exit_correct: np.ndarray, final_correct: np.ndarray,
                        budget_points: float, min_samples: int = 1,
                        confidence: float = EMPIRICAL) -> tuple:
    """
    Lowest threshold (largest exit rate) of one exit that keeps within the budget.

    :param conf: (M,) gate confidence of the exit on the images still in the cascade.
    :param exit_correct: (M,) bool, the exit's prediction is right.
    :param final_correct: (M,) bool, the final exit's prediction is right.
    :param budget_points: allowed accuracy loss in percentage points.
    :param min_samples: the exit must take at least this many images, else it is disabled.
    :param confidence: probability that the loss on unseen images stays within the budget (see
        the module docstring); 0.5 is the plain empirical rule.

    :return: ``(threshold, taken)`` where ``taken`` is the (M,) bool mask of images that exit; a
        threshold of 1.0 means the exit never fires.

    """
    conf = np.asarray(conf, np.float64)
    if conf.ndim != 1 or len(exit_correct) != len(conf) or len(final_correct) != len(conf):
        raise ConfigError('conf, exit_correct and final_correct must be equal-length vectors')
    if budget_points < 0:
        raise ConfigError(f'budget_points must be >= 0, got {budget_points}')
    z = _z(confidence)
    none = (1.0, np.zeros(len(conf), bool))
    if len(conf) == 0:
        return none
    order = np.argsort(-conf, kind='stable')
    sorted_conf = conf[order]
    gain = (np.asarray(exit_correct, np.float64) - np.asarray(final_correct, np.float64))[order]
    count = np.arange(1, len(conf) + 1)
    # Mean accuracy difference of the top-m most confident images, for every m.
    diff = np.cumsum(gain) / count
    if z > 0:
        # Subtracting z standard errors of that mean (gain is -1, 0 or +1 per image) bounds
        # the loss from above instead of estimating it. The share of images where the two
        # exits disagree is shrunk towards 1/2 by z^2/2 pseudo-images (Agresti-Coull), so a
        # prefix without a single disagreement still gets a margin (its plain variance is 0).
        disagree = (np.cumsum(gain * gain) + z * z / 2) / (count + z * z)
        var = np.maximum(disagree - diff * diff, 0.0)
        diff = diff - z * np.sqrt(var / count)
    # A threshold can only split between distinct confidences: every image with conf >= t
    # exits, so only prefixes that end before a strictly lower confidence are reachable.
    boundary = np.append(sorted_conf[:-1] > sorted_conf[1:], True)
    ok = boundary & (diff >= -budget_points / 100.0 - 1e-12) & (count >= min_samples)
    if not ok.any():
        return none
    m = int(np.flatnonzero(ok)[-1]) + 1
    threshold = float(sorted_conf[m - 1])
    if threshold >= 1.0:
        # should_exit treats >= 1 as "never": only certain images would pass, so disable.
        return none
    return threshold, conf >= threshold


def calibrate_thresholds(confidences, exit_preds, final_pred, labels, budget_points: float,
                         min_samples: int = 1, confidence: float = EMPIRICAL) -> tuple:
    """Thresholds of all early exits, calibrated in cascade order (see :func:`calibrate`)."""
    return calibrate(confidences, exit_preds, final_pred, labels, budget_points,
                     min_samples, confidence)[0]


def calibrate(confidences, exit_preds, final_pred, labels, budget_points: float,
              min_samples: int = 1, confidence: float = EMPIRICAL) -> tuple:
    """
    Thresholds of all early exits, calibrated in cascade order, and why each is what it is.

    :param confidences: sequence (one per early exit) of (N,) gate confidences.
    :param exit_preds: sequence of (N,) predicted classes of the early exits.
    :param final_pred: (N,) predicted classes of the final exit.
    :param labels: (N,) true classes.
    :param budget_points: allowed loss in percentage points (see the module docstring).
    :param min_samples: minimum images an exit must take to be enabled.
    :param confidence: see :func:`calibrate_threshold`.
    :return: ``(thresholds, reasons)``: one threshold and one sentence per early exit. An exit
        is never disabled silently: when fewer than ``min_samples`` validation images reach it
        in the cascade (a small data set, earlier exits taking most), it is calibrated on the
        whole validation split instead, so an exit more accurate than the final one is kept;
        a disabled exit's reason gives its accuracy against the final exit's.
    """
    labels = np.asarray(labels)
    final_correct = np.asarray(final_pred) == labels
    remaining = np.ones(len(labels), bool)
    thresholds, reasons = [], []
    for k, (conf, pred) in enumerate(zip(confidences, exit_preds)):
        idx = np.flatnonzero(remaining)
        conf = np.asarray(conf, np.float64)
        correct = np.asarray(pred) == labels
        t, taken = calibrate_threshold(conf[idx], correct[idx], final_correct[idx],
                                       budget_points, min_samples, confidence)
        if t < 1.0:
            reason = (f'takes {100 * taken.mean():.1f}% of the {len(idx)} validation images '
                      'that reach it')
        elif len(idx) < min_samples:
            t, everywhere = calibrate_threshold(conf, correct, final_correct, budget_points,
                                                min_samples, confidence)
            if t < 1.0:
                taken = everywhere[idx]
                reason = (f'only {len(idx)} validation images reach it (< {min_samples}): '
                          f'calibrated on all {len(labels)}, where it is '
                          f'{100 * correct.mean():.1f}% accurate against '
                          f'{100 * final_correct.mean():.1f}% for the final exit')
            else:
                reason = (f'disabled: only {len(idx)} validation images reach it, and on all '
                          f'{len(labels)} no threshold keeps it within {budget_points:g} points '
                          f'of the final exit ({100 * correct.mean():.1f}% against '
                          f'{100 * final_correct.mean():.1f}%)')
        else:
            reason = (f'disabled: on the {len(idx)} validation images that reach it no '
                      f'threshold keeps it within {budget_points:g} points of the final exit '
                      f'({100 * correct[idx].mean():.1f}% against '
                      f'{100 * final_correct[idx].mean():.1f}%, or fewer than {min_samples} '
                      'images would leave)')
        thresholds.append(t)
        reasons.append(reason)
        remaining[idx[taken]] = False
    return tuple(thresholds), tuple(reasons)


def cascade(confidences, exit_preds, final_pred, thresholds) -> np.ndarray:
    """Exit index each image leaves at (len(thresholds) = final), following ``should_exit``."""
    n = len(final_pred)
    exit_at = np.full(n, len(thresholds), np.int64)
    undecided = np.ones(n, bool)
    for k, (conf, t) in enumerate(zip(confidences, thresholds)):
        if t <= 0:
            fires = undecided.copy()
        elif t >= 1:
            fires = np.zeros(n, bool)
        else:
            fires = undecided & (np.asarray(conf) >= t)
        exit_at[fires] = k
        undecided &= ~fires
    return exit_at


def cascade_report(confidences, exit_preds, final_pred, labels, thresholds,
                   exit_macs=None) -> dict:
    """
    Accuracy, exit distribution and expected compute of the calibrated cascade.

    ``exit_macs``: cumulative multiply-accumulates to reach and run each exit (num_exits
    values); when given, the report includes the expected MACs per image and their ratio to
    running the whole network.
    """
    labels = np.asarray(labels)
    preds = [np.asarray(p) for p in exit_preds] + [np.asarray(final_pred)]
    exit_at = cascade(confidences, exit_preds, final_pred, thresholds)
    chosen = np.choose(exit_at, preds)
    num_exits = len(preds)
    rates = np.bincount(exit_at, minlength=num_exits) / max(1, len(labels))
    per_exit = []
    for k in range(num_exits):
        taken = exit_at == k
        per_exit.append({
            'exit': k,
            'threshold': float(thresholds[k]) if k < len(thresholds) else None,
            'exit_rate': float(rates[k]),
            'accuracy_taken': float((preds[k][taken] == labels[taken]).mean())
            if taken.any() else None,
            'accuracy_alone': float((preds[k] == labels).mean()),
        })
    report = {
        'accuracy': float((chosen == labels).mean()),
        'final_exit_accuracy': float((preds[-1] == labels).mean()),
        'exit_rates': [float(r) for r in rates],
        'per_exit': per_exit,
    }
    if exit_macs is not None:
        macs = np.asarray(exit_macs, np.float64)
        expected = float((rates * macs).sum())
        report['expected_macs'] = expected
        report['full_macs'] = float(macs[-1])
        report['compute_ratio'] = expected / float(macs[-1])
        for k in range(num_exits):
            per_exit[k]['cumulative_macs'] = float(macs[k])
    return report
