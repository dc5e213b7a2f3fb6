# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
What is compared in one evaluation run: a *configuration* classifies one image.

Every model is a ``.gfde`` bundle (GFDE students, teachers and baselines alike), run with an exit
policy by :class:`gfde_perception.runtime.Classifier`: the deployed path, preprocessing and early
exits included, so the one timing loop in :mod:`gfde_perception.evaluation.offline` measures every
configuration the same way. The kind ``teacher`` names a bundle without early exits (kept so
reports can tell the roles apart).

Configurations are named on the command line as ``NAME=KIND:PATH[@POLICY]``, ``POLICY`` in the
one exit-policy grammar of :mod:`gfde_perception.runtime.policies`:

* ``student=bundle:default`` (the embedded model, its calibrated thresholds: ``@calibrated``),
* ``exits=bundle:model.gfde@threshold=0.8,0.9``, ``full=bundle:model.gfde@final``,
  ``exit0=bundle:model.gfde@force=0``,
* ``teacher=teacher:teacher.gfde`` (a teacher saved by ``gfde-train``).
"""

from dataclasses import dataclass, field
import math

from gfde_perception.bundle import default_bundle_path, load_bundle
from gfde_perception.errors import ConfigError
from gfde_perception.runtime import Classifier, RuntimeConfig
from gfde_perception.runtime.policies import DEFAULT_POLICY, ExitPolicy, parse_policy
import numpy as np

KINDS = ('bundle', 'teacher')


@dataclass(frozen=True)
class ConfigurationSpec:
    """
    A configuration as named by the user.

    :ivar name: short name used in reports and plots.
    :ivar kind: 'bundle' (a model with early exits) or 'teacher' (a bundle without any).
    :ivar path: file of the bundle / teacher; 'default' for the embedded bundle.
    :ivar policy: the exit policy in the grammar of
        :func:`gfde_perception.runtime.policies.parse_policy` (bundles only), written back in
        its canonical form; 'calibrated' (the default) is the bundle's calibrated thresholds.
    """

    name: str
    kind: str
    path: str
    policy: str = DEFAULT_POLICY

    def __post_init__(self):
        if not self.name or any(c in self.name for c in '=/ '):
            raise ConfigError(f'configuration name {self.name!r} must be non-empty and free of '
                              "'=', '/' and spaces")
        if self.kind not in KINDS:
            raise ConfigError(f'configuration {self.name!r}: kind must be one of {KINDS}, got '
                              f'{self.kind!r}')
        try:
            policy = parse_policy(self.policy).spec()
        except ConfigError as exc:
            raise ConfigError(f'configuration {self.name!r}: {exc}') from None
        if self.kind == 'teacher' and policy != DEFAULT_POLICY:
            raise ConfigError(f'configuration {self.name!r}: a teacher has no exits, so no '
                              f'policy ({self.policy!r})')
        object.__setattr__(self, 'policy', policy)

    @classmethod
    def parse(cls, text: str) -> 'ConfigurationSpec':
        """Parse ``NAME=KIND:PATH[@POLICY]`` (see the module docstring)."""
        name, sep, rest = text.partition('=')
        kind, sep2, target = rest.partition(':')
        if not sep or not sep2 or not target:
            raise ConfigError(f'cannot parse configuration {text!r}; expected '
                              'NAME=KIND:PATH[@POLICY], e.g. student=bundle:model.gfde@final')
        path, _, policy = target.partition('@')
        return cls(name.strip(), kind.strip(), path.strip(), policy.strip() or DEFAULT_POLICY)

    def exit_policy(self) -> ExitPolicy:
        """Return a new runtime exit policy of this configuration (not bound yet)."""
        return parse_policy(self.policy)

    def describe(self) -> str:
        """Return the spec in the command-line syntax."""
        policy = '' if self.policy == DEFAULT_POLICY else f'@{self.policy}'
        return f'{self.name}={self.kind}:{self.path}{policy}'


@dataclass(frozen=True)
class Prediction:
    """
    One configuration's answer for one frame (timing is added by the caller's loop).

    :ivar class_id: predicted class index.
    :ivar score: probability of that class.
    :ivar exit_index: exit taken (0 for a model without exits).
    :ivar num_exits: exits of the model (1 without exits).
    :ivar blocks_run: backbone blocks run to reach the exit (0 for a model without blocks).
    :ivar blocks_total: backbone blocks of the model (0 for a model without blocks).
    :ivar inference_ms: the runtime's own inference time, NaN when not reported.
    :ivar stage_ms: per-stage timings reported by the runtime (may be empty).
    """

    class_id: int
    score: float
    exit_index: int = 0
    num_exits: int = 1
    blocks_run: int = 0
    blocks_total: int = 0
    inference_ms: float = math.nan
    stage_ms: dict = field(default_factory=dict)

    @property
    def blocks_fraction(self) -> float:
        """Share of the backbone run (1.0 for a model without blocks: it always runs whole)."""
        return self.blocks_run / self.blocks_total if self.blocks_total else 1.0


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


def resolve_bundle_path(path: str) -> str:
    """Return the bundle file for ``path`` ('default' = the embedded model)."""
    return str(default_bundle_path()) if path == 'default' else path


class GfdeConfiguration(Configuration):
    """A GFDE bundle and exit policy, run by :class:`gfde_perception.runtime.Classifier`."""

    def __init__(self, spec: ConfigurationSpec, runtime_config=None):
        self.spec = spec
        self.bundle_path = resolve_bundle_path(spec.path)
        self.bundle = load_bundle(self.bundle_path)
        self.classifier = Classifier(self.bundle, runtime_config or RuntimeConfig(),
                                     spec.exit_policy())
        self.labels = tuple(self.classifier.labels)
        self.num_exits = int(self.classifier.num_exits)

    def predict(self, image: np.ndarray) -> Prediction:
        result = self.classifier.classify(image)
        timings = result.timings
        return Prediction(
            class_id=int(result.class_id), score=float(result.score),
            exit_index=int(result.exit_index), num_exits=int(result.num_exits),
            blocks_run=int(result.blocks_run), blocks_total=int(result.blocks_total),
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
