# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
What one classification returns; the fields map 1:1 onto ``gfde_msgs/Classification``.

Immutable named tuples of Python scalars and tuples, so a result can cross threads, be logged as
JSON (:meth:`Result.to_dict`) and be turned into a message without touching tensors. Named tuples
rather than frozen dataclasses because one is built per camera frame: a frozen dataclass of 18
fields took about ten times longer to construct, on the per-frame path.
"""

import math
from typing import NamedTuple

import numpy as np


class ClassScore(NamedTuple):
    """One entry of a top-k list: class index, label and softmax probability."""

    class_id: int
    label: str
    score: float


class StageTimings(NamedTuple):
    """
    Per-stage wall-clock time of one frame, in milliseconds.

    ``segment_ms[k]`` and ``exit_head_ms[k]`` belong to backbone segment k and exit head k; only
    stages that ran are listed (a speculative segment that finished and was discarded is listed
    too, so ``segment_ms`` may be one longer than ``exit_head_ms``). ``exit_head_ms`` includes
    the gate. ``inference_ms`` runs from the start of preprocessing to the exit decision.
    """

    preprocess_ms: float
    segment_ms: tuple
    exit_head_ms: tuple
    inference_ms: float


class EnergyReading(NamedTuple):
    """
    Energy attributed to one frame (or window).

    :ivar measured: True only when ``joules`` comes from a hardware counter.
    :ivar joules: energy above the idle baseline; NaN when unknown. Never an estimate when
        ``measured`` is True.
    :ivar source: 'nvml', 'rapl', 'ina3221', or 'none'.
    :ivar method: how an estimate was made, or why there is none (empty when measured).

    """

    measured: bool
    joules: float
    source: str
    method: str = ''

    @classmethod
    def unknown(cls, method: str) -> 'EnergyReading':
        """Return the reading used where no counter exists, saying why in ``method``."""
        return cls(False, math.nan, 'none', method)


class Result(NamedTuple):
    """
    The classification of one image.

    :ivar class_id: winning class index (0-based) in ``labels``.
    :ivar label: its name.
    :ivar score: softmax probability of the winner at the exit taken.
    :ivar top_k: the most probable classes at that exit, best first.
    :ivar exit_index: exit that produced the result (num_exits - 1 is the final classifier).
    :ivar num_exits: exits in the model, the final one included.
    :ivar blocks_run: backbone blocks run to reach the exit taken.
    :ivar blocks_total: backbone blocks in the model.
    :ivar gate_metric: the statistic the gates read: max_softmax, margin, entropy or learned.
    :ivar gate_confidence: gate confidence at each evaluated exit, in exit order.
    :ivar gate_threshold: threshold in force at each evaluated early exit (the final has none).
    :ivar policy: keyword of the exit policy that set the thresholds in the grammar of
        :func:`~gfde_perception.runtime.policies.parse_policy`, e.g. 'calibrated' or 'final'.
    :ivar speculative_segments: segments computed past the exit taken and discarded.
    :ivar timings: per-stage latency.
    :ivar backend: backend that ran the backbone, e.g. 'torch-cpu', 'tensorrt-fp16'.
    :ivar exit_device: where exit heads and gates ran, e.g. 'cpu-worker'.
    :ivar model_id: bundle name and the first 12 hex digits of its checksum.
    :ivar energy: energy of this frame, or why it is unknown.
    :ivar answered_by: for a split model, the side that produced the result: 'robot' (an
        early exit on the robot), 'server' (the server's tail) or 'robot-fallback' (the robot's
        best local result after the server missed its deadline); empty for an unsplit model.

    """

    class_id: int
    label: str
    score: float
    top_k: tuple
    exit_index: int
    num_exits: int
    blocks_run: int
    blocks_total: int
    gate_metric: str
    gate_confidence: tuple
    gate_threshold: tuple
    policy: str
    speculative_segments: int
    timings: StageTimings
    backend: str
    exit_device: str
    model_id: str
    energy: EnergyReading = EnergyReading(False, math.nan, 'none', 'no energy meter attached')
    answered_by: str = ''

    def to_dict(self) -> dict:
        """Return a JSON-ready dict (NaN joules become None)."""
        data = self._asdict()
        data['top_k'] = [c._asdict() for c in self.top_k]
        data['timings'] = self.timings._asdict()
        data['energy'] = self.energy._asdict()
        if math.isnan(data['energy']['joules']):
            data['energy']['joules'] = None
        return data


def top_classes(probs: np.ndarray, labels: tuple, k: int) -> tuple:
    """Return the ``k`` most probable classes of one (K,) probability vector, best first."""
    order = np.argsort(-probs, kind='stable')[:k]
    return tuple(ClassScore(c, labels[c], float(probs[c])) for c in order.tolist())


def classification_fields(result: Result, top_k: int = None, decode_ms: float = 0.0,
                          queue_ms: float = 0.0, total_ms: float = 0.0,
                          frame_age_ms: float = 0.0, source_topic: str = '',
                          frame_seq: int = 0) -> dict:
    """
    Return the fields of a ``gfde_msgs/Classification`` (all but the header) as plain data.

    The one mapping from a result to the message: the node publishes it (through
    ``gfde_perception.ros.conversions``), evaluation writes it into bags. Nested messages are
    dicts (``top_k`` a list of them); a non-finite score stays NaN.

    :param result: the runtime's result.
    :param top_k: keep at most this many top-k entries (None = all the result has).
    :param decode_ms: time spent decoding the message into an array.
    :param queue_ms: time the frame waited for the inference worker.
    :param total_ms: from the message arriving to the result being published.
    :param frame_age_ms: publish time minus the image header stamp.
    :param source_topic: resolved name of the camera topic.
    :param frame_seq: sequence number of the frame on its topic.
    """
    entries = result.top_k if top_k is None else result.top_k[:top_k]
    timings, energy = result.timings, result.energy
    return {
        'class_id': int(result.class_id), 'label': str(result.label),
        'score': float(result.score),
        'top_k': [{'class_id': int(c.class_id), 'label': str(c.label), 'score': float(c.score)}
                  for c in entries],
        'exit_index': int(result.exit_index), 'num_exits': int(result.num_exits),
        'blocks_run': int(result.blocks_run), 'blocks_total': int(result.blocks_total),
        'gate_metric': str(result.gate_metric),
        'gate_confidence': [float(c) for c in result.gate_confidence],
        'gate_threshold': [float(t) for t in result.gate_threshold],
        'policy': str(result.policy), 'speculative_segments': int(result.speculative_segments),
        'latency': {
            'decode_ms': float(decode_ms), 'preprocess_ms': float(timings.preprocess_ms),
            'segment_ms': [float(v) for v in timings.segment_ms],
            'exit_head_ms': [float(v) for v in timings.exit_head_ms],
            'inference_ms': float(timings.inference_ms), 'queue_ms': float(queue_ms),
            'total_ms': float(total_ms), 'frame_age_ms': float(frame_age_ms)},
        'energy': {'measured': bool(energy.measured), 'joules': float(energy.joules),
                   'source': str(energy.source), 'method': str(energy.method)},
        'backend': str(result.backend), 'exit_device': str(result.exit_device),
        'model_id': str(result.model_id), 'answered_by': str(result.answered_by),
        'source_topic': str(source_topic),
        'frame_seq': int(frame_seq),
    }
