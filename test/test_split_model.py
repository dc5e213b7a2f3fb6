# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""Split model: config, layout adapter, quantiser, wire codec, bundle and the two engines."""

import dataclasses
import json
import re

from gfde_perception.bundle import load_bundle, read_bundle_file, write_bundle_file
from gfde_perception.errors import (
    BundleChecksumError, BundleManifestError, ConfigError, FeatureError)
from gfde_perception.feature_codec import (
    bytes_to_codes, codes_to_bytes, FeaturePacket, packed_size)
from gfde_perception.models.split import (
    BottleneckConfig, dequantise, Encoder, FeatureShape, from_nchw, Quantiser, SplitConfig,
    to_nchw)
from gfde_perception.preprocessing import input_pixels, preprocess, PreprocessSpec
from gfde_perception.runtime.split import SplitRobot, SplitServer
from gfde_perception.split_bundle import load_split_bundle
import numpy as np
import pytest
from runtime_fixtures import make_tiny_bundle, random_images
from split_fixtures import make_tiny_split_bundle, tiny_split_config
import torch


# -- layout adapter -------------------------------------------------------------------------

def test_tokens_and_maps_round_trip_through_the_adapter():
    tokens = torch.randn(2, 12, 5)  # (B, N, C) on a 3x4 grid
    shape = FeatureShape('tokens', 5, 3, 4)
    maps = to_nchw(tokens, shape)
    assert maps.shape == (2, 5, 3, 4)
    # Token n sits at row n // 4, column n % 4.
    assert torch.equal(maps[:, :, 1, 2], tokens[:, 1 * 4 + 2, :])
    assert torch.equal(from_nchw(maps, shape), tokens)
    nchw = FeatureShape('nchw', 5, 3, 4)
    assert to_nchw(maps, nchw) is maps and from_nchw(maps, nchw) is maps


def test_feature_shape_of_tokens_and_maps():
    assert FeatureShape.of(torch.zeros(1, 49, 96)) == FeatureShape('tokens', 96, 7, 7)
    assert FeatureShape.of(torch.zeros(1, 40, 8, 6)) == FeatureShape('nchw', 40, 8, 6)
    with pytest.raises(ConfigError, match='square'):
        FeatureShape.of(torch.zeros(1, 50, 8))


def test_encoder_takes_either_layout_and_strides_with_ceiling():
    cfg = BottleneckConfig(channels=3, bits=8, stride=2, hidden=4)
    tokens = Encoder(FeatureShape('tokens', 6, 5, 5), cfg)(torch.randn(2, 25, 6))
    maps = Encoder(FeatureShape('nchw', 6, 5, 5), cfg)(torch.randn(2, 6, 5, 5))
    assert tokens.shape == maps.shape == (2, 3, 3, 3)
    assert cfg.code_grid(FeatureShape('nchw', 6, 5, 5)) == (3, 3)


# -- configuration --------------------------------------------------------------------------

def test_split_config_round_trips_and_refuses_bad_values(tmp_path):
    student = make_tiny_bundle(tmp_path)
    config = tiny_split_config(student, 'teacher')
    data = json.loads(json.dumps(config.to_dict()))
    assert data['family'] == 'gfde-split'
    assert SplitConfig.from_dict(data) == config
    assert config.tail_features.layout == 'nchw' and config.head_features.layout == 'tokens'

    for key, value, match in (('split', 0, 'split'), ('split', 4, 'split'),
                              ('tail', 'cloud', 'tail'), ('teacher_split', 7, 'teacher_split'),
                              ('input_shape', [3, 16], 'input_shape'),
                              ('family', 'gfde', 'family'), ('extra', 1, 'unknown')):
        bad = dict(data, **{key: value})
        with pytest.raises(ConfigError, match=match):
            SplitConfig.from_dict(bad)
    for bottleneck, match in (({'bits': 0}, 'bits'), ({'bits': 9}, 'bits'),
                              ({'channels': 16}, 'fewer channels'), ({'stride': 5}, 'stride'),
                              ({'hidden': 0}, 'hidden'), ({'width': 3}, 'unknown')):
        bad = dict(data, bottleneck=dict(data['bottleneck'], **bottleneck))
        with pytest.raises(ConfigError, match=match):
            SplitConfig.from_dict(bad)
    with pytest.raises(ConfigError, match='teacher'):
        SplitConfig.from_dict(dict(data, teacher=None))
    student_tail = tiny_split_config(student, 'student').to_dict()
    with pytest.raises(ConfigError, match='teacher tail only'):
        SplitConfig.from_dict(dict(student_tail, teacher_split=2))


# -- quantisation and the wire format -------------------------------------------------------

@pytest.mark.parametrize('bits', [1, 3, 4, 8])
def test_quantiser_error_is_at_most_half_a_step_inside_the_range(bits):
    q = Quantiser(channels=2, bits=bits)
    z = torch.stack([torch.linspace(-1.0, 3.0, 50), torch.linspace(0.5, 2.0, 50)])
    z = z.view(1, 2, 5, 10)
    q.train()
    q(z)  # the first batch sets the range
    q.eval()
    codes = q.quantise(z)
    assert codes.dtype == torch.uint8 and int(codes.max()) <= 2 ** bits - 1
    scale, zero_point = q.params()
    back = dequantise(codes, scale, zero_point)
    step = scale.view(1, 2, 1, 1)
    assert torch.all((back - z).abs() <= step / 2 + 1e-6)
    # The fake quantiser gives the same values forward and lets the gradient through.
    z.requires_grad_(True)
    out = q(z)
    assert torch.allclose(out, back)
    out.sum().backward()
    assert torch.equal(z.grad, torch.ones_like(z))


@pytest.mark.parametrize('bits', range(1, 9))
def test_codes_pack_densely_and_unpack_exactly(bits):
    rng = np.random.default_rng(bits)
    codes = rng.integers(0, 2 ** bits, (3, 5, 7)).astype(np.uint8)
    data = codes_to_bytes(codes, bits)
    assert len(data) == packed_size(codes.size, bits) == (codes.size * bits + 7) // 8
    assert np.array_equal(bytes_to_codes(data, bits, codes.size).reshape(codes.shape), codes)


def test_bad_codes_and_packets_raise_feature_error():
    with pytest.raises(FeatureError, match='does not fit'):
        codes_to_bytes(np.array([16], np.uint8), 4)
    with pytest.raises(FeatureError, match='bytes'):
        bytes_to_codes(b'\x00' * 3, 4, 8)
    good = FeaturePacket.from_codes(np.zeros((2, 2, 2), np.uint8), 4, (0.1, 0.2), (3, 0),
                                    'm@1', 1)
    assert good.nbytes == 4
    fields = {'model_id': 'm@1', 'split': 1, 'shape': (2, 2, 2), 'bits': 4, 'scale': (0.1, 0.2),
              'zero_point': (3, 0), 'data': bytes(4)}
    for change, match in (({'bits': 9}, 'bits'), ({'shape': (2, 2)}, 'shape'),
                          ({'scale': (0.1,)}, 'scales'), ({'scale': (0.1, -1.0)}, 'scale'),
                          ({'scale': (0.1, float('nan'))}, 'scale'),
                          ({'zero_point': (16, 0)}, 'zero points'), ({'data': bytes(5)}, 'bytes'),
                          ({'model_id': ''}, 'model_id'), ({'shape': (0, 2, 2)}, 'shape')):
        with pytest.raises(FeatureError, match=match):
            FeaturePacket(**dict(fields, **change))


# -- bundle ---------------------------------------------------------------------------------

def test_split_bundle_round_trip_and_each_side_builds_only_its_parts(tmp_path):
    bundle = make_tiny_split_bundle(tmp_path, tail='teacher')
    manifest = json.loads(read_bundle_file(tmp_path / 'tiny-split.gfde')[1])
    quant = manifest['model']['quantisation']
    assert quant['bits'] == 4 and len(quant['scale']) == len(quant['zero_point']) == 4
    assert manifest['model']['split'] == 1 and manifest['model']['tail'] == 'teacher'
    assert all(v.dtype == torch.float16 for k, v in bundle.state_dict.items()
               if k.startswith('teacher_tail.') and v.is_floating_point())
    robot = bundle.build_robot()
    server = bundle.build_server()
    assert robot.teacher_tail is None and robot.decoder is None
    assert server.encoder is None and server.head is None
    assert next(server.teacher_tail.parameters()).dtype == torch.float32
    whole = bundle.build()
    x = torch.randn(2, *bundle.config.input_shape)
    with torch.inference_mode():
        out = whole(x)
        features, _ = robot.run_robot(x)
        codes = robot.encode(features)
        scale, zero_point = robot.quantiser.params()
        logits = server.tail_logits(server.decode(dequantise(codes, scale, zero_point)))
    assert torch.allclose(logits, out.logits, atol=1e-5)


def test_split_bundle_refuses_tampering_and_other_families(tmp_path):
    make_tiny_split_bundle(tmp_path)
    path = tmp_path / 'tiny-split.gfde'
    _version, text, tensors, stored = read_bundle_file(path)
    manifest = json.loads(text)
    manifest['gate']['thresholds'] = [0.1]
    write_bundle_file(tmp_path / 'tampered.gfde', manifest, tensors,
                      checksum=stored)
    with pytest.raises(BundleChecksumError):
        load_split_bundle(tmp_path / 'tampered.gfde')
    # A plain GFDE bundle is not a split bundle.
    with pytest.raises(BundleManifestError, match='not a split bundle'):
        load_split_bundle(tmp_path / 'tiny-split-student.gfde')
    manifest['gate']['thresholds'] = [0.1, 0.2]
    write_bundle_file(tmp_path / 'gates.gfde', manifest, tensors)
    with pytest.raises(BundleManifestError, match='thresholds'):
        load_split_bundle(tmp_path / 'gates.gfde')


# The fields every bundle carries are checked in one place (bundle.BundleFields): a plain and a
# split bundle refuse the same bad value with the same message.
COMMON_FIELD_CASES = [
    ('name', lambda b: '', 'bundle name must be a non-empty string'),
    ('preprocessing', lambda b: None, 'preprocessing must be a PreprocessSpec, got NoneType'),
    ('gate', lambda b: 0.5, 'gate must be a GateConfig, got float'),
    ('provenance', lambda b: [1], 'provenance must be a JSON object, got list'),
    ('metrics', lambda b: {'x': object()}, 'metrics is not JSON-serialisable'),
    ('labels', lambda b: (' ',) + b.labels[1:], 'labels must be non-empty strings'),
    ('labels', lambda b: b.labels[1:2] + b.labels[1:], 'duplicate labels'),
]


def test_plain_and_split_bundles_refuse_bad_common_fields_alike(tmp_path):
    split = make_tiny_split_bundle(tmp_path)
    plain = load_bundle(tmp_path / 'tiny-split-student.gfde')
    for field, make, message in COMMON_FIELD_CASES:
        for bundle in (plain, split):
            with pytest.raises(BundleManifestError, match=re.escape(message)):
                dataclasses.replace(bundle, **{field: make(bundle)})


# -- engines --------------------------------------------------------------------------------

@pytest.mark.parametrize('tail', ['student', 'teacher'])
def test_robot_packets_decode_on_the_server_to_the_whole_models_answer(tmp_path, tail):
    bundle = make_tiny_split_bundle(tmp_path, tail=tail, split=2, thresholds=(1.0, 1.0))
    robot, server = SplitRobot(bundle), SplitServer(bundle)
    whole = bundle.build()
    for image in random_images(4, size=(16, 16)):
        outcome = robot.process(image)
        assert outcome.packet is not None
        assert outcome.result.answered_by == 'robot-fallback'
        assert outcome.result.exit_index == 1 and len(outcome.result.gate_confidence) == 2
        assert outcome.packet.shape == bundle.config.code_shape
        assert outcome.packet.nbytes == packed_size(int(np.prod(outcome.packet.shape)), 4)
        answer = server.process(outcome.packet)
        assert answer.answered_by == 'server' and answer.exit_index == 2
        x = torch.from_numpy(preprocess(image, bundle.preprocessing))[None]
        with torch.inference_mode():
            expected = whole(x).logits[0].argmax().item()
        assert answer.class_id == expected


def test_an_open_exit_answers_on_the_robot_without_a_packet(tmp_path):
    bundle = make_tiny_split_bundle(tmp_path, split=2, thresholds=(0.0, 1.0))
    outcome = SplitRobot(bundle).process(random_images(1, size=(16, 16))[0])
    assert outcome.packet is None
    assert outcome.result.answered_by == 'robot' and outcome.result.exit_index == 0
    # Exits can be switched off: then every frame is offloaded.
    outcome = SplitRobot(bundle, thresholds=(1.0, 1.0)).process(random_images(1)[0])
    assert outcome.packet is not None


def test_server_refuses_packets_of_another_model_or_shape(tmp_path):
    bundle = make_tiny_split_bundle(tmp_path, thresholds=(1.0,))
    other = make_tiny_split_bundle(tmp_path / 'other', thresholds=(1.0,), seed=1)
    server = SplitServer(bundle)
    packet = SplitRobot(other).process(random_images(1)[0]).packet
    with pytest.raises(FeatureError, match='model'):
        server.process(packet)
    good = SplitRobot(bundle).process(random_images(1)[0]).packet
    c, h, w = good.shape
    reshaped = FeaturePacket(good.model_id, good.split, (c, w * h, 1), good.bits, good.scale,
                             good.zero_point, good.data)
    with pytest.raises(FeatureError, match='shape'):
        server.process(reshaped)


def test_input_pixels_are_what_preprocess_normalises():
    spec = PreprocessSpec((28, 28), 'gray', (0.5,), (0.25,), 'area')
    frame = random_images(1, size=(48, 64))[0]
    pixels = input_pixels(frame, spec)
    assert pixels.shape == (28, 28, 1) and pixels.dtype == np.uint8
    expected = (pixels.transpose(2, 0, 1) / 255.0 - 0.5) / 0.25
    assert np.allclose(preprocess(frame, spec), expected, atol=1e-5)
