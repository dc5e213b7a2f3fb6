# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""The .gfde bundle: round trip, and every kind of bad file refused with its own error."""

import json

from gfde_perception.bundle import (
    Bundle, default_bundle_path, FORMAT_VERSION, load_bundle, save_bundle, write_bundle_file)
from gfde_perception.errors import (
    BundleChecksumError, BundleCorruptError, BundleError, BundleManifestError,
    BundleMismatchError, BundleNotFoundError, BundleVersionError)
from gfde_perception.gating import GateConfig
from gfde_perception.models import build_model
from gfde_perception.preprocessing import PreprocessSpec
import pytest
import torch


LABELS = tuple(f'class-{i}' for i in range(10))


@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0)
    return build_model('gfnet-edge-28', depth=3, exit_blocks=(1, 2)).eval()


@pytest.fixture(scope='module')
def bundle(model):
    spec = PreprocessSpec((28, 28), 'gray', (0.286,), (0.353,), 'area')
    return Bundle.from_model(model, 'edge-test', spec, LABELS, GateConfig('entropy', (0.4, 0.6)),
                             provenance={'data': 'synthetic', 'seed': 0},
                             metrics={'top1_per_exit': [0.5, 0.6, 0.7]})


@pytest.fixture
def saved(bundle, tmp_path):
    path = tmp_path / 'model.gfde'
    save_bundle(bundle, path)
    return path


def test_round_trip(bundle, model, saved):
    loaded = load_bundle(saved)
    assert loaded.name == 'edge-test'
    assert loaded.config == bundle.config
    assert loaded.preprocessing == bundle.preprocessing
    assert loaded.labels == LABELS
    assert loaded.gate == bundle.gate
    assert loaded.provenance == {'data': 'synthetic', 'seed': 0}
    assert loaded.metrics == {'top1_per_exit': [0.5, 0.6, 0.7]}
    assert len(loaded.checksum) == 64
    x = torch.randn(2, 1, 28, 28)
    rebuilt = loaded.build_model()
    assert not rebuilt.training
    expected = model(x)
    got = rebuilt(x)
    torch.testing.assert_close(got.logits, expected.logits, rtol=0, atol=0)
    for a, b in zip(got.exit_logits, expected.exit_logits):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    deployed = loaded.build_model(deployable=True)
    torch.testing.assert_close(deployed(x).logits, expected.logits, rtol=0, atol=1e-5)


def test_file_is_plain_safetensors_without_pickle(saved):
    from safetensors import safe_open
    with safe_open(str(saved), framework='pt') as f:
        meta = f.metadata()
        assert meta['gfde.format'] == str(FORMAT_VERSION)
        assert json.loads(meta['gfde.manifest'])['labels'] == list(LABELS)
        assert 'backbone.blocks.0.filter.complex_weight' in f.keys()
    data = saved.read_bytes()
    # safetensors layout: 8-byte little-endian header length, then a JSON header (a pickle
    # would start with the protocol opcode 0x80 instead).
    header_len = int.from_bytes(data[:8], 'little')
    assert json.loads(data[8:8 + header_len])['__metadata__']['gfde.format'] == str(FORMAT_VERSION)


def test_default_bundle_path():
    path = default_bundle_path()
    assert path.name == 'default.gfde' and path.parent.name == 'data'
    assert path.parent.parent.name == 'gfde_perception'


def _manifest(bundle, **changes):
    data = bundle.manifest()
    data.update(changes)
    return data


def _rewrite(path, bundle, manifest=None, tensors=None, **kwargs):
    write_bundle_file(path, manifest if manifest is not None else bundle.manifest(),
                      tensors if tensors is not None else bundle.state_dict, **kwargs)
    return path


def test_missing_file(tmp_path):
    with pytest.raises(BundleNotFoundError, match='no bundle'):
        load_bundle(tmp_path / 'absent.gfde')
    with pytest.raises(BundleNotFoundError, match='directory'):
        load_bundle(tmp_path)


def test_truncated_file(saved):
    data = saved.read_bytes()
    saved.write_bytes(data[:len(data) // 2])
    with pytest.raises(BundleCorruptError, match='truncated or corrupt'):
        load_bundle(saved)


@pytest.mark.parametrize('content', [b'', b'hello, not a model', b'\x00' * 64,
                                     b'\x08\x00\x00\x00\x00\x00\x00\x00{broken}'])
def test_not_safetensors(tmp_path, content):
    path = tmp_path / 'junk.gfde'
    path.write_bytes(content)
    with pytest.raises(BundleCorruptError, match='not a readable safetensors'):
        load_bundle(path)


def test_safetensors_but_not_a_bundle(tmp_path):
    from safetensors.torch import save_file
    path = tmp_path / 'plain.safetensors'
    save_file({'w': torch.zeros(2)}, str(path))
    with pytest.raises(BundleCorruptError, match='not a gfde bundle'):
        load_bundle(path)


@pytest.mark.parametrize('version, message', [(FORMAT_VERSION + 1, 'newer'),
                                              (0, 'not supported'), ('v1', 'not an integer')])
def test_unsupported_version(bundle, tmp_path, version, message):
    path = _rewrite(tmp_path / 'v.gfde', bundle, version=version)
    with pytest.raises(BundleVersionError, match=message):
        load_bundle(path)


def test_tampered_tensor_bytes(saved):
    data = bytearray(saved.read_bytes())
    data[-3] ^= 0x40  # one bit of the last tensor
    saved.write_bytes(bytes(data))
    with pytest.raises(BundleChecksumError, match='modified or damaged'):
        load_bundle(saved)


def test_tampered_manifest_keeps_old_checksum(bundle, saved, tmp_path):
    stored = load_bundle(saved).checksum
    path = _rewrite(tmp_path / 't.gfde', bundle, _manifest(bundle, name='someone-else'),
                    checksum=stored)
    with pytest.raises(BundleChecksumError, match='checksum mismatch'):
        load_bundle(path)


def test_tampered_weights_keep_old_checksum(bundle, saved, tmp_path):
    stored = load_bundle(saved).checksum
    tensors = dict(bundle.state_dict)
    tensors['backbone.head.bias'] = tensors['backbone.head.bias'] + 1.0
    path = _rewrite(tmp_path / 't.gfde', bundle, tensors=tensors, checksum=stored)
    with pytest.raises(BundleChecksumError):
        load_bundle(path)


def test_missing_checksum(bundle, tmp_path):
    path = _rewrite(tmp_path / 'c.gfde', bundle, checksum='')
    with pytest.raises(BundleChecksumError, match='no'):
        load_bundle(path)


# Each bad manifest is written with a correct checksum, so only the manifest check can refuse.
BAD_MANIFESTS = [
    ('not json', lambda b: '{"name": ', 'not valid JSON'),
    ('not an object', lambda b: '[1, 2]', 'JSON object'),
    ('missing labels', lambda b: {k: v for k, v in b.manifest().items() if k != 'labels'},
     'lacks'),
    ('unknown field', lambda b: _manifest(b, extra=1), 'unknown fields'),
    ('labels count', lambda b: _manifest(b, labels=list(LABELS[:9])), '9 labels'),
    ('duplicate labels', lambda b: _manifest(b, labels=['a'] * 10), 'duplicate'),
    ('labels not a list', lambda b: _manifest(b, labels='abc'), 'labels must be a list'),
    ('label not a string', lambda b: _manifest(b, labels=list(LABELS[:9]) + [9]),
     'non-empty strings'),
    ('thresholds count', lambda b: _manifest(b, gate={'metric': 'entropy',
                                                      'thresholds': [0.5]}), '1 gate thresholds'),
    ('bad metric', lambda b: _manifest(b, gate={'metric': 'vibes', 'thresholds': [0.5, 0.6]}),
     'invalid gate'),
    ('preprocessing size', lambda b: _manifest(b, preprocessing=dict(
        b.preprocessing.to_dict(), input_size=[32, 32])), 'input_size'),
    ('preprocessing channels', lambda b: _manifest(b, preprocessing=dict(
        b.preprocessing.to_dict(), channel_order='rgb', mean=[0.5] * 3, std=[0.5] * 3)),
     'in_chans'),
    ('preprocessing std', lambda b: _manifest(b, preprocessing=dict(
        b.preprocessing.to_dict(), std=[0.0])), 'invalid preprocessing'),
    ('preprocessing unknown key', lambda b: _manifest(b, preprocessing=dict(
        b.preprocessing.to_dict(), gamma=2.2)), 'invalid preprocessing'),
    ('model config', lambda b: _manifest(b, model=dict(b.config.to_dict(), exit_blocks=[2, 1])),
     'invalid model config'),
    ('backbone config', lambda b: _manifest(b, model=dict(
        b.config.to_dict(), backbone={'img_size': 'big'})), 'invalid model config'),
    ('provenance not object', lambda b: _manifest(b, provenance=[1]), 'provenance'),
    ('empty name', lambda b: _manifest(b, name=''), 'name'),
]


@pytest.mark.parametrize('case, make, message', BAD_MANIFESTS, ids=[c[0] for c in BAD_MANIFESTS])
def test_invalid_manifest(bundle, tmp_path, case, make, message):
    path = _rewrite(tmp_path / 'm.gfde', bundle, make(bundle))
    with pytest.raises(BundleManifestError, match=message):
        load_bundle(path)


@pytest.mark.parametrize('edit, message', [
    (lambda sd: sd.pop('backbone.norm.weight'), 'missing .*backbone.norm.weight'),
    (lambda sd: sd.__setitem__('backbone.extra', torch.zeros(1)), 'unexpected .*backbone.extra'),
    (lambda sd: sd.__setitem__('backbone.head.weight', torch.zeros(10, 47)),
     r'wrong shape .*backbone.head.weight: \(10, 47\) instead of \(10, 48\)'),
    (lambda sd: sd.__setitem__('backbone.head.bias', torch.zeros(10, dtype=torch.int32)),
     'wrong kind of number'),
])
def test_weights_do_not_fit(bundle, tmp_path, edit, message):
    tensors = dict(bundle.state_dict)
    edit(tensors)
    path = _rewrite(tmp_path / 'w.gfde', bundle, tensors=tensors)
    with pytest.raises(BundleMismatchError, match=message):
        load_bundle(path)


def test_weights_of_another_architecture(bundle, tmp_path):
    other = build_model('gfnet-edge-28', depth=4, exit_blocks=(1, 2))
    path = _rewrite(tmp_path / 'a.gfde', bundle, tensors=other.state_dict())
    with pytest.raises(BundleMismatchError, match='unexpected .*blocks.3'):
        load_bundle(path)


def test_save_refuses_inconsistent_bundles(bundle, tmp_path):
    with pytest.raises(BundleManifestError, match='labels'):
        Bundle(bundle.name, bundle.config, bundle.preprocessing, LABELS[:3], bundle.gate,
               bundle.state_dict)
    broken = Bundle(bundle.name, bundle.config, bundle.preprocessing, LABELS, bundle.gate,
                    {k: v for k, v in bundle.state_dict.items() if 'exits.0' not in k})
    with pytest.raises(BundleMismatchError, match='exits.0'):
        save_bundle(broken, tmp_path / 'x.gfde')
    assert not (tmp_path / 'x.gfde').exists()


def test_all_errors_are_bundle_errors():
    for cls in (BundleNotFoundError, BundleCorruptError, BundleVersionError, BundleChecksumError,
                BundleManifestError, BundleMismatchError):
        assert issubclass(cls, BundleError)


def _trained_stats(model):
    """Give every BatchNorm non-trivial statistics, as training would."""
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, model.config.in_chans, model.config.img_size,
                              model.config.img_size) * 1.5 + 0.3)
    return model.eval()


@pytest.mark.parametrize('name, overrides', [
    ('gfnet-c-28', {'depths': (1, 1), 'exit_blocks': (1,)}),
    ('cnn-28', {}),
    ('mobilenetv2-28', {}),
])
def test_every_family_round_trips(tmp_path, name, overrides):
    torch.manual_seed(1)
    model = _trained_stats(build_model(name, **overrides))
    spec = PreprocessSpec((28, 28), 'gray', (0.5,), (0.5,))
    gate = GateConfig('max_softmax', (0.9,) * (model.num_exits - 1))
    save_bundle(Bundle.from_model(model, name, spec, LABELS, gate), tmp_path / 'm.gfde')
    loaded = load_bundle(tmp_path / 'm.gfde')
    assert loaded.config == model.config
    assert json.loads(json.dumps(loaded.manifest()))['model']['family'] == model.config.family
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        expected = model(x).logits
        torch.testing.assert_close(loaded.build_model()(x).logits, expected, rtol=0, atol=0)
        # The deployable form (norms folded into the filters for GFNet-C) gives the same logits.
        torch.testing.assert_close(loaded.build_model(deployable=True)(x).logits, expected,
                                   rtol=1e-4, atol=1e-5)


def test_float16_weights_load_into_the_float32_model(tmp_path, model, bundle):
    half = {k: v.half() if v.is_floating_point() else v for k, v in bundle.state_dict.items()}
    _rewrite(tmp_path / 'h.gfde', bundle, tensors=half)
    rebuilt = load_bundle(tmp_path / 'h.gfde').build_model()
    assert next(rebuilt.parameters()).dtype == torch.float32
    x = torch.randn(2, 1, 28, 28)
    assert (rebuilt(x).logits - model(x).logits).abs().max() < 0.05


@pytest.mark.parametrize('field, value', [
    ('depth', 10 ** 7), ('embed_dim', 10 ** 9), ('img_size', 10 ** 6), ('in_chans', 10 ** 5)])
def test_crafted_manifest_is_refused_before_anything_is_built(bundle, tmp_path, field, value):
    # A manifest with a valid checksum that declares an absurd architecture: refused from the
    # config's bounds alone, long before the (bounded, meta-device) shape check builds anything.
    manifest = bundle.manifest()
    manifest['model']['backbone'][field] = value
    path = _rewrite(tmp_path / 'crafted.gfde', bundle, manifest)
    import time
    t0 = time.perf_counter()
    with pytest.raises(BundleManifestError, match=field):
        load_bundle(path)
    # Behaviour, not speed: refused by validation, so no model of that size was ever built.
    assert time.perf_counter() - t0 < 30


def test_crafted_gfnet_c_manifest_is_refused(tmp_path):
    model = build_model('gfnet-c-28', depths=(1, 1), exit_blocks=(1,)).eval()
    spec = PreprocessSpec((28, 28), 'gray', (0.5,), (0.5,))
    b = Bundle.from_model(model, 'c', spec, LABELS, GateConfig('max_softmax', (0.9,)))
    for field, value in (('depths', [10 ** 7, 1]), ('embed_dims', [10 ** 8, 128]),
                         ('stem_channels', [8] * 50)):
        manifest = b.manifest()
        manifest['model']['backbone'][field] = value
        path = _rewrite(tmp_path / f'{field}.gfde', b, manifest)
        with pytest.raises(BundleManifestError, match='stem_channels|embed_dims|depths'):
            load_bundle(path)


def test_unknown_family_and_format_2_without_family(bundle, tmp_path):
    manifest = bundle.manifest()
    manifest['model']['family'] = 'resnet-9000'
    with pytest.raises(BundleManifestError, match='unknown model family'):
        load_bundle(_rewrite(tmp_path / 'f.gfde', bundle, manifest))
    manifest = bundle.manifest()
    del manifest['model']['family']
    with pytest.raises(BundleManifestError, match='family'):
        load_bundle(_rewrite(tmp_path / 'g.gfde', bundle, manifest))


def test_format_1_bundles_still_load(bundle, tmp_path):
    # Format 1 had no family: every model was a GFDE.
    manifest = bundle.manifest()
    del manifest['model']['family']
    loaded = load_bundle(_rewrite(tmp_path / 'v1.gfde', bundle, manifest, version=1))
    assert loaded.config == bundle.config


def test_oversized_file_is_refused_unread(saved, monkeypatch):
    import gfde_perception.bundle as bundle_module
    monkeypatch.setattr(bundle_module, 'MAX_BUNDLE_BYTES', saved.stat().st_size - 1)
    with pytest.raises(BundleCorruptError, match='over the'):
        load_bundle(saved)


@pytest.mark.parametrize('umask', [0o022, 0o077])
def test_saved_bundle_mode_follows_the_umask(bundle, tmp_path, umask):
    # Like every other output: 0644 under the usual umask, not owner-only as mkstemp creates.
    import os
    old = os.umask(umask)
    try:
        save_bundle(bundle, tmp_path / 'mode.gfde')
    finally:
        os.umask(old)
    assert (tmp_path / 'mode.gfde').stat().st_mode & 0o777 == 0o644 & ~umask
