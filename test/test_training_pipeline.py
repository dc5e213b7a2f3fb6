# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
End to end: gfde-train runs teacher, student and exits on a tiny image folder -> a bundle.

A few hundred 16x16 images, one short epoch per step, tiny models: seconds on 2 cores.
"""

import json
from pathlib import Path

import cv2
from gfde_perception.bundle import load_bundle
from gfde_perception.cli.train import apply_overrides, main
from gfde_perception.errors import ConfigError
from gfde_perception.preprocessing import preprocess
from gfde_perception.training.config import TrainConfig
import numpy as np
import pytest
import torch


def _pattern_folder(root: Path, per_class: int = 60) -> Path:
    """Three classes a small model can tell apart: stripes across, stripes down, a blob."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:16, 0:16]
    patterns = {
        'across': (yy % 4 < 2) * 200,
        'down': (xx % 4 < 2) * 200,
        'blob': ((yy - 8) ** 2 + (xx - 8) ** 2 < 20) * 220,
    }
    for name, base in patterns.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            noisy = np.clip(base + rng.normal(0, 30, base.shape), 0, 255).astype(np.uint8)
            cv2.imwrite(str(root / name / f'{i:03d}.png'), noisy)
    return root


def _tiny_config(tmp_path: Path, teacher: dict) -> Path:
    import yaml

    cfg = {
        'name': 'tiny', 'seed': 0, 'threads': 1,
        'output_dir': str(tmp_path / 'run'), 'bundle': str(tmp_path / 'tiny.gfde'),
        'data': {'kind': 'image-folder', 'root': str(_pattern_folder(tmp_path / 'train')),
                 'test_root': str(_pattern_folder(tmp_path / 'test', per_class=10)),
                 'val_fraction': 0.2},
        'teacher': teacher,
        'student': {
            'model': 'gfnet-edge-28',
            'overrides': {'embed_dim': 16, 'depth': 2, 'exit_blocks': [1]},
            'preprocessing': {'input_size': [16, 16], 'channel_order': 'gray',
                              'mean': [0.5], 'std': [0.5]},
            'distillation': 'hard',
            'optim': {'epochs': 1, 'batch_size': 32, 'lr': 0.003, 'checkpoint_every': 2},
        },
        'exits': {'budget_points': 2.0, 'min_exit_samples': 2,
                  'optim': {'epochs': 2, 'batch_size': 64}},
    }
    path = tmp_path / 'train_tiny.yaml'
    path.write_text(yaml.safe_dump(cfg))
    return path


EFFNET_TEACHER = {
    'kind': 'efficientnet-lite0',
    'preprocessing': {'input_size': [32, 32], 'channel_order': 'rgb'},
    'optim': {'epochs': 1, 'batch_size': 32, 'max_steps': 2, 'checkpoint_every': 1},
}


def test_gfde_train_end_to_end_produces_a_loadable_bundle(tmp_path):
    config = _tiny_config(tmp_path, EFFNET_TEACHER)
    assert main(['--config', str(config), '--no-progress']) == 0
    run = tmp_path / 'run'
    metrics = json.loads((run / 'metrics.json').read_text())
    for step in ('teacher', 'student', 'exits'):
        assert step in metrics
    assert metrics['data']['train'] == 144 and metrics['data']['val'] == 36
    assert metrics['data']['test'] == 30
    assert load_bundle(run / 'teacher.gfde').config.family == 'efficientnet-lite0'
    exits = metrics['exits']
    assert len(exits['gate']['thresholds']) == 1
    assert 0.0 <= exits['test']['accuracy'] <= 1.0
    assert sum(exits['test']['exit_rates']) == pytest.approx(1.0)

    bundle = load_bundle(tmp_path / 'tiny.gfde')
    assert bundle.labels == ('across', 'blob', 'down')
    assert bundle.preprocessing.input_size == (16, 16)
    assert bundle.gate.thresholds == tuple(exits['gate']['thresholds'])
    assert bundle.provenance['distillation'] == 'hard'
    assert 'test_acc' in bundle.metrics['teacher']
    model = bundle.build_model()
    image = cv2.imread(str(tmp_path / 'test' / 'blob' / '000.png'), cv2.IMREAD_GRAYSCALE)
    with torch.inference_mode():
        out = model(torch.from_numpy(preprocess(image, bundle.preprocessing))[None])
    assert out.logits.shape == (1, 3) and len(out.exit_logits) == 1

    # A finished run resumes without retraining: the student checkpoint is left as it was.
    stamp = (run / 'student.ckpt').stat().st_mtime_ns
    assert main(['--config', str(config), '--step', 'student', '--no-progress']) == 0
    assert (run / 'student.ckpt').stat().st_mtime_ns == stamp


def test_ablation_without_teacher_and_single_steps(tmp_path):
    config = _tiny_config(tmp_path, {'kind': 'none'})
    assert main(['--config', str(config), '--step', 'teacher', '--no-progress']) == 0
    assert not (tmp_path / 'run' / 'teacher.safetensors').exists()
    assert main(['--config', str(config), '--step', 'student', '--no-progress',
                 '--set', 'student.distillation=none']) == 0
    student = json.loads((tmp_path / 'run' / 'student_metrics.json').read_text())
    assert student['distillation'] == 'none'
    assert main(['--config', str(config), '--step', 'exits', '--no-progress',
                 '--set', 'exits.metric=learned']) == 0
    bundle = load_bundle(tmp_path / 'tiny.gfde')
    assert bundle.provenance['distillation'] == 'none'
    # The learned gate is fitted during calibration and travels in the bundle.
    assert bundle.gate.metric == 'learned' and len(bundle.gate.learned_weights) == 4


def test_distillation_without_teacher_logits_is_a_clear_error(tmp_path, capsys):
    config = _tiny_config(tmp_path, EFFNET_TEACHER)
    assert main(['--config', str(config), '--step', 'student', '--no-progress']) == 2
    assert 'run the teacher step first' in capsys.readouterr().err


def test_device_selection_and_clear_errors(tmp_path, capsys):
    from gfde_perception.training.loop import select_device, training_device

    try:
        expected = 'cuda' if torch.cuda.is_available() else 'cpu'
        assert select_device('auto') == expected == training_device()
        assert select_device('cpu') == 'cpu' == training_device()
        with pytest.raises(ConfigError, match='device must be one of'):
            select_device('gpu')
        if not torch.cuda.is_available():
            with pytest.raises(ConfigError, match='sees no CUDA device'):
                select_device('cuda:0')
        with pytest.raises(ConfigError, match='device must be one of'):
            TrainConfig.from_dict({'device': 'tpu'})
        # From the command line: a GPU asked for where there is none is refused before any work.
        if not torch.cuda.is_available():
            config = _tiny_config(tmp_path, {'kind': 'none'})
            assert main(['--config', str(config), '--device', 'cuda', '--no-progress']) == 2
            assert 'sees no CUDA device' in capsys.readouterr().err
            assert not (tmp_path / 'run' / 'student.ckpt').exists()
    finally:
        select_device('cpu')


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason=f'needs a CUDA device; torch {torch.__version__} sees none')
def test_training_on_cuda_writes_a_cpu_loadable_bundle(tmp_path):
    from gfde_perception.training.loop import select_device

    config = _tiny_config(tmp_path, EFFNET_TEACHER)
    try:
        assert main(['--config', str(config), '--device', 'cuda', '--no-progress']) == 0
    finally:
        select_device('cpu')
    bundle = load_bundle(tmp_path / 'tiny.gfde')
    model = bundle.build_model()
    assert all(p.device.type == 'cpu' for p in model.parameters())
    with torch.inference_mode():
        out = model(torch.zeros(1, 1, 16, 16))
    assert out.logits.shape == (1, 3)


def test_set_overrides_parse_yaml_values():
    data = apply_overrides({'a': {'b': 1}}, ['a.b=2', 'a.c=[1, 2]', 'd.e=none'])
    assert data == {'a': {'b': 2, 'c': [1, 2]}, 'd': {'e': 'none'}}
    with pytest.raises(ConfigError):
        apply_overrides({}, ['novalue'])
