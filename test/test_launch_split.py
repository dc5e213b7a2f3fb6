# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
The split launch files and YAML files against what the split nodes really declare.

Static, like test_launch_edge.py: what the launch files describe (run with the stand-ins of
test/launch_fixtures.py, as ``launch_ros`` cannot be installed here) and the YAML are compared
with the nodes' parameter tables and setup.py's console scripts.
"""

from pathlib import Path

from gfde_perception.ros import parameters as params
from gfde_perception.ros.split_parameters import ROBOT_PARAMETERS, SERVER_PARAMETERS
from launch_fixtures import describe, statements_run_at_import
import pytest
from test_launch_edge import _console_scripts, _flatten
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
    description = describe(REPO / 'launch' / launch)
    declared = set(description.arguments)
    assert declared == description.used() and {'namespace', 'bundle', 'params_file'} <= declared
    (node,) = description.nodes
    passed = description.passed_parameters(node)
    names = {p.name for p in table}
    assert 'model.bundle' in passed and set(passed) <= names, set(passed) - names
    assert node.kwargs['executable'] == executable and executable in _console_scripts()
    assert node.kwargs['package'] == 'gfde_perception'
    # The robot takes camera images, remapped like the classifier's; the server takes none.
    remapped = [(a, b.args[0]) for a, b in node.kwargs.get('remappings') or ()]
    assert remapped == ([('image', 'camera_topic')] if side == 'robot' else [])
    assert ('camera_topic' in declared) == (side == 'robot')
    assert not statements_run_at_import(REPO / 'launch' / launch)  # nothing runs at import


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
