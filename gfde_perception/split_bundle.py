# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
The split bundle: one ``.gfde`` file that carries both halves of a split model.

The same container as :mod:`gfde_perception.bundle` (safetensors tensors, a JSON manifest and a
SHA-256 over both in ``__metadata__``, written by :func:`~gfde_perception.bundle.
write_bundle_file`; never pickle), with a :class:`~gfde_perception.models.split.SplitConfig`
(``family: 'gfde-split'``) as the model. The manifest holds the split point, the bottleneck
(channels, bits, stride) and its quantisation (per-channel scale and zero point, also stored as
the quantiser's tensors), the robot's preprocessing, labels and gate (one threshold per robot
exit). Each side builds only its parts (:meth:`SplitBundle.build_robot`,
:meth:`SplitBundle.build_server`).

Once the generic bundle holds any registered family, a split bundle is a plain bundle whose
config is a SplitConfig (this needs the registry to hold a family whose config nests other
families' configs).
"""

from dataclasses import dataclass
import json
from pathlib import Path
from typing import Mapping, Optional

from gfde_perception.bundle import (
    BundleFields, check_weights, FORMAT_VERSION, MANIFEST_KEYS, read_bundle_file,
    write_bundle_file)
from gfde_perception.errors import BundleManifestError, BundleMismatchError, ConfigError
from gfde_perception.gating import GateConfig
from gfde_perception.models.split import (
    FAMILY, probe_features, ROBOT_PARTS, server_parts, SplitConfig, SplitModel)
from gfde_perception.preprocessing import PreprocessSpec
import torch


def default_split_bundle_path() -> Path:
    """Path of the split model embedded in the package (``gfde_perception/data/split.gfde``)."""
    return Path(__file__).resolve().parent / 'data' / 'split.gfde'


@dataclass(frozen=True, eq=False)
class SplitBundle(BundleFields):
    """
    A servable split model: both halves' weights and everything needed to use them.

    Fields as :class:`gfde_perception.bundle.Bundle`, with ``config`` a :class:`SplitConfig`
    and ``gate`` holding one threshold per robot exit (``config.split`` of them).
    """

    config: SplitConfig

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.config, SplitConfig):
            raise BundleManifestError(f'config must be a SplitConfig, got '
                                      f'{type(self.config).__name__}')
        spec, cfg = self.preprocessing, self.config
        if (spec.channels,) + tuple(spec.input_size) != cfg.input_shape:
            raise BundleManifestError(
                f'preprocessing gives {(spec.channels,) + tuple(spec.input_size)} but the '
                f'split model takes {cfg.input_shape}')
        if len(self.gate.thresholds) != cfg.split:
            raise BundleManifestError(f'{len(self.gate.thresholds)} gate thresholds for '
                                      f'{cfg.split} robot exits')
        if not self.labels:
            raise BundleManifestError('a split bundle needs labels')

    @property
    def model_id(self) -> str:
        """Name and the first 12 hex digits of the checksum (what packets carry)."""
        return f'{self.name}@{self.checksum[:12]}'

    @classmethod
    def from_model(cls, model: SplitModel, name: str, preprocessing: PreprocessSpec, labels,
                   gate: GateConfig, provenance: Optional[Mapping] = None,
                   metrics: Optional[Mapping] = None, half_parts: tuple = ()) -> 'SplitBundle':
        """
        Bundle a whole trained split model (weights copied to CPU).

        :param half_parts: parts stored in float16 (e.g. a teacher tail that was trained and
            saved in float16 anyway); they are cast back when a side is built.
        """
        if not isinstance(model, SplitModel) or set(model.parts) != set(
                SplitModel.all_parts(model.config)):
            raise BundleManifestError('a split bundle holds a whole SplitModel')
        sd = {}
        for key, value in model.state_dict().items():
            value = value.detach().to('cpu').clone().contiguous()
            if key.split('.', 1)[0] in half_parts and value.is_floating_point():
                value = value.half()
            sd[key] = value
        return cls(name, model.config, preprocessing, tuple(labels), gate, sd,
                   dict(provenance or {}), dict(metrics or {}))

    def quantisation(self) -> dict:
        """Bits, per-channel scale and zero point of the bottleneck (JSON-ready)."""
        scale, zero_point = self._quantiser().params()
        return {'bits': self.config.bottleneck.bits, 'scale': scale.tolist(),
                'zero_point': [int(z) for z in zero_point.tolist()]}

    def _quantiser(self):
        model = SplitModel(self.config, parts=('quantiser',))
        model.load_state_dict(_subset(self.state_dict, ('quantiser',)), strict=True)
        return model.quantiser.eval()

    def manifest(self) -> dict:
        """Return the JSON manifest stored in the file (the model's with its quantisation)."""
        manifest = super().manifest()
        manifest['model']['quantisation'] = self.quantisation()
        return manifest

    def build(self, parts: Optional[tuple] = None) -> SplitModel:
        """Instantiate ``parts`` (default all) with these weights (strict), in eval mode."""
        model = SplitModel(self.config, parts)
        subset = _subset(self.state_dict, model.parts)
        check_weights(model, subset)
        model.load_state_dict(subset, strict=True)  # copy_ casts float16 parts back
        return model.eval()

    def build_robot(self) -> SplitModel:
        """Build the robot side: head model, encoder, quantiser."""
        model = self.build(ROBOT_PARTS)
        found = probe_features(model.head, self.config.input_shape, self.config.split)
        if found != self.config.head_features:
            raise BundleMismatchError(f'the head gives {found} at the split, the bundle says '
                                      f'{self.config.head_features}')
        return model

    def build_server(self) -> SplitModel:
        """Build the server side: decoder and tail."""
        return self.build(server_parts(self.config))


def _subset(state_dict: Mapping, parts) -> dict:
    return {k: v for k, v in state_dict.items() if k.split('.', 1)[0] in parts}


def save_split_bundle(bundle: SplitBundle, path) -> Path:
    """Write ``bundle`` to ``path``; returns the path."""
    if not isinstance(bundle, SplitBundle):
        raise BundleManifestError(f'expected a SplitBundle, got {type(bundle).__name__}')
    _check_against_config(bundle.config, bundle.state_dict)
    write_bundle_file(path, bundle.manifest(), bundle.state_dict, FORMAT_VERSION)
    return Path(path)


def _check_against_config(config: SplitConfig, state_dict: Mapping) -> None:
    with torch.device('meta'):  # no weights allocated for the check
        model = SplitModel(config)
    check_weights(model, state_dict)


def load_split_bundle(path) -> SplitBundle:
    """Read and validate a split bundle; raises the named :class:`BundleError` subclasses."""
    _version, text, tensors, checksum = read_bundle_file(path)
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise BundleManifestError(f'{path}: manifest is not JSON: {exc}') from None
    if not isinstance(data, dict) or sorted(data) != sorted(MANIFEST_KEYS):
        raise BundleManifestError(f'{path}: manifest must hold exactly {list(MANIFEST_KEYS)}')
    model = dict(data['model']) if isinstance(data['model'], Mapping) else {}
    if model.get('family') != FAMILY:
        raise BundleManifestError(f'{path}: not a split bundle (model family '
                                  f"{model.get('family')!r})")
    model.pop('quantisation', None)
    try:
        config = SplitConfig.from_dict(model)
        spec = PreprocessSpec.from_dict(data['preprocessing'])
        gate = GateConfig.from_dict(data['gate'])
    except (ConfigError, TypeError) as exc:
        raise BundleManifestError(f'{path}: {exc}') from None
    _check_against_config(config, tensors)
    return SplitBundle(data['name'], config, spec, tuple(data['labels']), gate, tensors,
                       data['provenance'], data['metrics'], checksum)
