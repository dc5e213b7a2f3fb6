# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Tiny split bundles for split-model, runtime and node tests (untrained, built in a second).

``make_tiny_split_bundle(folder, tail=...)`` wraps the tiny GFDE of ``runtime_fixtures`` (16 px
colour input, 4 blocks, exits after blocks 1, 2 and 3) into a split model with the robot running
``split`` segments; with ``tail='teacher'`` the server runs an untrained EfficientNet-Lite0 (32
px) from its third stage on, so its features are (B, C, H, W) maps while the head's are tokens.
"""

from pathlib import Path

from gfde_perception.gating import GateConfig
from gfde_perception.models.efficientnet_segments import staged
from gfde_perception.models.registry import build_from_config
from gfde_perception.models.split import (
    BottleneckConfig, probe_features, SplitConfig, SplitModel)
from gfde_perception.models.teachers import EfficientNetLite0Config
from gfde_perception.split_bundle import load_split_bundle, save_split_bundle, SplitBundle
from runtime_fixtures import make_tiny_bundle
import torch

TEACHER = EfficientNetLite0Config(img_size=32, in_chans=3, num_classes=4)


def tiny_split_config(student, tail: str = 'student', split: int = 1,
                      bottleneck: BottleneckConfig = BottleneckConfig(4, 4, 1, 16),
                      teacher_split: int = 3) -> SplitConfig:
    """Return the split config of the tiny student (a GFDE) with a student or teacher tail."""
    model = student.build_model()
    spec = student.preprocessing
    input_shape = (spec.channels,) + tuple(spec.input_size)
    head_features = probe_features(model, input_shape, split)
    tail_features, teacher = None, None
    if tail == 'teacher':
        tail_features = probe_features(staged(build_from_config(TEACHER)), (3, 32, 32),
                                       teacher_split)
        teacher = TEACHER
    return SplitConfig(student.config, split, input_shape, head_features,
                       tail, tail_features, bottleneck, teacher,
                       teacher_split if tail == 'teacher' else 0)


def make_tiny_split_bundle(folder, *, tail: str = 'student', split: int = 1,
                           thresholds: tuple = None, name: str = 'tiny-split',
                           bits: int = 4, seed: int = 0) -> SplitBundle:
    """Build, save and reload a tiny split bundle; return it (checksum filled in)."""
    student = make_tiny_bundle(folder, name=f'{name}-student', seed=seed)
    config = tiny_split_config(student, tail, split, BottleneckConfig(4, bits, 1, 16))
    torch.manual_seed(seed)
    model = SplitModel(config)
    model.head.load_state_dict(student.build_model().state_dict())
    # A few batches in training mode give the quantiser a real range.
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, *config.input_shape))
    model.eval()
    if thresholds is None:
        thresholds = student.gate.thresholds[:split]
    gate = GateConfig(student.gate.metric, tuple(thresholds))
    bundle = SplitBundle.from_model(model, name, student.preprocessing, student.labels, gate,
                                    {'made_by': 'test/split_fixtures.py'},
                                    half_parts=('teacher_tail',))
    path = Path(folder) / f'{name}.gfde'
    save_split_bundle(bundle, path)
    return load_split_bundle(path)
