# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
The split launch files and YAML files against what the split nodes really declare.

Static, like test_launch_edge.py: the launch files' source (ast) and the YAML are compared
with the nodes' parameter tables and setup.py's console scripts. Launching needs
``launch_ros``, which cannot be installed here (see test_launch_edge.py).
"""

import ast
from pathlib import Path

from gfde_perception.ros import parameters as params
from gfde_perception.ros.split_parameters import ROBOT_PARAMETERS, SERVER_PARAMETERS
import pytest
from test_launch_edge import _calls, _console_scripts, _flatten, _string_args
import yaml

REPO = Path(__file__).resolve().parents[1]
SIDES = {
    'robot': ('split_robot.launch.py', 'split_robot.yaml', 'split_robot_node', ROBOT_PARAMETERS),
    'server': ('split_server.launch.py', 'split_server.yaml', 'split_server_node',
               SERVER_PARAMETERS),
}


@pytest.mark.parametrize('side', sorted(SIDES))
def test_launch_file_is_includable_and_passes_only_declared_parameters(side):
    launch, _yaml, executable, table = SIDES[side]
    tree = ast.parse((REPO / 'launch' / launch).read_text())
    declared = set(_string_args(_calls(tree, 'DeclareLaunchArgument')))
    used = set(_string_args(_calls(tree, 'LaunchConfiguration')))
    assert declared == used and {'namespace', 'bundle', 'params_file'} <= declared
    names = {p.name for p in table}
    passed = [k.value for node in ast.walk(tree) if isinstance(node, ast.Dict)
              for k in node.keys if isinstance(k, ast.Constant)]
    assert passed and set(passed) <= names, set(passed) - names
    strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)}
    assert executable in strings and executable in _console_scripts()
    for stmt in tree.body:  # nothing runs at import
        assert isinstance(stmt, (ast.Import, ast.ImportFrom, ast.Assign, ast.FunctionDef,
                                 ast.Expr))
    assert not _calls(tree, 'SetEnvironmentVariable')


@pytest.mark.parametrize('side', sorted(SIDES))
def test_params_file_shows_every_default_with_its_type(side):
    _launch, yaml_file, _exe, table = SIDES[side]
    data = yaml.safe_load((REPO / 'config' / yaml_file).read_text())
    values = _flatten(data['/**']['ros__parameters'])
    by_name = {p.name: p for p in table}
    assert set(values) == set(by_name), set(values) ^ set(by_name)
    for name, value in values.items():
        spec = by_name[name]
        assert params.check_value(spec, value) is None
        kind = {'string': str, 'int': int, 'double': float, 'bool': bool}[spec.kind]
        assert type(value) is kind and value == spec.default, name
