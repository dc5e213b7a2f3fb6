# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
The node's ``/diagnostics`` entry: a :class:`~gfde_perception.stats.StatsSnapshot` as key-values.

Keys are stable strings (docs/NODE.md lists them) so that dashboards and tests can rely on them:
rates, the frame accounting (``accounting`` writes its identity out with the figures), per-stage
latency percentiles, drops by reason, the exit histogram, backend and energy.
"""

import math

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from gfde_perception.stats import (DROP_BAD_INPUT, ERROR, evaluate_health, HealthBounds, OK,
                                   PERCENTILES, StatsSnapshot, WARN)

LEVELS = {OK: DiagnosticStatus.OK, WARN: DiagnosticStatus.WARN, ERROR: DiagnosticStatus.ERROR}
# Stages reported even before their first sample (then as 'nan'), so the key set is fixed.
CORE_STAGES = ('decode', 'queue', 'preprocess', 'inference', 'total', 'frame_age')


def _fmt(value) -> str:
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, float):
        return 'nan' if math.isnan(value) else f'{value:.3f}'
    return str(value)


def classifier_facts(classifier, last, topics) -> dict:
    """
    Return the static facts of a classifier node: backend, exit device, model, policy, topics.

    :param classifier: the loaded classifier, or None (reported as 'not loaded').
    :param last: the last result published, or None.
    :param topics: the camera topic names.
    :return: the ``info`` of :func:`status_values`.
    """
    policy = getattr(classifier, 'policy', None)
    return {
        'backend': getattr(classifier, 'backend', '') if classifier is not None else 'not loaded',
        'exit_device': last.exit_device if last is not None else '',
        'model_id': getattr(classifier, 'model_id', '') or (last.model_id if last else ''),
        'policy': policy.describe() if hasattr(policy, 'describe') else str(policy or ''),
        'num_exits': getattr(classifier, 'num_exits', 0) if classifier is not None else 0,
        'topics': ' '.join(topics),
    }


def status_values(snapshot: StatsSnapshot, info: dict) -> list:
    """
    Return the ``(key, value)`` pairs of one diagnostic status, values as strings.

    :param snapshot: figures over the window.
    :param info: static facts: 'backend', 'exit_device', 'model_id', 'policy', 'num_exits',
        'topics'.
    :return: list of (key, value) pairs in a stable order.
    """
    dropped = sum(snapshot.dropped.values())
    pairs = [(key, _fmt(info.get(key, ''))) for key in
             ('backend', 'exit_device', 'model_id', 'policy', 'num_exits', 'topics')]
    pairs += [
        ('window_s', _fmt(snapshot.window_s)),
        ('input_rate_hz', _fmt(snapshot.input_rate_hz)),
        ('output_rate_hz', _fmt(snapshot.output_rate_hz)),
        ('frames_published', _fmt(snapshot.published)),
        ('frames_received', _fmt(snapshot.received)),
        ('frames_processed', _fmt(snapshot.processed)),
        ('frames_dropped', _fmt(dropped)),
        ('frames_in_flight', _fmt(snapshot.in_flight)),
        ('frames_unnumbered', _fmt(snapshot.unnumbered)),
        ('accounting', f'{snapshot.published} published = {snapshot.processed} processed + '
                       f'{dropped} dropped + {snapshot.in_flight} in flight'),
    ]
    pairs += [(f'dropped.{reason}', _fmt(count)) for reason, count in snapshot.dropped.items()]
    pairs += [(f'dropped.{DROP_BAD_INPUT}.{kind}', _fmt(count))
              for kind, count in sorted(snapshot.bad_input.items())]
    stages = list(CORE_STAGES) + sorted(s for s in snapshot.latency_ms if s not in CORE_STAGES)
    nan3 = (math.nan,) * len(PERCENTILES)
    for stage in stages:
        values = snapshot.latency_ms.get(stage, nan3)
        pairs += [(f'latency_ms.{stage}.p{q}', _fmt(v)) for q, v in zip(PERCENTILES, values)]
    processed = max(1, sum(snapshot.exit_counts.values()))
    num_exits = int(info.get('num_exits') or 0)
    exits = sorted(set(range(num_exits)) | set(snapshot.exit_counts))
    pairs.append(('exit_histogram', ' '.join(f'{k}:{snapshot.exit_counts.get(k, 0)}'
                                             for k in exits)))
    pairs += [(f'exit.{k}.share', _fmt(snapshot.exit_counts.get(k, 0) / processed))
              for k in exits]
    pairs += [
        ('energy.measured', _fmt(snapshot.energy_measured)),
        ('energy.joules_per_frame', _fmt(snapshot.energy_j_per_frame)
         if snapshot.energy_measured else 'not measured'),
        ('energy.source', snapshot.energy_source),
        ('energy.method', snapshot.energy_method),
    ]
    return pairs


def build_status(name: str, snapshot: StatsSnapshot, bounds: HealthBounds,
                 info: dict) -> DiagnosticStatus:
    """
    Build the node's DiagnosticStatus: level from the bounds, message, and every key-value.

    :param name: status name, e.g. '<node name>: classifier'.
    :param snapshot: figures over the window.
    :param bounds: limits that turn the level to WARN or ERROR.
    :param info: static facts (see :func:`status_values`).
    :return: the status.
    """
    level, message = evaluate_health(snapshot, bounds)
    status = DiagnosticStatus()
    status.level = LEVELS[level]
    status.name = name
    status.message = message
    status.hardware_id = str(info.get('backend', ''))
    status.values = [KeyValue(key=k, value=v) for k, v in status_values(snapshot, info)]
    return status


def build_array(stamp, statuses) -> DiagnosticArray:
    """Wrap statuses in a DiagnosticArray stamped with ``stamp`` (a builtin_interfaces Time)."""
    array = DiagnosticArray()
    array.header.stamp = stamp
    array.status = list(statuses)
    return array


def publish(node, publisher, statuses) -> None:
    """
    Publish ``statuses`` on ``publisher`` in one DiagnosticArray stamped with ``node``'s clock.

    Never raises: a failed publish is logged, diagnostics must not take a node down.
    """
    try:
        publisher.publish(build_array(node.get_clock().now().to_msg(), statuses))
    except Exception as exc:  # noqa: B902 - any publish failure is only logged
        node.get_logger().warning(f'diagnostics publish failed: {exc!r}')
