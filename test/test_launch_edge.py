# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
launch/edge.launch.py and config/edge.yaml against what the node really declares.

The static tests run the launch file with stand-ins for the launch classes
(test/launch_fixtures.py: ``launch`` and ``launch_ros`` cannot be installed on this machine, no
ROS apt repository; PyPI's ``launch`` is an unrelated program), read the YAML, and compare
every argument, parameter name and value with the node's own table
(:data:`gfde_perception.ros.parameters.PARAMETERS`, the one ``declare_parameters`` uses), and
every executable with setup.py's console scripts. They launch nothing. The launch test proper
needs the real ``launch``/``launch_ros``: it runs wherever they import and is skipped here
with that reason.
"""

import ast
from pathlib import Path
import threading
import time

from gfde_perception.ros import parameters as params
from launch_fixtures import describe, statements_run_at_import
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
LAUNCH_FILE = REPO / 'launch' / 'edge.launch.py'
SUPPORT_FILE = REPO / 'gfde_perception' / 'ros' / 'launch_support.py'
PARAMS_FILE = REPO / 'config' / 'edge.yaml'
EXPECTED_ARGUMENTS = {'camera_topic', 'namespace', 'bundle', 'backend', 'params_file', 'managed'}


def _console_scripts():
    tree = ast.parse((REPO / 'setup.py').read_text())
    scripts = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and '=' in node.value:
            scripts.add(node.value.split('=')[0].strip())
    return scripts


@pytest.fixture(scope='module')
def description():
    return describe(LAUNCH_FILE)


def test_launch_arguments_are_declared_and_used(description):
    declared = set(description.arguments)
    used = description.used()
    assert EXPECTED_ARGUMENTS <= declared, f'missing: {EXPECTED_ARGUMENTS - declared}'
    assert declared == used, f'declared but unused: {declared - used}; undeclared: ' \
                             f'{used - declared}'
    default = Path(description.arguments['params_file'].default)
    assert default.parts[-2:] == ('config', 'edge.yaml') and default.is_file(), default


def test_parameters_passed_by_the_launch_file_are_declared_by_the_node(description):
    for node in description.nodes:
        passed = description.passed_parameters(node)
        assert {'model.bundle', 'model.backend'} <= set(passed), passed
        unknown = set(passed) - set(params.PARAMETER_NAMES)
        assert not unknown, f'the launch file passes parameters the node does not declare: ' \
                            f'{unknown}'


def test_launch_file_starts_the_installed_executables_and_has_no_side_effects(description):
    nodes = {node.kind: node for node in description.nodes}
    assert sorted(nodes) == ['LifecycleNode', 'Node']
    assert nodes['Node'].kwargs['executable'] == 'classifier_node'
    assert nodes['LifecycleNode'].kwargs['executable'] == 'classifier_lifecycle_node'
    for node in nodes.values():
        assert node.kwargs['executable'] in _console_scripts(), node.kwargs['executable']
        assert node.kwargs['package'] == 'gfde_perception'
        remapped = [(a, b.args[0]) for a, b in node.kwargs['remappings']]
        assert remapped == [('image', 'camera_topic')]
    # managed:=true starts the lifecycle node only, false the plain node only.
    conditions = {kind: (node.kwargs['condition'].kind, node.kwargs['condition'].args[0].args)
                  for kind, node in nodes.items()}
    assert conditions == {'Node': ('UnlessCondition', ('managed',)),
                          'LifecycleNode': ('IfCondition', ('managed',))}
    # Only imports, constants and the generate function at module level, here and in the
    # helper module it imports: nothing runs on import, so the file can be included from
    # another launch file. describe() already refused any launch action but arguments and
    # nodes (no SetEnvironmentVariable, no ExecuteProcess).
    for path in (LAUNCH_FILE, SUPPORT_FILE):
        assert not statements_run_at_import(path), path
    tree = ast.parse(LAUNCH_FILE.read_text())
    names = [s.name for s in tree.body if isinstance(s, ast.FunctionDef)]
    assert names == ['generate_launch_description']


def _flatten(tree, prefix=''):
    flat = {}
    for key, value in tree.items():
        name = f'{prefix}{key}'
        if isinstance(value, dict):
            flat.update(_flatten(value, name + '.'))
        else:
            flat[name] = value
    return flat


def test_params_file_names_and_values_are_what_the_node_accepts():
    data = yaml.safe_load(PARAMS_FILE.read_text())
    assert list(data) == ['/**'], 'the params file should apply to any node name'
    values = _flatten(data['/**']['ros__parameters'])
    unknown = set(values) - set(params.PARAMETER_NAMES)
    assert not unknown, f'edge.yaml sets parameters the node does not declare: {unknown}'
    for name, value in values.items():
        spec = params.BY_NAME[name]
        assert params.check_value(spec, value) is None, params.check_value(spec, value)
        # ROS refuses a YAML int for a double parameter: the file must keep the types.
        kind = {'string': str, 'int': int, 'double': float, 'string_array': list}[spec.kind]
        assert type(value) is kind, f'{name}: {value!r} is not {spec.kind}'
        assert value == spec.default, f'{name}: the file should show the node default'


def test_params_file_and_launch_file_are_installed_by_setup_py():
    setup = (REPO / 'setup.py').read_text()
    assert "glob('launch/*.launch.py')" in setup and "glob('config/*.yaml')" in setup


def test_launch_file_really_launches_the_node(rclpy_context, tmp_path):
    pytest.importorskip('launch_ros', reason='launch_ros is not installable here (no ROS apt '
                        'repository); this test runs on a real ROS 2 install')
    from launch import LaunchDescription, LaunchService
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    import rclpy
    from runtime_fixtures import make_tiny_bundle

    make_tiny_bundle(tmp_path, name='tiny')
    include = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(LAUNCH_FILE)),
        launch_arguments={'bundle': str(tmp_path / 'tiny.gfde'), 'backend': 'torch',
                          'namespace': 'robot', 'camera_topic': 'front/image_raw',
                          'params_file': str(PARAMS_FILE), 'managed': 'false'}.items())
    service = LaunchService()
    service.include_launch_description(LaunchDescription([include]))
    runner = threading.Thread(target=service.run, daemon=True)
    runner.start()
    probe = rclpy.create_node('gfde_launch_probe', context=rclpy_context)
    try:
        deadline = time.monotonic() + 60
        found = False
        while time.monotonic() < deadline and not found:
            found = ('gfde_classifier', '/robot') in probe.get_node_names_and_namespaces()
            subs = dict(probe.get_topic_names_and_types())
            found = found and '/robot/front/image_raw' in subs
            time.sleep(0.2)
        assert found, 'the launched node or its remapped camera topic never appeared'
    finally:
        service.shutdown()
        runner.join(30)
        probe.destroy_node()
