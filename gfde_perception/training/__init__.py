# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Training: data sources, the three GFDE steps (teacher, student, exits), calibration.

Heavy dependencies (torch, the EfficientNet packages) are imported inside the functions that
need them; see docs/TRAINING.md.
"""

from gfde_perception.training.calibration import (
    calibrate_threshold, calibrate_thresholds, cascade, cascade_report)
from gfde_perception.training.config import (
    DataConfig, ExitConfig, OptimConfig, StudentConfig, TeacherConfig, TrainConfig)
from gfde_perception.training.data import (
    AugmentConfig, DataSplits, LabelledImages, load_bag_frames, load_fashion_mnist,
    load_image_folder, make_splits, read_idx)
from gfde_perception.training.pipeline import load_splits, run

__all__ = [
    'AugmentConfig', 'DataConfig', 'DataSplits', 'ExitConfig', 'LabelledImages', 'OptimConfig',
    'StudentConfig', 'TeacherConfig', 'TrainConfig',
    'calibrate_threshold', 'calibrate_thresholds', 'cascade', 'cascade_report',
    'load_bag_frames', 'load_fashion_mnist', 'load_image_folder', 'load_splits',
    'make_splits', 'read_idx', 'run',
]
