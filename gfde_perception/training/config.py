# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Frozen, validated configuration of a training run, built from YAML (``gfde-train --config``).

The YAML mirrors the dataclasses one to one (see ``config/train_default.yaml``); unknown keys are
refused so a typo cannot silently fall back to a default.
"""

from dataclasses import asdict, dataclass, field, fields, is_dataclass, MISSING
from pathlib import Path
from typing import Mapping, Optional

from gfde_perception.choices import (
    DEFAULT_GATE_METRIC, DISTILLATION_KINDS, GATE_METRICS, IMAGENET_MEAN, IMAGENET_STD)
from gfde_perception.errors import ConfigError
from gfde_perception.preprocessing import PreprocessSpec
from gfde_perception.training.data import AugmentConfig
import yaml

DATA_KINDS = ('fashion-mnist', 'image-folder', 'rosbag')
TEACHER_KINDS = ('efficientnet-lite0', 'registry', 'bundle', 'official-gfnet', 'module', 'none')
# How the teacher learns: every layer, only the classifier on frozen features, or the head first
# and then every layer for as many epochs as the time budget allows.
TEACHER_TRAINING = ('full', 'head', 'auto')
DEVICE_FORMS = ('auto', 'cpu', 'cuda', 'cuda:N')


def check_device(name: str) -> str:
    """Return ``name`` if it is one of :data:`DEVICE_FORMS` (N a CUDA index), else raise."""
    if name in ('auto', 'cpu', 'cuda') or (name.startswith('cuda:') and name[5:].isdigit()):
        return name
    raise ConfigError(f'device must be one of {DEVICE_FORMS}, got {name!r}')


def _check(condition: bool, message: str):
    if not condition:
        raise ConfigError(message)


@dataclass(frozen=True)
class OptimConfig:
    """Optimisation of one step: AdamW with linear warm-up then cosine decay, per batch."""

    epochs: float = 1.0
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_fraction: float = 0.05
    label_smoothing: float = 0.0
    grad_clip: float = 5.0
    checkpoint_every: int = 100
    checkpoint_minutes: float = 2.0
    max_steps: Optional[int] = None
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self):
        _check(self.epochs > 0, f'epochs must be > 0, got {self.epochs}')
        _check(self.batch_size >= 1, f'batch_size must be >= 1, got {self.batch_size}')
        _check(self.lr > 0, f'lr must be > 0, got {self.lr}')
        _check(self.weight_decay >= 0, f'weight_decay must be >= 0, got {self.weight_decay}')
        _check(0 <= self.warmup_fraction < 1,
               f'warmup_fraction must be in [0, 1), got {self.warmup_fraction}')
        _check(0 <= self.label_smoothing < 1,
               f'label_smoothing must be in [0, 1), got {self.label_smoothing}')
        _check(self.grad_clip >= 0, f'grad_clip must be >= 0, got {self.grad_clip}')
        _check(self.checkpoint_every >= 1,
               f'checkpoint_every must be >= 1, got {self.checkpoint_every}')
        _check(self.checkpoint_minutes > 0,
               f'checkpoint_minutes must be > 0, got {self.checkpoint_minutes}')
        _check(self.max_steps is None or self.max_steps >= 1,
               f'max_steps must be >= 1 or null, got {self.max_steps}')


def _grey_28() -> PreprocessSpec:
    """Return the student's default input: 28x28 grey (Fashion-MNIST), scaled to [-1, 1]."""
    return PreprocessSpec((28, 28), 'gray', (0.5,), (0.5,), 'area', 'stretch')


@dataclass(frozen=True)
class DataConfig:
    """
    Where the labelled images come from and how they are split.

    ``kind``: 'fashion-mnist' (IDX files in ``root``; official train/test), 'image-folder'
    (``root`` = train folder, optional ``test_root``), or 'rosbag' (``bag``, ``image_topic``,
    ``label_topic`` or ``sidecar``; ``classes`` optional when the bag or sidecar names them;
    split in time order). ``val_fraction`` of the
    training set becomes validation (stratified, seeded); the test set is only used for final
    metrics. ``max_train``/``max_test`` keep a seeded subset (smoke tests, quick looks).
    """

    kind: str = 'fashion-mnist'
    root: str = '/usr/share/datasets/fashion-mnist'
    test_root: Optional[str] = None
    val_fraction: float = 0.1
    bag: Optional[str] = None
    image_topic: Optional[str] = None
    label_topic: Optional[str] = None
    sidecar: Optional[str] = None
    classes: Optional[tuple] = None
    max_train: Optional[int] = None
    max_test: Optional[int] = None

    def __post_init__(self):
        _check(self.kind in DATA_KINDS,
               f'data.kind must be one of {DATA_KINDS}, got {self.kind!r}')
        _check(0 < self.val_fraction < 1,
               f'data.val_fraction must be in (0, 1), got {self.val_fraction}')
        if self.kind == 'rosbag':
            _check(bool(self.bag and self.image_topic),
                   'data.kind rosbag needs data.bag and data.image_topic')
            _check(bool(self.label_topic or self.sidecar),
                   'data.kind rosbag needs data.label_topic or data.sidecar')
        for name in ('max_train', 'max_test'):
            value = getattr(self, name)
            _check(value is None or value >= 1, f'data.{name} must be >= 1 or null, got {value}')


@dataclass(frozen=True)
class TeacherConfig:
    """
    Step 1: which teacher to train or fine-tune.

    ``kind``: 'registry' (``name`` from :func:`gfde_perception.models.build_model`, with
    ``overrides``; ``pretrained`` applies to ImageNet-pretrained entries), 'efficientnet-lite0'
    (the registry's ImageNet-pretrained EfficientNet-Lite0), 'bundle' (``checkpoint`` = an
    already trained ``.gfde`` bundle: nothing is trained, its labels must match the data),
    'official-gfnet' (``checkpoint`` file + ``arch``), 'module' (``module`` =
    'package.module:factory', a callable taking ``num_classes`` and returning any torch
    classifier; its logits are cached but it is not saved as a bundle), or 'none' (no teacher;
    the student then trains without distillation).

    ``train``: 'full' trains every layer for ``optim.epochs``; 'head' fits only the classifier
    on features of the frozen (pretrained) backbone, computed once: seconds for thousands of
    images; 'auto' fits the head, then fine-tunes every layer for as many epochs (at most
    ``optim.epochs``) as the run's time budget allows, and says which it did.
    """

    kind: str = 'efficientnet-lite0'
    train: str = 'full'
    name: Optional[str] = None
    overrides: Mapping = field(default_factory=dict)
    arch: Optional[str] = None
    checkpoint: Optional[str] = None
    module: Optional[str] = None
    pretrained: bool = True
    preprocessing: PreprocessSpec = field(default_factory=lambda: PreprocessSpec(
        (64, 64), 'rgb', IMAGENET_MEAN, IMAGENET_STD, 'bilinear'))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(
        epochs=3, lr=1e-3, weight_decay=1e-4, label_smoothing=0.1))

    def __post_init__(self):
        object.__setattr__(self, 'overrides', dict(self.overrides or {}))
        _check(self.kind in TEACHER_KINDS,
               f'teacher.kind must be one of {TEACHER_KINDS}, got {self.kind!r}')
        _check(self.train in TEACHER_TRAINING,
               f'teacher.train must be one of {TEACHER_TRAINING}, got {self.train!r}')
        _check(self.kind != 'registry' or bool(self.name), 'teacher.kind registry needs name')
        _check(self.kind != 'official-gfnet' or bool(self.checkpoint and self.arch),
               'teacher.kind official-gfnet needs checkpoint and arch')
        _check(self.kind != 'bundle' or bool(self.checkpoint),
               'teacher.kind bundle needs checkpoint (the .gfde file)')
        _check(self.kind != 'module' or (bool(self.module) and ':' in self.module),
               "teacher.kind module needs module: 'package.module:factory'")


@dataclass(frozen=True)
class StudentConfig:
    """
    Step 2: the student and how it learns from the teacher.

    ``model`` is any registry name: a GFNet or GFNet-C variant (a GFDE student, with a
    distillation head and early exits), or a baseline (``cnn-28``, ``mobilenetv2-28``...), which
    the same pipeline trains for fair comparisons. ``exit_weight`` > 0 trains the early exits
    jointly with the backbone (their loss is added with this weight).
    """

    model: str = 'gfnet-edge-28'
    overrides: Mapping = field(default_factory=dict)
    preprocessing: PreprocessSpec = field(default_factory=_grey_28)
    distillation: str = 'hard'
    tau: float = 1.0
    alpha: float = 0.5
    exit_weight: float = 0.0
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(epochs=10, lr=2e-3))

    def __post_init__(self):
        object.__setattr__(self, 'overrides', dict(self.overrides or {}))
        _check(self.distillation in DISTILLATION_KINDS,
               f'student.distillation must be one of {DISTILLATION_KINDS}, '
               f'got {self.distillation!r}')
        _check(self.tau > 0, f'student.tau must be > 0, got {self.tau}')
        _check(0 <= self.alpha <= 1, f'student.alpha must be in [0, 1], got {self.alpha}')
        _check(self.exit_weight >= 0, f'student.exit_weight must be >= 0, got {self.exit_weight}')


@dataclass(frozen=True)
class ExitConfig:
    """
    Step 3: exit-head training and threshold calibration.

    ``budget_points``: the accuracy (percentage points) each exit may lose against the final
    exit on the images it takes; calibration picks per exit the largest exit rate on the
    validation split that stays within it, applied to the upper confidence limit (level
    ``confidence``) of the loss so that the budget also holds on unseen images (0.5: the plain
    estimate, which new images exceed more often than not; see
    :mod:`~gfde_perception.training.calibration`). ``min_exit_samples``: an exit that would
    take fewer validation images than this is disabled (threshold 1.0): too few to trust.
    ``refine_heads``: train the exit heads further on the frozen backbone's cached features
    (with ``optim``); False keeps the heads as the student step trained them
    (``student.exit_weight`` > 0) and only calibrates.
    """

    metric: str = DEFAULT_GATE_METRIC
    budget_points: float = 0.5
    confidence: float = 0.9
    min_exit_samples: int = 20
    self_distill: float = 0.5
    refine_heads: bool = True
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(
        epochs=5, lr=3e-3, weight_decay=1e-4, batch_size=256))

    def __post_init__(self):
        _check(self.metric in GATE_METRICS,
               f'exits.metric must be one of {GATE_METRICS}, got {self.metric!r}')
        _check(self.budget_points >= 0,
               f'exits.budget_points must be >= 0, got {self.budget_points}')
        _check(0.5 <= self.confidence < 1,
               f'exits.confidence must be in [0.5, 1), got {self.confidence}')
        _check(self.min_exit_samples >= 1,
               f'exits.min_exit_samples must be >= 1, got {self.min_exit_samples}')
        _check(0 <= self.self_distill <= 1,
               f'exits.self_distill must be in [0, 1], got {self.self_distill}')


@dataclass(frozen=True)
class TrainConfig:
    """
    A whole ``gfde-train`` run: data, the three steps, and where results go.

    ``time_budget_minutes``: plan the epochs of the teacher (``teacher.train: auto``) and the
    student so that the whole run fits, from step times measured before it starts (see
    :mod:`gfde_perception.training.budget`); the configured epochs are then maxima.
    ``device``: where the training and inference loops run: 'auto' (the first CUDA device when
    torch sees one, else the CPU), 'cpu', 'cuda' or 'cuda:N'.
    """

    name: str = 'gfde-student'
    seed: int = 0
    threads: int = 2
    device: str = 'auto'
    output_dir: str = 'runs/train'
    bundle: Optional[str] = None
    time_budget_minutes: Optional[float] = None
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    exits: ExitConfig = field(default_factory=ExitConfig)
    # The optional split step's section, validated by training.split.SplitStepConfig.
    split: Mapping = field(default_factory=dict)

    def __post_init__(self):
        _check(bool(self.name), 'name must not be empty')
        _check(self.threads >= 1, f'threads must be >= 1, got {self.threads}')
        check_device(self.device)
        _check(self.time_budget_minutes is None or self.time_budget_minutes > 0,
               f'time_budget_minutes must be > 0 or null, got {self.time_budget_minutes}')

    @property
    def bundle_path(self) -> Path:
        """Where the final bundle is written (default: ``<output_dir>/<name>.gfde``)."""
        return Path(self.bundle) if self.bundle else Path(self.output_dir) / f'{self.name}.gfde'

    def to_dict(self) -> dict:
        """Return a JSON/YAML-ready dict (recorded in the bundle's provenance)."""
        def plain(value):
            if isinstance(value, tuple):
                return [plain(v) for v in value]
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            return value
        return plain(asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping) -> 'TrainConfig':
        """Build from a nested dict; unknown keys raise :class:`ConfigError` naming the path."""
        return _build(cls, data or {}, '')

    @classmethod
    def from_yaml(cls, path) -> 'TrainConfig':
        """Read a YAML config file."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f'config file not found: {path}')
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f'{path} is not valid YAML: {exc}') from exc
        if data is not None and not isinstance(data, dict):
            raise ConfigError(f'{path} must hold a mapping at the top level')
        return cls.from_dict(data or {})


_NESTED = {
    'data': DataConfig, 'teacher': TeacherConfig, 'student': StudentConfig,
    'exits': ExitConfig, 'optim': OptimConfig, 'preprocessing': PreprocessSpec,
    'augment': AugmentConfig,
}


def _build(cls, data: Mapping, where: str):
    if not isinstance(data, Mapping):
        raise ConfigError(f'{where or "config"} must be a mapping, got {type(data).__name__}')
    names = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f'unknown keys in {where or "config"}: {unknown} '
                          f'(allowed: {sorted(names)})')
    kwargs = {}
    for key, value in data.items():
        path = f'{where}.{key}' if where else key
        nested = _NESTED.get(key)
        if nested is not None and key != 'overrides':
            if is_dataclass(value):
                kwargs[key] = value
                continue
            # A partial nested mapping overrides only the keys it names.
            factory = names[key].default_factory
            default = factory() if factory is not MISSING else None
            base = {f.name: getattr(default, f.name) for f in fields(default)} if default else {}
            base.update(value or {})
            kwargs[key] = _build(nested, base, path)
        elif isinstance(value, list):
            kwargs[key] = tuple(value)
        else:
            kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f'{where or "config"}: {exc}') from exc
