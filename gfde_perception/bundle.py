# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
The model bundle (``.gfde``): one file that carries everything needed to serve a model.

A bundle is a single safetensors file. Its tensors are the model's ``state_dict`` (no pickle is
ever written or read); its ``__metadata__`` holds three strings:

* ``gfde.format``: the format version (an integer, see :data:`FORMAT_VERSION`);
* ``gfde.manifest``: JSON with ``name``, ``model`` (the config of any registered model family,
  with its ``family``: a GFDE student, a baseline, a teacher), ``preprocessing``
  (:class:`PreprocessSpec`), ``labels``, ``gate`` (:class:`GateConfig`), ``provenance`` and
  ``metrics`` (free JSON objects);
* ``gfde.sha256``: SHA-256 over the version, the manifest text and every tensor (name, dtype,
  shape, bytes, in name order).

:func:`load_bundle` validates all of it and raises one named :class:`BundleError` subclass per
problem, with a message that says what is wrong. Loading is bounded: the file size is capped
(:data:`MAX_BUNDLE_BYTES`), every config field is range-checked before anything is built, and the
architecture is instantiated on the meta device (no weights allocated) to compare its shapes with
the stored tensors before the real model is built.

Format versions: 1 (GFDE only, no ``family`` in ``model``) is still read; 2 adds the family.
"""

from dataclasses import dataclass, field
import hashlib
import json
import os
from pathlib import Path
import tempfile
from typing import Mapping, Optional

from gfde_perception.errors import (
    BundleChecksumError, BundleCorruptError, BundleManifestError, BundleMismatchError,
    BundleNotFoundError, BundleVersionError, ConfigError)
from gfde_perception.gating import GateConfig
from gfde_perception.models.deploy import to_deployable
from gfde_perception.models.gfde import GFDE
from gfde_perception.models.registry import (
    build_from_config, config_from_dict, FAMILIES, state_dict_problems)
from gfde_perception.preprocessing import PreprocessSpec
import torch


FORMAT_VERSION = 2
SUPPORTED_VERSIONS = (1, 2)
# Larger files are refused before they are read: our largest model is a few MB, and a fine-tuned
# GFNet-H-B (54 M float32 weights) is 220 MB.
MAX_BUNDLE_BYTES = 1 << 30
KEY_FORMAT = 'gfde.format'
KEY_MANIFEST = 'gfde.manifest'
KEY_CHECKSUM = 'gfde.sha256'
MANIFEST_KEYS = ('name', 'model', 'preprocessing', 'labels', 'gate', 'provenance', 'metrics')
SUFFIX = '.gfde'


def default_bundle_path() -> Path:
    """Path of the model embedded in the package (``gfde_perception/data/default.gfde``)."""
    return Path(__file__).resolve().parent / 'data' / 'default.gfde'


def _check_consistency(config, spec: PreprocessSpec, labels: tuple, gate: GateConfig) -> None:
    if tuple(spec.input_size) != (config.img_size, config.img_size):
        raise BundleManifestError(
            f'preprocessing input_size {spec.input_size} does not match the model input '
            f'{config.img_size}x{config.img_size}')
    if spec.channels != config.in_chans:
        raise BundleManifestError(
            f'preprocessing gives {spec.channels} channel(s) ({spec.channel_order!r}) but the '
            f'model takes in_chans={config.in_chans}')
    if len(labels) != config.num_classes:
        raise BundleManifestError(
            f'{len(labels)} labels for a model with num_classes={config.num_classes}')
    if len(gate.thresholds) != len(config.exit_blocks):
        raise BundleManifestError(
            f'{len(gate.thresholds)} gate thresholds for {len(config.exit_blocks)} early exits '
            f'(exit_blocks={list(config.exit_blocks)})')


@dataclass(frozen=True, eq=False)
class BundleFields:
    """
    The fields every kind of bundle carries, checked when one is made.

    :class:`Bundle` (one model) and :class:`gfde_perception.split_bundle.SplitBundle` (a split
    model) build on it and add the checks of their model config; see :class:`Bundle` for what
    each field holds.

    :raises BundleManifestError: an empty name, preprocessing or gate of the wrong type,
        provenance or metrics that are not JSON objects, labels that are not distinct
        non-empty strings.
    """

    name: str
    config: object
    preprocessing: PreprocessSpec
    labels: tuple
    gate: GateConfig
    state_dict: Mapping = field(repr=False)
    provenance: Mapping = field(default_factory=dict)
    metrics: Mapping = field(default_factory=dict)
    checksum: str = ''

    def __post_init__(self):
        object.__setattr__(self, 'labels', tuple(self.labels))
        if not isinstance(self.name, str) or not self.name:
            raise BundleManifestError(f'bundle name must be a non-empty string, '
                                      f'got {self.name!r}')
        for attr, kind in (('preprocessing', PreprocessSpec), ('gate', GateConfig)):
            if not isinstance(getattr(self, attr), kind):
                raise BundleManifestError(f'{attr} must be a {kind.__name__}, got '
                                          f'{type(getattr(self, attr)).__name__}')
        for attr in ('provenance', 'metrics'):
            value = getattr(self, attr)
            if not isinstance(value, Mapping):
                raise BundleManifestError(f'{attr} must be a JSON object, got '
                                          f'{type(value).__name__}')
            try:
                json.dumps(value)
            except (TypeError, ValueError) as exc:
                raise BundleManifestError(f'{attr} is not JSON-serialisable: {exc}') from None
        labels = self.labels
        if not all(isinstance(lb, str) and lb.strip() for lb in labels):
            raise BundleManifestError('labels must be non-empty strings')
        if len(set(labels)) != len(labels):
            dup = sorted({lb for lb in labels if labels.count(lb) > 1})
            raise BundleManifestError(f'duplicate labels: {dup[:5]}')

    def manifest(self) -> dict:
        """Return the JSON manifest stored in the file."""
        return {
            'name': self.name,
            'model': self.config.to_dict(),
            'preprocessing': self.preprocessing.to_dict(),
            'labels': list(self.labels),
            'gate': self.gate.to_dict(),
            'provenance': dict(self.provenance),
            'metrics': dict(self.metrics),
        }


@dataclass(frozen=True, eq=False)
class Bundle(BundleFields):
    """
    A servable model: weights plus everything needed to use them.

    :ivar name: model id (reported with every result).
    :ivar config: architecture: the config of a registered model family.
    :ivar preprocessing: the one preprocessing the model was trained with.
    :ivar labels: class names, one per output.
    :ivar gate: exit metric and one threshold per early exit.
    :ivar state_dict: the model's weights (name -> tensor, CPU).
    :ivar provenance: how the model was made (free JSON: data, teacher, commands, dates).
    :ivar metrics: measured quality (free JSON: accuracy per exit, calibration, ...).
    :ivar checksum: SHA-256 hex of the stored content ('' until saved or loaded).
    """

    def __post_init__(self):
        super().__post_init__()
        if not any(type(self.config) is family[0] for family in FAMILIES.values()):
            raise BundleManifestError(f'config must be a registered model config, got '
                                      f'{type(self.config).__name__}')
        _check_consistency(self.config, self.preprocessing, self.labels, self.gate)

    @classmethod
    def from_model(cls, model, name: str, preprocessing: PreprocessSpec, labels,
                   gate: Optional[GateConfig] = None, provenance: Optional[Mapping] = None,
                   metrics: Optional[Mapping] = None) -> 'Bundle':
        """Bundle a trained registered model (weights copied to CPU). Default: never exit early."""
        if not any(isinstance(model, family[1]) for family in FAMILIES.values()):
            raise BundleManifestError(f'a bundle holds a registered model, got '
                                      f'{type(model).__name__}')
        if gate is None:
            gate = GateConfig('max_softmax', (1.0,) * len(model.config.exit_blocks))
        sd = {k: v.detach().to('cpu').clone().contiguous() for k, v in
              model.state_dict().items()}
        return cls(name, model.config, preprocessing, tuple(labels), gate, sd,
                   dict(provenance or {}), dict(metrics or {}))

    def build_model(self, deployable: bool = False):
        """
        Instantiate the model with these weights (strict), in eval mode.

        :param deployable: convert the global filters to the deployable form
            (:func:`gfde_perception.models.to_deployable`, no FFT needed); models without
            global filters are returned as they are.
        """
        # Built on the meta device and given the bundle's tensors: no random initialisation of
        # weights that are replaced anyway (a measurable part of a node's start-up).
        with torch.device('meta'):
            model = build_from_config(self.config)
        check_weights(model, self.state_dict)
        expected = model.state_dict()
        state = {k: v.to('cpu', expected[k].dtype, copy=True) for k, v in self.state_dict.items()}
        model.load_state_dict(state, strict=True, assign=True)
        if any(t.is_meta for t in model.buffers()):
            # A buffer that the state_dict does not hold (computed at construction): build
            # for real instead.
            model = build_from_config(self.config)
            model.load_state_dict(state, strict=True)
        model.eval()
        if deployable and isinstance(model, GFDE):
            model = to_deployable(model)
        return model


def _tensor_bytes(t: torch.Tensor) -> bytes:
    return t.detach().to('cpu').contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def compute_checksum(version: str, manifest_text: str, tensors: Mapping) -> str:
    """SHA-256 hex over version, manifest text and tensors (name order)."""
    h = hashlib.sha256()
    h.update(f'gfde-format:{version}\n'.encode())
    h.update(manifest_text.encode('utf-8'))
    for name in sorted(tensors):
        t = tensors[name]
        h.update(f'\n{name}:{str(t.dtype)}:{list(t.shape)}\n'.encode())
        h.update(_tensor_bytes(t))
    return h.hexdigest()


def write_bundle_file(path, manifest, tensors: Mapping, version=FORMAT_VERSION,
                      checksum: Optional[str] = None) -> str:
    """
    Write a bundle file from a raw manifest without validating it (tools and tests).

    :param path: output file.
    :param manifest: a dict (serialised to JSON) or the exact manifest text.
    :param tensors: name -> tensor.
    :param version: value stored as ``gfde.format``.
    :param checksum: value stored as ``gfde.sha256``; None computes the correct one.
    :return: the stored checksum.
    """
    from safetensors.torch import save_file
    text = manifest if isinstance(manifest, str) else json.dumps(manifest, sort_keys=True)
    tensors = {k: v.detach().to('cpu').contiguous() for k, v in tensors.items()}
    if checksum is None:
        checksum = compute_checksum(str(version), text, tensors)
    meta = {KEY_FORMAT: str(version), KEY_MANIFEST: text, KEY_CHECKSUM: checksum}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target and rename, so a reader never sees a half-written bundle.
    fd, tmp = tempfile.mkstemp(prefix=path.name + '.', suffix='.tmp', dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=meta)
        # mkstemp makes the file owner-only; a model file is meant to be shared (umask applies).
        os.chmod(tmp, 0o644 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return checksum


def _umask() -> int:
    """Return the process umask, read without changing it (``os.umask`` races threads)."""
    try:
        with open('/proc/self/status', encoding='ascii') as f:
            for line in f:
                if line.startswith('Umask:'):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def save_bundle(bundle: Bundle, path) -> Path:
    """Write ``bundle`` to ``path`` (a ``.gfde`` file); returns the path."""
    if not isinstance(bundle, Bundle):
        raise BundleManifestError(f'expected a Bundle, got {type(bundle).__name__}')
    _check_weights_against_config(bundle.config, bundle.state_dict)
    write_bundle_file(path, bundle.manifest(), bundle.state_dict)
    return Path(path)


def _parse_manifest(text: str) -> dict:
    try:
        data = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise BundleManifestError(f'manifest is not valid JSON: {exc}') from None
    if not isinstance(data, dict):
        raise BundleManifestError(f'manifest must be a JSON object, got {type(data).__name__}')
    missing = [k for k in MANIFEST_KEYS if k not in data]
    if missing:
        raise BundleManifestError(f'manifest lacks {missing}')
    unknown = sorted(set(data) - set(MANIFEST_KEYS))
    if unknown:
        raise BundleManifestError(f'manifest has unknown fields {unknown}')
    return data


def _manifest_objects(data: dict, version: int):
    model = data['model']
    if version >= 2 and not (isinstance(model, Mapping) and 'family' in model):
        raise BundleManifestError('invalid model config: no "family" (format 2 names it)')
    try:
        config = config_from_dict(model)
    except (ConfigError, TypeError, ValueError) as exc:
        raise BundleManifestError(f'invalid model config: {exc}') from None
    try:
        if not isinstance(data['preprocessing'], Mapping):
            raise ConfigError('not a JSON object')
        spec = PreprocessSpec.from_dict(data['preprocessing'])
    except (ConfigError, TypeError) as exc:
        raise BundleManifestError(f'invalid preprocessing: {exc}') from None
    try:
        gate = GateConfig.from_dict(data['gate'])
    except (ConfigError, TypeError) as exc:
        raise BundleManifestError(f'invalid gate: {exc}') from None
    labels = data['labels']
    if not isinstance(labels, list):
        raise BundleManifestError(f'labels must be a list, got {type(labels).__name__}')
    return config, spec, tuple(labels), gate


def _expected_tensors(model) -> dict:
    """Name -> (shape, is floating point) of every tensor in ``model``'s state_dict."""
    return {k: (tuple(v.shape), v.is_floating_point()) for k, v in model.state_dict().items()}


def _check_weights_against_config(config, state_dict: Mapping) -> None:
    # Built on the meta device: the check allocates no weights, even for GFNet-H-B; the config's
    # bounds (checked when it was parsed) keep the number of modules small.
    with torch.device('meta'):
        model = build_from_config(config)
    _compare(_expected_tensors(model), state_dict)


def check_weights(model, state_dict: Mapping) -> None:
    """Raise :class:`BundleMismatchError` unless ``state_dict`` fits ``model`` exactly."""
    _compare(_expected_tensors(model), state_dict)


def _compare(expected: dict, state_dict: Mapping) -> None:
    problems = state_dict_problems({k: shape for k, (shape, _) in expected.items()}, state_dict)
    # Weights may be stored in a narrower float (a float16 teacher); counters stay integers.
    wrong_kind = [f'{k}: {state_dict[k].dtype}' for k, (_, is_float) in expected.items()
                  if k in state_dict and state_dict[k].is_floating_point() != is_float]
    if wrong_kind:
        problems.append(f'{len(wrong_kind)} of the wrong kind of number (first: '
                        f'{wrong_kind[:5]})')
    if problems:
        raise BundleMismatchError('weights do not fit the architecture: ' + '; '.join(problems))


def read_bundle_file(path) -> tuple:
    """
    Read a bundle container and verify its size, format version and checksum.

    :return: ``(format version, manifest text, tensors, stored checksum)``.
    :raises BundleError: the subclasses :func:`load_bundle` lists, except the manifest checks.
    """
    from safetensors import safe_open
    path = Path(path)
    if not path.is_file():
        raise BundleNotFoundError(f'no bundle at {path}' + (' (a directory)' if path.is_dir()
                                                            else ''))
    size = path.stat().st_size
    if size > MAX_BUNDLE_BYTES:
        raise BundleCorruptError(f'{path} is {size / 2 ** 20:.0f} MiB, over the '
                                 f'{MAX_BUNDLE_BYTES >> 20} MiB a bundle may have')
    try:
        with safe_open(str(path), framework='pt') as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own untyped errors for bad files
        raise BundleCorruptError(f'{path} is not a readable safetensors file '
                                 f'(truncated or corrupt?): {exc}') from None
    if KEY_FORMAT not in meta:
        raise BundleCorruptError(f'{path} is a safetensors file but not a gfde bundle '
                                 f'(no {KEY_FORMAT!r} metadata)')
    version = meta[KEY_FORMAT]
    try:
        version_int = int(version)
    except ValueError:
        raise BundleVersionError(f'{path}: format version {version!r} is not an integer') \
            from None
    if version_int not in SUPPORTED_VERSIONS:
        newer = ' (written by a newer gfde_perception)' if version_int > FORMAT_VERSION else ''
        raise BundleVersionError(f'{path}: format version {version_int} is not supported'
                                 f'{newer}; this code reads {list(SUPPORTED_VERSIONS)}')
    if KEY_MANIFEST not in meta:
        raise BundleManifestError(f'{path}: no {KEY_MANIFEST!r} in the metadata')
    stored = meta.get(KEY_CHECKSUM)
    if not stored:
        raise BundleChecksumError(f'{path}: no {KEY_CHECKSUM!r} checksum stored')
    actual = compute_checksum(version, meta[KEY_MANIFEST], tensors)
    if actual != stored:
        raise BundleChecksumError(f'{path}: checksum mismatch (stored {stored[:12]}..., '
                                  f'content {actual[:12]}...): the file was modified or '
                                  f'damaged')
    return version_int, meta[KEY_MANIFEST], tensors, stored


def load_bundle(path=None) -> Bundle:
    """
    Read and validate a bundle (default: :func:`default_bundle_path`).

    :raises BundleNotFoundError: no such file.
    :raises BundleCorruptError: not a safetensors file, truncated, broken header, not a bundle.
    :raises BundleVersionError: a format version this code cannot read.
    :raises BundleChecksumError: content modified or damaged (checksum mismatch or absent).
    :raises BundleManifestError: manifest missing, not JSON, or with bad/missing/inconsistent
        fields.
    :raises BundleMismatchError: weights missing, unexpected or of the wrong shape or dtype.
    """
    path = Path(default_bundle_path() if path is None else path)
    version_int, text, tensors, stored = read_bundle_file(path)
    data = _parse_manifest(text)
    config, spec, labels, gate = _manifest_objects(data, version_int)
    _check_weights_against_config(config, tensors)
    try:
        return Bundle(data['name'], config, spec, labels, gate, tensors, data['provenance'],
                      data['metrics'], stored)
    except ConfigError as exc:
        raise BundleManifestError(f'{path}: {exc}') from None
