# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Allowed values, ranges and defaults that more than one part of the package checks against.

One home, so that the runtime's configuration, the node's parameter table, the command-line
tools and training validate against the same lists: a backend added here is accepted by
``RuntimeConfig``, ``model.backend``, ``gfde-infer --backend`` and ``gfde-eval --backend``
alike. Plain data, importing nothing.
"""

from typing import NamedTuple


class IntRange(NamedTuple):
    """An integer knob: lowest and highest allowed value, and the default."""

    low: int
    high: int
    default: int


# --- the inference runtime (RuntimeConfig, the node's model.* parameters, the CLIs) ----------
BACKENDS = ('auto', 'tensorrt', 'cuda', 'torch', 'torch-compile', 'onnxruntime')
DEFAULT_BACKEND = 'auto'
PRECISIONS = ('fp16', 'fp32')
DEFAULT_PRECISION = 'fp16'
SCHEDULES = ('auto', 'speculative', 'sequential')
DEFAULT_SCHEDULE = 'auto'
HEAD_IMPLS = ('auto', 'numpy', 'torch')
DEFAULT_HEAD_IMPL = 'auto'
ENERGY_SOURCES = ('auto', 'none', 'nvml', 'rapl', 'ina3221')
DEFAULT_ENERGY = 'auto'
# 0 exit workers runs the exit heads inline on the calling thread (no hand-off).
EXIT_WORKERS = IntRange(0, 16, 1)
# 0 threads keeps the library default.
THREADS = IntRange(0, 256, 0)
WARMUP = IntRange(0, 1000, 10)
TOP_K = IntRange(1, 100, 5)

# --- distillation (the loss, training's student step) ----------------------------------------
# none: labels only; hard: DeiT's argmax teacher labels; soft: DeiT's KL at temperature tau;
# both: the mean of the hard and the soft terms.
DISTILLATION_KINDS = ('none', 'hard', 'soft', 'both')

# --- exit gates (gating, the bundle's gate config, training's exits step) ---------------------
GATE_METRICS = ('max_softmax', 'margin', 'entropy', 'learned')
DEFAULT_GATE_METRIC = 'max_softmax'

# --- preprocessing: the ImageNet statistics pretrained colour models expect ------------------
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
