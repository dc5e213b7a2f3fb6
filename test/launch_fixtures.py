# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
What a launch file of this package declares and starts, read without ``launch``/``launch_ros``.

``launch`` and ``launch_ros`` cannot be installed on this machine (no ROS apt repository; PyPI's
``launch`` is an unrelated program), so ``ros2 launch`` cannot run here. The launch files build
their arguments and nodes with ``gfde_perception.ros.launch_support``, so their source alone no
longer shows what they declare. :func:`describe` therefore runs a launch file's real
``generate_launch_description()`` with stand-ins for the launch classes (a mock of ``ros2
launch``, the one thing missing here): each stand-in only records the arguments it was made
with. Nothing is launched. Where launch_ros is installed, test_launch_edge.py also launches the
node for real.
"""

import ast
import contextlib
from dataclasses import dataclass
import importlib
import importlib.util
from pathlib import Path
import sys
import types

SUPPORT = 'gfde_perception.ros.launch_support'
# The launch modules and classes the package's launch files may use; any other import fails.
STAND_INS = {
    'launch': ('LaunchDescription',),
    'launch.actions': ('DeclareLaunchArgument',),
    'launch.conditions': ('IfCondition', 'UnlessCondition'),
    'launch.substitutions': ('LaunchConfiguration',),
    'launch_ros': (),
    'launch_ros.actions': ('LifecycleNode', 'Node'),
    'launch_ros.parameter_descriptions': ('ParameterValue',),
}


class Recorded:
    """A stand-in launch object: its class name and the arguments it was made with."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    @property
    def kind(self) -> str:
        """Name of the launch class it stands in for."""
        return type(self).__name__


@dataclass
class Argument:
    """One ``DeclareLaunchArgument``."""

    default: object
    description: str


@dataclass
class Description:
    """What ``generate_launch_description()`` returned, in plain terms."""

    arguments: dict  # name -> Argument, in declaration order
    nodes: list  # Recorded Node / LifecycleNode, in order

    def used(self) -> set:
        """Names of the launch configurations the nodes read."""
        return {r.args[0] for node in self.nodes for r in _walk(node)
                if r.kind == 'LaunchConfiguration'}

    def passed_parameters(self, node) -> dict:
        """Parameters a node gets besides its params file (name -> value)."""
        passed = {}
        for entry in node.kwargs.get('parameters', ()):
            if isinstance(entry, dict):
                passed.update(entry)
        return passed


def _walk(value):
    """Every stand-in reachable from ``value`` (itself included)."""
    if isinstance(value, Recorded):
        yield value
        for item in value.args + tuple(value.kwargs.values()):
            yield from _walk(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _walk(item)
    elif isinstance(value, dict):
        for item in value.items():
            yield from _walk(item)


_ABSENT = object()


@contextlib.contextmanager
def _stand_ins():
    ros = importlib.import_module('gfde_perception.ros')
    names = list(STAND_INS) + [SUPPORT]
    saved = {name: sys.modules.get(name, _ABSENT) for name in names}
    saved_attr = getattr(ros, 'launch_support', _ABSENT)
    for module, classes in STAND_INS.items():
        stand_in = types.ModuleType(module)
        for name in classes:
            setattr(stand_in, name, type(name, (Recorded,), {}))
        sys.modules[module] = stand_in
    sys.modules.pop(SUPPORT, None)  # imported again, against the stand-ins
    try:
        yield
    finally:
        # Leave no module bound to the stand-ins behind (a real launch test may follow).
        for name, module in saved.items():
            if module is _ABSENT:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
        if saved_attr is _ABSENT:
            if hasattr(ros, 'launch_support'):
                delattr(ros, 'launch_support')
        else:
            ros.launch_support = saved_attr


def describe(path: Path) -> Description:
    """Run the launch file at ``path`` with the stand-ins and return what it describes."""
    spec = importlib.util.spec_from_file_location('launch_file_' + path.name.split('.')[0],
                                                  path)
    with _stand_ins():
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        returned = module.generate_launch_description()
    assert isinstance(returned, Recorded) and returned.kind == 'LaunchDescription', returned
    arguments, nodes = {}, []
    for entity in returned.args[0]:
        if entity.kind == 'DeclareLaunchArgument':
            assert entity.args[0] not in arguments, f'{entity.args[0]} declared twice'
            arguments[entity.args[0]] = Argument(entity.kwargs['default_value'],
                                                 entity.kwargs['description'])
        else:
            assert entity.kind in ('Node', 'LifecycleNode'), entity.kind
            nodes.append(entity)
    return Description(arguments, nodes)


def statements_run_at_import(path: Path) -> list:
    """Module-level statements of ``path`` other than imports, assignments, defs, docstring."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [ast.dump(stmt)[:80] for stmt in tree.body
            if not isinstance(stmt, (ast.Import, ast.ImportFrom, ast.Assign, ast.FunctionDef))
            and not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant))]
