# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
GFNet family, GFDE (distillation head + early exits), deployable form and the registry.

Everything is built through :func:`build_model`; see docs/MODEL.md.
"""

from gfde_perception.models.deploy import export_onnx, to_deployable
from gfde_perception.models.flops import model_summary
from gfde_perception.models.gfde import GFDE, GFDEConfig, GFDEOutput
from gfde_perception.models.gfnet import GFNet, GFNetConfig
from gfde_perception.models.registry import (
    build_model, default_exit_blocks, gfnet_config, gfnet_from_official, list_models)


__all__ = [
    'GFDE', 'GFDEConfig', 'GFDEOutput', 'GFNet', 'GFNetConfig', 'build_model',
    'default_exit_blocks', 'export_onnx', 'gfnet_config', 'gfnet_from_official',
    'list_models', 'model_summary', 'to_deployable',
]
