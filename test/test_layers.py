# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
The layers of the package (docs/ARCHITECTURE.md, "Layers"), checked on its imports.

Every module of ``gfde_perception`` belongs to a *unit*: a sub-package (``runtime``,
``recording``, ...) or a top-level module (``errors``, ``bundle``, ...). :data:`LAYERS` ranks the
units; a module may import its own unit and units of a lower rank, nothing else. Every import
counts, at module level or inside a function: a function-level import does not hide an arrow.
The test also fails when two units depend on each other, when units that must stay apart (the
two engines; training and evaluation) import one another, when the package imports the
``tools/`` scripts, when an import of the package's own modules inside a function says nothing
of why it is there, and when a unit has no rank. The checker is run on a small made-up package
first (the negative control), so a checker that finds nothing cannot pass unseen.
"""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = 'gfde_perception'

# Lowest first. Units of one rank never import each other; the sub-ranks inside the formats and
# tools layers say which way the one allowed arrow within that layer points.
LAYERS = (
    ('1 errors and shared constants', ('errors', 'choices')),
    ('2 building blocks', ('models', 'preprocessing', 'gating', 'stats', 'distillation',
                           'stamps', 'workspace')),
    ('3 formats', ('bundle', 'image_codec', 'feature_codec')),
    ('3 formats: split models, in the bundle container', ('split_bundle',)),
    ('3 formats: recorded data, whose images image_codec decodes', ('recording',)),
    ('4 engines', ('runtime', 'training')),
    ('5 tools over the engines', ('evaluation',)),
    ('5 tools: the command-line entry points', ('cli',)),
    ('6 the ROS shell', ('ros',)),
)
# Units that must not import each other in either direction, though their ranks would allow one
# way: evaluation measures bundles; it does not reach into how they were trained.
SEPARATE = (('training', 'evaluation'),)
# module -> imported module: the only exceptions, each with its reason.
EXCEPTIONS = {}


def _module_name(path: Path, root: Path, package: str) -> str:
    parts = list(path.relative_to(root).with_suffix('').parts)
    if parts[-1] == '__init__':
        parts = parts[:-1]
    return '.'.join([package] + parts)


def _resolve(node, module: str, is_package: bool, modules: set) -> list:
    """Absolute names of the modules an import statement brings in."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:  # relative import
        base = module.split('.')
        base = base[:len(base) - node.level + (1 if is_package else 0)]
        prefix = '.'.join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ''
    # 'from pkg import name': the module 'pkg.name' where that is one, else 'pkg' itself.
    named = [f'{prefix}.{alias.name}' for alias in node.names
             if f'{prefix}.{alias.name}' in modules]
    return named or [prefix]


def imports(root: Path, package: str) -> list:
    """
    Return ``(module, imported module, file, line, inside a function, commented)`` per import.

    ``commented`` is True when the import line, or the line above it, carries a comment.
    """
    found = []
    modules = {_module_name(path, root, package) for path in root.rglob('*.py')}
    for path in sorted(root.rglob('*.py')):
        module = _module_name(path, root, package)
        text = path.read_text()
        lines = text.splitlines()
        tree = ast.parse(text)
        nested = set()
        for func in ast.walk(tree):
            if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                nested.update(id(n) for n in ast.walk(func) if n is not func)
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            here = lines[node.lineno - 1]
            above = lines[node.lineno - 2].strip() if node.lineno > 1 else ''
            commented = '#' in here or above.startswith('#')
            for target in _resolve(node, module, path.name == '__init__.py', modules):
                found.append((module, target, str(path.relative_to(root)), node.lineno,
                              id(node) in nested, commented))
    return found


def unit_of(module: str, package: str):
    """Return the unit of a module of ``package`` ('runtime', 'errors', ...), or None."""
    parts = module.split('.')
    if parts[0] != package or len(parts) < 2:
        return None
    return parts[1]


def check(root: Path, package: str, layers=LAYERS, separate=SEPARATE, exceptions=None,
          tools=()) -> list:
    """Return every violation of the layering rules in the package at ``root``, as text."""
    exceptions = exceptions or {}
    rank = {unit: i for i, (_, units) in enumerate(layers) for unit in units}
    problems = []
    units_present = set()
    for path in root.rglob('*.py'):
        unit = unit_of(_module_name(path, root, package), package)
        if unit is not None:
            units_present.add(unit)
    for unit in sorted(units_present - set(rank)):
        problems.append(f'unit {unit!r} has no layer: add it to LAYERS')
    edges = {}
    for module, target, file, line, in_function, commented in imports(root, package):
        top = target.split('.')[0]
        if top in tools:
            problems.append(f'{file}:{line}: imports the tools/ script {top!r}')
        source_unit, target_unit = unit_of(module, package), unit_of(target, package)
        if target_unit is None or target_unit not in units_present:
            continue  # outside the package, or a name imported from its root
        if in_function and not commented:
            problems.append(f'{file}:{line}: function-level import of {target} without a '
                            'comment saying why it is not at the top')
        if source_unit is None or source_unit == target_unit:
            continue
        if (module, target) in exceptions:
            continue
        edges.setdefault((source_unit, target_unit), f'{file}:{line}')
        if source_unit in rank and target_unit in rank and \
                rank[target_unit] >= rank[source_unit]:
            where = 'a higher' if rank[target_unit] > rank[source_unit] else 'the same'
            problems.append(f'{file}:{line}: {source_unit} imports {target} from {where} '
                            f'layer ({layers[rank[target_unit]][0]!r})')
    for a, b in separate:
        for pair in ((a, b), (b, a)):
            if pair in edges:
                problems.append(f'{edges[pair]}: {pair[0]} imports {pair[1]}; the two must '
                                'stay apart')
    for (a, b), where in sorted(edges.items()):
        if a < b and (b, a) in edges:
            problems.append(f'{a} and {b} depend on each other ({where} and {edges[b, a]})')
    return problems


def _tool_names() -> tuple:
    return tuple(p.stem for p in (REPO / 'tools').glob('*.py')) + ('tools',)


def test_every_unit_is_in_a_layer_and_the_shell_is_on_top():
    names = {unit for _, units in LAYERS for unit in units}
    present = {unit_of(_module_name(p, REPO / PACKAGE, PACKAGE), PACKAGE)
               for p in (REPO / PACKAGE).rglob('*.py')} - {None}
    assert present <= names, f'units without a layer: {present - names}'
    assert LAYERS[-1][1] == ('ros',) and LAYERS[0][1][0] == 'errors'


def test_the_package_keeps_its_layers():
    problems = check(REPO / PACKAGE, PACKAGE, exceptions=EXCEPTIONS, tools=_tool_names())
    assert not problems, 'layering violations:\n' + '\n'.join(problems)


def test_the_exceptions_are_still_needed():
    # An exception whose import has gone must leave the list, so the list stays true.
    present = {(m, t) for m, t, *_ in imports(REPO / PACKAGE, PACKAGE)}
    assert set(EXCEPTIONS) <= present, set(EXCEPTIONS) - present


def _write(root: Path, files: dict):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_negative_control_the_checker_finds_each_kind_of_violation(tmp_path):
    pkg = tmp_path / 'fakepkg'
    _write(pkg, {
        '__init__.py': '',
        'errors.py': '',
        'gating.py': 'from fakepkg import errors\n',  # fine: downwards
        'runtime/__init__.py': '',
        # Upwards, hidden in a function: still an arrow.
        'runtime/worker.py': 'def f():\n    # lazy: needs the node\n'
                             '    from fakepkg.ros import node\n',
        'runtime/engine.py': 'from fakepkg.training import loop\n',  # same layer
        'training/__init__.py': '',
        'training/loop.py': 'from fakepkg.evaluation import report\n',
        'evaluation/__init__.py': '',
        'evaluation/report.py': 'def g():\n    from fakepkg.training import loop\n',
        'ros/__init__.py': '',
        'ros/node.py': 'import bench_node\nfrom fakepkg.runtime import worker\n',
        'extra.py': '',
    })
    problems = check(pkg, 'fakepkg', tools=('bench_node',))
    text = '\n'.join(problems)
    assert "unit 'extra' has no layer" in text
    assert 'runtime/worker.py:3: runtime imports fakepkg.ros.node from a higher layer' in text
    assert 'runtime/engine.py:1: runtime imports fakepkg.training.loop from the same layer' \
        in text
    assert 'training/loop.py:1: training imports fakepkg.evaluation.report from a higher' \
        in text
    assert 'evaluation and training depend on each other' in text
    assert 'training imports evaluation; the two must stay apart' in text
    assert 'evaluation/report.py:2: function-level import of fakepkg.training.loop without ' \
        'a comment' in text
    assert "ros/node.py:1: imports the tools/ script 'bench_node'" in text
    assert 'ros and runtime depend on each other' in text
    assert len(problems) == 10, text
    # The commented one is reviewed: only its arrow is reported, not its place.
    assert not any('worker.py' in p and 'without a comment' in p for p in problems)
    assert not any('gating.py' in p for p in problems)
    # The same package with the arrows pointing down is clean.
    _write(pkg, {'runtime/worker.py': '', 'runtime/engine.py': '', 'training/loop.py': '',
                 'evaluation/report.py': 'from fakepkg.runtime import worker\n',
                 'ros/node.py': 'from fakepkg.runtime import worker\n'})
    (pkg / 'extra.py').unlink()
    assert check(pkg, 'fakepkg', tools=('bench_node',)) == []
