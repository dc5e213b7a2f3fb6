# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
What is compared in one evaluation run: a *configuration* classifies one image.

Every model is a ``.gfde`` bundle (GFDE students, teachers and baselines alike), run with an exit
policy by :class:`gfde_perception.runtime.Classifier`: the deployed path, preprocessing and early
exits included, so the one timing loop in :mod:`gfde_perception.evaluation.offline` measures every
configuration the same way. The kind ``teacher`` names a bundle without early exits (kept so
reports can tell the roles apart).

Configurations are named on the command line as ``NAME=KIND:PATH[@POLICY]``:

* ``student=bundle:default`` (the embedded model, its calibrated thresholds),
* ``exits=bundle:model.gfde@threshold=0.8,0.9``, ``full=bundle:model.gfde@final``,
  ``exit0=bundle:model.gfde@force=0``,
* ``teacher=teacher:teacher.gfde`` (a teacher saved by ``gfde-train``).
"""

from dataclasses import dataclass, field
import math
from typing import Optional

from gfde_perception.errors import ConfigError
import numpy as np

KINDS = ('bundle', 'teacher')
POLICIES = ('default', 'threshold', 'final', 'force')


@dataclass(frozen=True)
class ConfigurationSpec:
    """
    A configuration as named by the user.

    :ivar name: short name used in reports and plots.
    :ivar kind: 'bundle' (a model with early exits) or 'teacher' (a bundle without any).
    :ivar path: file of the bundle / teacher; 'default' for the embedded bundle.
    :ivar policy: 'default' (the bundle's calibrated thresholds), 'threshold', 'final' or
        'force' (bundles only).
    :ivar thresholds: thresholds for 'threshold' (one per early exit, or one for all).
    :ivar force_exit: exit index for 'force'.
    """

    name: str
    kind: str
    path: str
    policy: str = 'default'
    thresholds: tuple = ()
    force_exit: Optional[int] = None

    def __post_init__(self):
        if not self.name or any(c in self.name for c in '=/ '):
            raise ConfigError(f'configuration name {self.name!r} must be non-empty and free of '
                              "'=', '/' and spaces")
        if self.kind not in KINDS:
            raise ConfigError(f'configuration {self.name!r}: kind must be one of {KINDS}, got '
                              f'{self.kind!r}')
        if self.policy not in POLICIES:
            raise ConfigError(f'configuration {self.name!r}: policy must be one of {POLICIES}, '
                              f'got {self.policy!r}')
        if self.kind == 'teacher' and self.policy != 'default':
            raise ConfigError(f'configuration {self.name!r}: a teacher has no exits, so no '
                              f'policy ({self.policy!r})')
        object.__setattr__(self, 'thresholds', tuple(float(t) for t in self.thresholds))
        if self.policy == 'threshold' and not self.thresholds:
            raise ConfigError(f'configuration {self.name!r}: policy threshold needs values, '
                              'e.g. @threshold=0.8,0.9')
        if self.policy == 'force' and (self.force_exit is None or self.force_exit < 0):
            raise ConfigError(f'configuration {self.name!r}: policy force needs an exit index '
                              '>= 0, e.g. @force=0')

    @classmethod
    def parse(cls, text: str) -> 'ConfigurationSpec':
        """Parse ``NAME=KIND:PATH[@POLICY]`` (see the module docstring)."""
        name, sep, rest = text.partition('=')
        kind, sep2, target = rest.partition(':')
        if not sep or not sep2 or not target:
            raise ConfigError(f'cannot parse configuration {text!r}; expected '
                              'NAME=KIND:PATH[@POLICY], e.g. student=bundle:model.gfde@final')
        path, _, policy = target.partition('@')
        policy_name, _, value = policy.partition('=')
        policy_name = policy_name or 'default'
        thresholds, force = (), None
        try:
            if policy_name == 'threshold':
                thresholds = tuple(float(v) for v in value.split(',') if v.strip())
            elif policy_name == 'force':
                force = int(value)
        except ValueError:
            raise ConfigError(f'configuration {text!r}: bad policy value {value!r}') from None
        return cls(name.strip(), kind.strip(), path.strip(), policy_name, thresholds, force)

    def describe(self) -> str:
        """Return the spec in the command-line syntax."""
        policy = {'default': '', 'final': '@final',
                  'threshold': '@threshold=' + ','.join(f'{t:g}' for t in self.thresholds),
                  'force': f'@force={self.force_exit}'}[self.policy]
        return f'{self.name}={self.kind}:{self.path}{policy}'


@dataclass(frozen=True)
class Prediction:
    """
    One configuration's answer for one frame (timing is added by the caller's loop).

    :ivar class_id: predicted class index.
    :ivar score: probability of that class.
    :ivar exit_index: exit taken (0 for a model without exits).
    :ivar num_exits: exits of the model (1 without exits).
    :ivar blocks_fraction: share of the backbone run (1.0 without exits).
    :ivar inference_ms: the runtime's own inference time, NaN when not reported.
    :ivar stage_ms: per-stage timings reported by the runtime (may be empty).
    """

    class_id: int
    score: float
    exit_index: int = 0
    num_exits: int = 1
    blocks_fraction: float = 1.0
    inference_ms: float = math.nan
    stage_ms: dict = field(default_factory=dict)


class Configuration:
    """Interface of a configuration: ``predict(image)``, ``labels``, ``describe``, ``close``."""

    spec: ConfigurationSpec
    labels: tuple = ()
    num_exits: int = 1

    def predict(self, image: np.ndarray) -> Prediction:
        """Classify one image (RGB ``(H, W, 3)`` or grey ``(H, W)``)."""
        raise NotImplementedError

    def describe(self) -> dict:
        """Return what a report needs to say about this configuration."""
        return {'name': self.spec.name, 'spec': self.spec.describe(), 'kind': self.spec.kind,
                'policy': self.spec.policy, 'num_exits': self.num_exits,
                'labels': list(self.labels)}

    def close(self) -> None:
        """Release resources (worker threads, engines)."""


def make_policy(spec: ConfigurationSpec):
    """Return the runtime exit policy named by ``spec`` (None = the bundle's thresholds)."""
    from gfde_perception.runtime.policies import (FinalExitPolicy, ForceExitPolicy,
                                                  ThresholdPolicy)

    if spec.policy == 'final':
        return FinalExitPolicy()
    if spec.policy == 'force':
        return ForceExitPolicy(spec.force_exit)
    if spec.policy == 'threshold':
        return ThresholdPolicy(spec.thresholds)
    return ThresholdPolicy()


def resolve_bundle_path(path: str) -> str:
    """Return the bundle file for ``path`` ('default' = the embedded model)."""
    if path == 'default':
        from gfde_perception.bundle import default_bundle_path
        return str(default_bundle_path())
    return path


class GfdeConfiguration(Configuration):
    """A GFDE bundle and exit policy, run by :class:`gfde_perception.runtime.Classifier`."""

    def __init__(self, spec: ConfigurationSpec, runtime_config=None):
        from gfde_perception.bundle import load_bundle
        from gfde_perception.runtime import Classifier, RuntimeConfig

        self.spec = spec
        self.bundle_path = resolve_bundle_path(spec.path)
        self.bundle = load_bundle(self.bundle_path)
        policy = make_policy(spec)
        if spec.policy == 'threshold' and len(spec.thresholds) == 1:
            # One value applies to every early exit: the usual knob of a trade-off sweep.
            from gfde_perception.runtime.policies import ThresholdPolicy
            policy = ThresholdPolicy(spec.thresholds * (self.bundle.config.num_exits - 1))
        self.classifier = Classifier(self.bundle, runtime_config or RuntimeConfig(), policy)
        self.labels = tuple(self.classifier.labels)
        self.num_exits = int(self.classifier.num_exits)

    def predict(self, image: np.ndarray) -> Prediction:
        result = self.classifier.classify(image)
        timings = result.timings
        return Prediction(
            class_id=int(result.class_id), score=float(result.score),
            exit_index=int(result.exit_index), num_exits=int(result.num_exits),
            blocks_fraction=float(result.blocks_run) / max(1, int(result.blocks_total)),
            inference_ms=float(timings.inference_ms),
            stage_ms={'preprocess_ms': float(timings.preprocess_ms),
                      'segment_ms': [float(v) for v in timings.segment_ms],
                      'exit_head_ms': [float(v) for v in timings.exit_head_ms]})

    def describe(self) -> dict:
        info = super().describe()
        info.update({
            'path': self.bundle_path,
            'model_id': f'{self.bundle.name}:{self.bundle.checksum[:12]}',
            'backend': str(self.classifier.backend),
            'backend_reason': str(getattr(self.classifier, 'backend_reason', '')),
            'thresholds': list(self.classifier.policy.thresholds()),
            'gate_metric': self.bundle.gate.metric,
            'blocks_per_exit': list(getattr(self.bundle.config, 'exit_blocks', ())),
        })
        return info

    def close(self) -> None:
        self.classifier.close()


def build_configuration(spec: ConfigurationSpec, runtime_config=None) -> Configuration:
    """Instantiate the configuration ``spec`` names."""
    # Every model is a bundle now (teachers and baselines too): one runtime path for all.
    return GfdeConfiguration(spec, runtime_config)
