# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""Linters in the ament style: ament_flake8 (99 columns), ament_pep257, package.xml checks."""

from pathlib import Path
import shutil
import subprocess

import pytest

REPO = Path(__file__).resolve().parents[1]
PYTHON_PATHS = ['gfde_perception', 'launch', 'test', 'tools', 'setup.py']
LICENSE_MARK = 'SPDX-License-Identifier: Apache-2.0'


def _python_files():
    files = []
    for entry in PYTHON_PATHS:
        path = REPO / entry
        files.extend([path] if path.is_file() else sorted(path.rglob('*.py')))
    return [f for f in files if '__pycache__' not in f.parts]


@pytest.mark.linter
def test_flake8():
    from ament_flake8.main import main_with_errors
    rc, errors = main_with_errors(argv=[str(p) for p in _python_files()])
    assert rc == 0, f'{len(errors)} flake8 error(s):\n' + '\n'.join(errors[:50])


@pytest.mark.linter
def test_pep257():
    from ament_pep257.main import main
    rc = main(argv=[str(p) for p in _python_files()])
    assert rc == 0, 'ament_pep257 found docstring errors (listed above)'


@pytest.mark.linter
def test_every_python_file_has_the_license_header():
    missing = [str(f.relative_to(REPO)) for f in _python_files()
               if LICENSE_MARK not in f.read_text()[:400]]
    assert not missing, f'files without the Apache-2.0 header: {missing}'


@pytest.mark.linter
@pytest.mark.parametrize('manifest', ['package.xml', 'gfde_msgs/package.xml'])
def test_package_xml_is_well_formed_format_3(manifest):
    xmllint = shutil.which('xmllint')
    assert xmllint, 'xmllint is missing (Debian package libxml2-utils; tools/setup.sh installs it)'
    result = subprocess.run([xmllint, '--noout', str(REPO / manifest)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    # catkin_pkg applies the REP 149 (format 3) rules that the XSD encodes, and more.
    from catkin_pkg.package import parse_package
    package = parse_package(str(REPO / manifest))
    assert package.package_format == 3
    package.validate()


@pytest.mark.linter
def test_package_xml_declares_the_runtime_dependencies():
    from catkin_pkg.package import parse_package
    package = parse_package(str(REPO / 'package.xml'))
    exec_deps = {d.name for d in package.exec_depends}
    needed = {'rclpy', 'sensor_msgs', 'std_msgs', 'diagnostic_msgs', 'gfde_msgs', 'launch_ros',
              'python3-numpy', 'python3-opencv'}
    assert needed <= exec_deps, f'missing exec_depend: {sorted(needed - exec_deps)}'
    assert package.get_build_type() == 'ament_python'
