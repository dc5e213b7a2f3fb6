# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
What is compared in one evaluation run: a *configuration* classifies one image.

Two kinds share one interface, so that the one timing loop in
:mod:`gfde_perception.evaluation.offline` measures them the same way:

* :class:`GfdeConfiguration`: a ``.gfde`` bundle and an exit policy run by
  :class:`gfde_perception.runtime.Classifier` (the deployed path, early exits included);
* :class:`TorchConfiguration`: a plain torch classifier (the teacher, a classic CNN baseline)
  fed by the same :func:`gfde_perception.preprocessing.preprocess` and run on the same threads.

Configurations are named on the command line as ``NAME=KIND:PATH[@POLICY]``, ``POLICY`` in the
one exit-policy grammar of :mod:`gfde_perception.runtime.policies`:

* ``student=bundle:default`` (the embedded model, its calibrated thresholds: ``@calibrated``),
* ``exits=bundle:model.gfde@threshold=0.8,0.9``, ``full=bundle:model.gfde@final``,
  ``exit0=bundle:model.gfde@force=0``,
* ``teacher=teacher:teacher.safetensors`` (a teacher saved by ``gfde-train``).
"""

from dataclasses import dataclass, field
import math

from gfde_perception.bundle import default_bundle_path, load_bundle
from gfde_perception.errors import ConfigError
from gfde_perception.preprocessing import preprocess
from gfde_perception.runtime import Classifier, RuntimeConfig
from gfde_perception.runtime.policies import DEFAULT_POLICY, ExitPolicy, parse_policy
# TEMPORARY, for the lead to remove: the one import from evaluation into training. Teachers are
# still saved in their own file format; once they are .gfde bundles built by the one registry,
# TorchConfiguration loads them with load_bundle and this import goes
# (test/test_layers.py names it as the only allowed exception).
from gfde_perception.training.teacher import load_teacher
import numpy as np
import torch

KINDS = ('bundle', 'teacher')


@dataclass(frozen=True)
class ConfigurationSpec:
    """
    A configuration as named by the user.

    :ivar name: short name used in reports and plots.
    :ivar kind: 'bundle' (GFDE bundle run by the runtime) or 'teacher' (torch classifier).
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


class TorchConfiguration(Configuration):
    """A plain torch classifier (teacher or baseline) with the package's one preprocessing."""

    def __init__(self, spec: ConfigurationSpec, model=None, preprocessing=None, labels=()):
        self.spec = spec
        if model is None:
            model, manifest = load_teacher(spec.path)
            preprocessing = manifest['preprocessing']
            labels = manifest.get('labels', ())
        if preprocessing is None:
            raise ConfigError(f'configuration {spec.name!r}: a torch model needs its '
                              'preprocessing spec')
        self.model = model.eval()
        self.preprocessing = preprocessing
        self.labels = tuple(labels)
        self.num_exits = 1
        self._input = np.zeros(preprocessing.input_shape, np.float32)

    def predict(self, image: np.ndarray) -> Prediction:
        x = preprocess(image, self.preprocessing, out=self._input)
        with torch.inference_mode():
            output = self.model(torch.from_numpy(x)[None])
            logits = output.logits if hasattr(output, 'logits') else output
            probs = torch.softmax(logits.float(), dim=-1)[0]
            class_id = int(torch.argmax(probs))
        return Prediction(class_id=class_id, score=float(probs[class_id]))

    def describe(self) -> dict:
        info = super().describe()
        info.update({'path': self.spec.path, 'backend': 'torch-cpu', 'policy': '',  # no exits
                     'parameters': int(sum(p.numel() for p in self.model.parameters()))})
        return info


def build_configuration(spec: ConfigurationSpec, runtime_config=None) -> Configuration:
    """Instantiate the configuration ``spec`` names."""
    if spec.kind == 'bundle':
        return GfdeConfiguration(spec, runtime_config)
    return TorchConfiguration(spec)
