# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Every ``ros2 run`` / ``ros2 launch`` example in README.md and docs/ uses names that exist.

A parameter a user copies from the docs and the node does not declare is ignored silently by
ROS (``-p model:=x`` once made the node serve its embedded model instead of the user's). So the
examples are read from the Markdown, continuation lines joined, and every executable, launch
file, launch argument and ``-p NAME:=`` is checked against the package: console scripts in
setup.py, the arguments the launch file declares (run with the stand-ins of
test/launch_fixtures.py), and the node's parameter table.
The checker is first run on made-up wrong examples (the negative control).
"""

import ast
from pathlib import Path
import re

from gfde_perception.ros import parameters as params
from gfde_perception.ros.split_parameters import ROBOT_PARAMETERS, SERVER_PARAMETERS
from launch_fixtures import describe

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / 'README.md'] + sorted((REPO / 'docs').glob('*.md'))
# Executables whose -p names are checked, with their parameter tables.
NODE_PARAMETERS = {
    'classifier_node': set(params.PARAMETER_NAMES),
    'classifier_lifecycle_node': set(params.PARAMETER_NAMES),
    'split_robot_node': {p.name for p in ROBOT_PARAMETERS},
    'split_server_node': {p.name for p in SERVER_PARAMETERS},
}


def _console_scripts() -> set:
    tree = ast.parse((REPO / 'setup.py').read_text())
    return {node.value.split('=')[0].strip() for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and '=' in node.value and ':' in node.value}


def _launch_arguments(name: str):
    path = REPO / 'launch' / name
    if not path.is_file():
        return None
    return set(describe(path).arguments)


def commands(text: str) -> list:
    """Return the ``ros2 run|launch gfde_perception ...`` commands of a Markdown text."""
    joined = re.sub(r'\\\s*\n\s*', ' ', text)
    return [m.group(0).strip('` ') for m in
            re.finditer(r'ros2 (?:run|launch) gfde_perception [^\n`]*', joined)]


def problems(command: str, scripts: set) -> list:
    """List what in one example does not exist in the package (empty when all of it does)."""
    words = command.split()
    verb, target = words[1], words[3] if len(words) > 3 else ''
    found = []
    if verb == 'run':
        if target not in scripts:
            found.append(f'no executable {target!r}')
        allowed = NODE_PARAMETERS.get(target)
        for name in re.findall(r'-p\s+([\w.]+):=', command):
            if allowed is not None and name not in allowed:
                found.append(f'{target} declares no parameter {name!r}')
    else:
        declared = _launch_arguments(target)
        if declared is None:
            found.append(f'no launch file {target!r}')
        else:
            for name in re.findall(r'(?<![-\w.])([A-Za-z_]\w*):=', ' '.join(words[4:])):
                if name not in declared:
                    found.append(f'{target} declares no launch argument {name!r}')
    return found


def test_the_checker_finds_wrong_examples():
    scripts = _console_scripts()
    text = ('```\nros2 run gfde_perception classifier_node --ros-args \\\n'
            '  -p model:=/x.gfde\nros2 launch gfde_perception edge.launch.py cam:=/c\n'
            'ros2 run gfde_perception no_such_node\n```')
    found = [p for c in commands(text) for p in problems(c, scripts)]
    assert any("'model'" in p for p in found), found
    assert any("'cam'" in p for p in found), found
    assert any("'no_such_node'" in p for p in found), found


def test_every_documented_command_uses_existing_names():
    scripts = _console_scripts()
    checked, found = 0, []
    for doc in DOCS:
        for command in commands(doc.read_text()):
            checked += 1
            found += [f'{doc.relative_to(REPO)}: `{command}`: {p}'
                      for p in problems(command, scripts)]
    assert checked >= 3, 'the docs lost their ros2 run/launch examples'
    assert not found, '\n'.join(found)
