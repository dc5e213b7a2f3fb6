# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
The ROS-free inference engine: backbone segments on a backend, exit heads on CPU workers.

Start with :class:`Classifier` (see docs/RUNTIME.md). Optional stacks (onnxruntime, CUDA,
torch-tensorrt, NVML) are imported only by the backend or counter that needs them.
"""

from gfde_perception.runtime.classifier import Classifier
from gfde_perception.runtime.config import RuntimeConfig
from gfde_perception.runtime.energy import EnergyMeter
from gfde_perception.runtime.policies import (
    BudgetBounds, BudgetPolicy, ExitPolicy, FinalExitPolicy, ForceExitPolicy, ThresholdPolicy)
from gfde_perception.runtime.result import ClassScore, EnergyReading, Result, StageTimings
from gfde_perception.runtime.stage_profile import FrameRecord, RuntimeProfile

__all__ = [
    'BudgetBounds', 'BudgetPolicy', 'ClassScore', 'Classifier', 'EnergyMeter', 'EnergyReading',
    'ExitPolicy', 'FinalExitPolicy', 'ForceExitPolicy', 'FrameRecord', 'Result',
    'RuntimeConfig', 'RuntimeProfile', 'StageTimings', 'ThresholdPolicy',
]
