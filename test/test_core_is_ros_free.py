# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
The core imports without ROS and without optional accelerator stacks.

Each module outside the ROS shell is imported in a fresh interpreter in which rclpy, every
message package and the optional stacks (TensorRT, CUDA bindings, NVML, onnxruntime) are made
unimportable (``sys.modules[name] = None``). A module that needs one of them at import time fails
here, which is what keeps the core testable and deployable on a CPU-only robot.
"""

import json
from pathlib import Path
import subprocess
import sys

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / 'gfde_perception'
# The ROS shell, and the one evaluation module that publishes into a live node.
ROS_SHELL = ('gfde_perception.ros', 'gfde_perception.evaluation.live')
BLOCKED = ('rclpy', 'gfde_msgs', 'sensor_msgs', 'std_msgs', 'diagnostic_msgs',
           'builtin_interfaces', 'lifecycle_msgs', 'rcl_interfaces', 'launch', 'launch_ros',
           'tensorrt', 'torch_tensorrt', 'pynvml', 'onnxruntime', 'cv_bridge')


def core_modules():
    modules = []
    for path in sorted(PACKAGE.rglob('*.py')):
        rel = path.relative_to(REPO).with_suffix('')
        parts = list(rel.parts)
        if parts[-1] == '__init__':
            parts = parts[:-1]
        name = '.'.join(parts)
        if not name.startswith(ROS_SHELL):
            modules.append(name)
    return modules


def test_there_is_a_core_to_check():
    names = core_modules()
    for expected in ('gfde_perception.preprocessing', 'gfde_perception.errors'):
        assert expected in names


CHECK = """
import importlib, json, sys, traceback
for name in BLOCKED:
    sys.modules[name] = None
failures = {}
for module in MODULES:
    try:
        importlib.import_module(module)
    except Exception:
        failures[module] = traceback.format_exc(limit=3)
leaked = sorted(n for n in sys.modules
                if n.split('.')[0] in BLOCKED and sys.modules[n] is not None)
print(json.dumps({'failures': failures, 'leaked': leaked}))
"""


def run_check(modules, cwd):
    script = f'BLOCKED = {BLOCKED!r}\nMODULES = {modules!r}\n' + CHECK
    result = subprocess.run([sys.executable, '-c', script], cwd=cwd, capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_core_modules_import_without_ros_or_accelerator_stacks():
    # One interpreter for all modules: torch is imported once, not once per module.
    report = run_check(core_modules(), REPO)
    assert not report['failures'], 'modules that need ROS or an optional stack:\n' + '\n'.join(
        f'{name}:\n{trace}' for name, trace in report['failures'].items())
    assert not report['leaked'], f'blocked packages were imported anyway: {report["leaked"]}'


def test_the_check_catches_a_module_that_imports_rclpy(tmp_path):
    # Negative control: the same check must report a module that imports rclpy.
    (tmp_path / 'leaky.py').write_text('import rclpy\n')
    (tmp_path / 'clean.py').write_text('import json\n')
    report = run_check(['leaky', 'clean'], tmp_path)
    assert list(report['failures']) == ['leaky']
    assert 'rclpy' in report['failures']['leaky']
