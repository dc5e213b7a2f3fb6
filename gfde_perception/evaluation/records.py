# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Per-frame records of one evaluation run, shared by offline and live replay and by the report.

Plain lists of numbers, JSON round-trippable, so that a report can be recomputed from a saved
run and a test can recompute any figure directly from the records.
"""

from dataclasses import asdict, dataclass, field
import json
import math
from pathlib import Path
from typing import Optional

from gfde_perception.errors import ConfigError

MISSING = -1  # class_id / exit_index of a frame a live node never answered (a drop)


@dataclass
class ConfigurationRecords:
    """
    What one configuration did on every frame, in frame order.

    :ivar name: configuration name.
    :ivar info: its description (kind, policy, backend, thresholds, ...).
    :ivar class_id: predicted class per frame (``MISSING`` for a dropped frame).
    :ivar score: probability of the predicted class.
    :ivar exit_index: exit taken per frame (``MISSING`` for a dropped frame).
    :ivar blocks_fraction: share of the backbone run per frame.
    :ivar blocks_run: backbone blocks run per frame (``MISSING`` for a dropped frame).
    :ivar blocks_total: backbone blocks of the model (0 for a model without blocks).
    :ivar latency_ms: wall-clock latency per frame measured by the evaluation loop (offline:
        the ``predict`` call, preprocessing included; live: publish to result received).
    :ivar inference_ms: the runtime's own inference time per frame (NaN where not reported).
    :ivar energy_j: energy per frame (NaN where unknown).
    :ivar energy_measured: True when ``energy_j`` comes from a hardware counter.
    :ivar energy_source: counter name ('none' without one).
    :ivar energy_method: why energy is unknown, or how it was obtained.
    :ivar node_total_ms: live only: the node's own message-to-publish time per frame.
    """

    name: str
    info: dict = field(default_factory=dict)
    class_id: list = field(default_factory=list)
    score: list = field(default_factory=list)
    exit_index: list = field(default_factory=list)
    blocks_fraction: list = field(default_factory=list)
    blocks_run: list = field(default_factory=list)
    blocks_total: int = 0
    latency_ms: list = field(default_factory=list)
    inference_ms: list = field(default_factory=list)
    energy_j: list = field(default_factory=list)
    energy_measured: bool = False
    energy_source: str = 'none'
    energy_method: str = ''
    node_total_ms: list = field(default_factory=list)

    @property
    def num_exits(self) -> int:
        return int(self.info.get('num_exits', 1))

    def append(self, prediction, latency_ms: float, energy=None) -> None:
        """Add one frame from a :class:`~gfde_perception.evaluation.configurations.Prediction`."""
        self.class_id.append(int(prediction.class_id))
        self.score.append(float(prediction.score))
        self.exit_index.append(int(prediction.exit_index))
        self.blocks_fraction.append(float(prediction.blocks_fraction))
        self.blocks_run.append(int(prediction.blocks_run))
        self.blocks_total = int(prediction.blocks_total)
        self.latency_ms.append(float(latency_ms))
        self.inference_ms.append(float(prediction.inference_ms))
        if energy is None:
            self.energy_j.append(math.nan)
        else:
            self.energy_measured = bool(energy.measured)
            self.energy_source = str(energy.source)
            self.energy_method = str(energy.method)
            self.energy_j.append(float(energy.joules) if energy.measured else math.nan)

    def append_drop(self) -> None:
        """Add a frame that produced no result (live mode)."""
        for name in ('class_id', 'exit_index', 'blocks_run'):
            getattr(self, name).append(MISSING)
        for name in ('score', 'blocks_fraction', 'latency_ms', 'inference_ms', 'energy_j',
                     'node_total_ms'):
            getattr(self, name).append(math.nan)


@dataclass
class EvaluationRun:
    """
    Everything one ``gfde-eval`` run measured.

    :ivar mode: 'offline' or 'live'.
    :ivar source: where the frames came from (bag path, topics, label source).
    :ivar class_names: class names in index order.
    :ivar stamps_ns: header stamp per frame.
    :ivar labels: ground-truth class per frame, or None for an unlabelled bag.
    :ivar configurations: records of every configuration, in the order given.
    :ivar host: machine and library versions the figures were measured on.
    :ivar settings: warm-up, order, threads, rate: how the figures were measured.
    :ivar tradeoff: per configuration name, the accuracy/compute curve over exit thresholds.
    """

    mode: str
    source: dict
    class_names: tuple
    stamps_ns: list
    labels: Optional[list]
    configurations: list = field(default_factory=list)
    host: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    tradeoff: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.mode not in ('offline', 'live'):
            raise ConfigError(f"mode must be 'offline' or 'live', got {self.mode!r}")
        self.class_names = tuple(self.class_names)

    @property
    def frames(self) -> int:
        return len(self.stamps_ns)

    def configuration(self, name: str) -> ConfigurationRecords:
        """Return the records of configuration ``name``."""
        for records in self.configurations:
            if records.name == name:
                return records
        raise ConfigError(f'no configuration {name!r} in this run; have '
                          f'{[r.name for r in self.configurations]}')

    def to_dict(self) -> dict:
        data = asdict(self)
        data['class_names'] = list(self.class_names)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> 'EvaluationRun':
        data = dict(data)
        data['configurations'] = [ConfigurationRecords(**c) for c in data['configurations']]
        return cls(**data)

    def save(self, path) -> None:
        """Write the run as JSON (NaN written as null)."""
        Path(path).write_text(json.dumps(nan_to_none(self.to_dict())))

    @classmethod
    def load(cls, path) -> 'EvaluationRun':
        """Read a run saved by :meth:`save`."""
        data = json.loads(Path(path).read_text())
        for conf in data['configurations']:
            for key in ('score', 'blocks_fraction', 'latency_ms', 'inference_ms', 'energy_j',
                        'node_total_ms'):
                conf[key] = [math.nan if v is None else v for v in conf.get(key, [])]
        return cls.from_dict(data)


def nan_to_none(value):
    """Return ``value`` with every non-finite float (nested in dicts and lists) as None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [nan_to_none(v) for v in value]
    return value
