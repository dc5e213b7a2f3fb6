# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""``gfde-model``: info on a bundle, the registry list, ONNX export, errors."""

import json

from gfde_perception.bundle import Bundle, save_bundle
from gfde_perception.cli.model import main
from gfde_perception.gating import GateConfig
from gfde_perception.models import build_model
from gfde_perception.preprocessing import PreprocessSpec
import pytest
import torch


def _bundle(tmp_path, exit_blocks=(1, 2)):
    torch.manual_seed(0)
    model = build_model('gfnet-edge-28', depth=3, exit_blocks=exit_blocks)
    spec = PreprocessSpec((28, 28), 'gray', (0.3,), (0.35,))
    bundle = Bundle.from_model(model, 'cli-test', spec, [f'c{i}' for i in range(10)],
                               GateConfig('margin', (0.3, 0.5)[:len(exit_blocks)]),
                               provenance={'trained_on': 'nothing'}, metrics={'top1': 0.1})
    return save_bundle(bundle, tmp_path / 'm.gfde')


def test_info_text(tmp_path, capsys):
    assert main(['info', str(_bundle(tmp_path))]) == 0
    out = capsys.readouterr().out
    for text in ('cli-test', 'gfde (gfnet) img_size=28 patch_size=4', 'margin', '28x28 gray',
                 'c0, c1',
                 'trained_on: "nothing"', 'top1: 0.1', '1x28x28 -> 49x48', 'final'):
        assert text in out, text


def test_info_json(tmp_path, capsys):
    assert main(['info', '--json', str(_bundle(tmp_path))]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info['blocks_per_exit'] == [1, 2, 3]
    assert info['gate']['thresholds'] == [0.3, 0.5]
    assert [s['input'] for s in info['segments']] == [[1, 28, 28], [49, 48], [49, 48]]
    model = build_model('gfnet-edge-28', depth=3, exit_blocks=(1, 2))
    assert info['summary']['params_total'] == sum(p.numel() for p in model.parameters())
    assert len(info['summary']['macs_per_segment']) == 3


def test_list(capsys):
    assert main(['list']) == 0
    out = capsys.readouterr().out
    for name in ('gfnet-ti', 'gfnet-h-b', 'gfnet-edge-28'):
        assert name in out
    assert main(['list', '--json']) == 0
    rows = {r['name']: r for r in json.loads(capsys.readouterr().out)}
    assert rows['gfnet-edge-32']['input'] == [3, 32, 32]


def test_errors_exit_2_with_the_reason(tmp_path, capsys):
    bad = tmp_path / 'bad.gfde'
    bad.write_bytes(b'not a bundle at all')
    assert main(['info', str(bad)]) == 2
    assert 'not a readable safetensors' in capsys.readouterr().err
    assert main(['info', str(tmp_path / 'missing.gfde')]) == 2
    assert 'no bundle' in capsys.readouterr().err


def test_export_onnx(tmp_path, capsys):
    pytest.importorskip('onnx')
    path = _bundle(tmp_path, exit_blocks=())
    assert main(['export-onnx', str(path), str(tmp_path / 'onnx')]) == 0
    names = sorted(p.name for p in (tmp_path / 'onnx').iterdir())
    assert names == ['head_0.onnx', 'model.onnx', 'segment_0.onnx']
