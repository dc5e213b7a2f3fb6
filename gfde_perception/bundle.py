# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
The model bundle (``.gfde``): one file that carries everything needed to serve a model.

A bundle is a single safetensors file. Its tensors are the GFDE ``state_dict`` (no pickle is
ever written or read); its ``__metadata__`` holds three strings:

* ``gfde.format``: the format version (an integer, see :data:`FORMAT_VERSION`);
* ``gfde.manifest``: JSON with ``name``, ``model`` (:class:`GFDEConfig`), ``preprocessing``
  (:class:`PreprocessSpec`), ``labels``, ``gate`` (:class:`GateConfig`), ``provenance`` and
  ``metrics`` (free JSON objects);
* ``gfde.sha256``: SHA-256 over the version, the manifest text and every tensor (name, dtype,
  shape, bytes, in name order).

:func:`load_bundle` validates all of it and raises one named :class:`BundleError` subclass per
problem, with a message that says what is wrong.
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
from gfde_perception.models.gfde import GFDE, GFDEConfig
from gfde_perception.models.registry import state_dict_problems
from gfde_perception.preprocessing import PreprocessSpec
import torch


FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)
KEY_FORMAT = 'gfde.format'
KEY_MANIFEST = 'gfde.manifest'
KEY_CHECKSUM = 'gfde.sha256'
MANIFEST_KEYS = ('name', 'model', 'preprocessing', 'labels', 'gate', 'provenance', 'metrics')
SUFFIX = '.gfde'


def default_bundle_path() -> Path:
    """Path of the model embedded in the package (``gfde_perception/data/default.gfde``)."""
    return Path(__file__).resolve().parent / 'data' / 'default.gfde'


def _check_consistency(config: GFDEConfig, spec: PreprocessSpec, labels: tuple,
                       gate: GateConfig) -> None:
    bb = config.backbone
    if tuple(spec.input_size) != (bb.img_size, bb.img_size):
        raise BundleManifestError(
            f'preprocessing input_size {spec.input_size} does not match the model input '
            f'{bb.img_size}x{bb.img_size}')
    if spec.channels != bb.in_chans:
        raise BundleManifestError(
            f'preprocessing gives {spec.channels} channel(s) ({spec.channel_order!r}) but the '
            f'model takes in_chans={bb.in_chans}')
    if len(labels) != bb.num_classes:
        raise BundleManifestError(
            f'{len(labels)} labels for a model with num_classes={bb.num_classes}')
    if not all(isinstance(lb, str) and lb.strip() for lb in labels):
        raise BundleManifestError('labels must be non-empty strings')
    if len(set(labels)) != len(labels):
        dup = sorted({lb for lb in labels if labels.count(lb) > 1})
        raise BundleManifestError(f'duplicate labels: {dup[:5]}')
    if len(gate.thresholds) != len(config.exit_blocks):
        raise BundleManifestError(
            f'{len(gate.thresholds)} gate thresholds for {len(config.exit_blocks)} early exits '
            f'(exit_blocks={list(config.exit_blocks)})')


@dataclass(frozen=True, eq=False)
class Bundle:
    """
    A servable model: weights plus everything needed to use them.

    :ivar name: model id (reported with every result).
    :ivar config: architecture.
    :ivar preprocessing: the one preprocessing the model was trained with.
    :ivar labels: class names, one per output.
    :ivar gate: exit metric and one threshold per early exit.
    :ivar state_dict: GFDE weights (name -> tensor, CPU).
    :ivar provenance: how the model was made (free JSON: data, teacher, commands, dates).
    :ivar metrics: measured quality (free JSON: accuracy per exit, calibration, ...).
    :ivar checksum: SHA-256 hex of the stored content ('' until saved or loaded).
    """

    name: str
    config: GFDEConfig
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
        for attr, kind in (('config', GFDEConfig), ('preprocessing', PreprocessSpec),
                           ('gate', GateConfig)):
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
        _check_consistency(self.config, self.preprocessing, self.labels, self.gate)

    @classmethod
    def from_model(cls, model: GFDE, name: str, preprocessing: PreprocessSpec, labels,
                   gate: Optional[GateConfig] = None, provenance: Optional[Mapping] = None,
                   metrics: Optional[Mapping] = None) -> 'Bundle':
        """Bundle a trained GFDE (weights copied to CPU). Default gate: never exit early."""
        if not isinstance(model, GFDE):
            raise BundleManifestError(f'a bundle holds a GFDE, got {type(model).__name__}')
        if gate is None:
            gate = GateConfig('max_softmax', (1.0,) * len(model.config.exit_blocks))
        sd = {k: v.detach().to('cpu').clone().contiguous() for k, v in
              model.state_dict().items()}
        return cls(name, model.config, preprocessing, tuple(labels), gate, sd,
                   dict(provenance or {}), dict(metrics or {}))

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

    def build_model(self, deployable: bool = False) -> GFDE:
        """
        Instantiate the GFDE with these weights (strict), in eval mode.

        :param deployable: convert the global filters to the deployable form
            (:func:`gfde_perception.models.to_deployable`, no FFT needed).
        """
        model = GFDE(self.config)
        check_weights(model, self.state_dict)
        model.load_state_dict(dict(self.state_dict), strict=True)
        model.eval()
        if deployable:
            from gfde_perception.models.deploy import to_deployable
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
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return checksum


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


def _manifest_objects(data: dict):
    try:
        config = GFDEConfig.from_dict(data['model'])
    except (ConfigError, TypeError) as exc:
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


def _expected_shapes(config: GFDEConfig) -> dict:
    # Built on the meta device: the check allocates no weights, even for GFNet-H-B.
    with torch.device('meta'):
        model = GFDE(config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _check_weights_against_config(config: GFDEConfig, state_dict: Mapping) -> None:
    expected = _expected_shapes(config)
    _compare(expected, state_dict)


def check_weights(model: GFDE, state_dict: Mapping) -> None:
    """Raise :class:`BundleMismatchError` unless ``state_dict`` fits ``model`` exactly."""
    _compare({k: tuple(v.shape) for k, v in model.state_dict().items()}, state_dict)


def _compare(expected: dict, state_dict: Mapping) -> None:
    problems = state_dict_problems(expected, state_dict)
    not_float = [f'{k}: {state_dict[k].dtype}' for k in expected
                 if k in state_dict and not state_dict[k].is_floating_point()]
    if not_float:
        problems.append(f'{len(not_float)} not floating point (first: {not_float[:5]})')
    if problems:
        raise BundleMismatchError('weights do not fit the architecture: ' + '; '.join(problems))


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
    from safetensors import safe_open
    path = Path(default_bundle_path() if path is None else path)
    if not path.is_file():
        raise BundleNotFoundError(f'no bundle at {path}' + (' (a directory)' if path.is_dir()
                                                            else ''))
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
    data = _parse_manifest(meta[KEY_MANIFEST])
    config, spec, labels, gate = _manifest_objects(data)
    _check_weights_against_config(config, tensors)
    try:
        return Bundle(data['name'], config, spec, labels, gate, tensors, data['provenance'],
                      data['metrics'], stored)
    except ConfigError as exc:
        raise BundleManifestError(f'{path}: {exc}') from None
