# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Shared pytest fixtures: DDS isolation, an rclpy context, and installed node processes.

Every test run gets its own ROS_DOMAIN_ID and keeps discovery on this host, set in os.environ
before anything initialises rclpy, so tests never talk to another run or leave the loopback.
"""

import importlib.util
import os
from pathlib import Path
import random
import shutil
import signal
import subprocess
import sys
import time

from gfde_perception.workspace import dds_environment
import pytest

REPO = Path(__file__).resolve().parents[1]
INSTALL = REPO / 'install'


def _pick_domain_id() -> int:
    # GFDE_TEST_DOMAIN_ID pins it (e.g. to reproduce); otherwise a random domain in 1..101, so
    # that parallel runs on one machine almost never share a domain.
    pinned = os.environ.get('GFDE_TEST_DOMAIN_ID')
    if pinned:
        return int(pinned)
    return random.SystemRandom().randint(1, 101)


def _dds_environment() -> dict:
    # The package's own set-up (loopback discovery, the large-image profile), plus this run's
    # domain, the RMW the wheels provide and plain logs from child processes.
    return dds_environment({
        'ROS_DOMAIN_ID': str(_pick_domain_id()),
        'RMW_IMPLEMENTATION': 'rmw_fastrtps_cpp',
        'RCUTILS_COLORIZED_OUTPUT': '0',
    })


# Applied at import time: rclpy reads these when a context is initialised.
DDS_ENV = _dds_environment()
os.environ.update(DDS_ENV)


def pytest_report_header(config):
    return (f"DDS: ROS_DOMAIN_ID={DDS_ENV['ROS_DOMAIN_ID']} "
            f"ROS_AUTOMATIC_DISCOVERY_RANGE={DDS_ENV['ROS_AUTOMATIC_DISCOVERY_RANGE']} "
            f"profile={DDS_ENV.get('FASTDDS_DEFAULT_PROFILES_FILE', 'none')}")


def clean_dds_shared_memory():
    """
    Remove Fast DDS shared-memory segments that no live process holds.

    ``fastdds shm clean`` only deletes segments whose lock is free, so segments of running
    participants (ours or anyone else's) are left alone.
    """
    tool = shutil.which('fastdds')
    if tool:
        subprocess.run([tool, 'shm', 'clean'], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=30, check=False)


@pytest.fixture(scope='session')
def ros_env():
    """Return the DDS environment of this test run (already applied to os.environ)."""
    return dict(DDS_ENV)


@pytest.fixture(scope='session', autouse=True)
def _dds_shm_cleanup():
    yield
    clean_dds_shared_memory()


@pytest.fixture
def rclpy_context():
    """
    Yield an initialised rclpy Context of its own; shut it down afterwards.

    rclpy is imported here, not at the top, so that the ROS-free tiers run without it; where a
    test asks for ROS, a missing rclpy fails that test instead of skipping it unseen.
    """
    import rclpy
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        if context.ok():
            rclpy.shutdown(context=context)


class NodeProcess:
    """A process started by a test; stopped by its PID only."""

    def __init__(self, argv, env, log_path):
        self.argv = argv
        self.log_path = log_path
        self._log = open(log_path, 'wb')
        self.popen = subprocess.Popen(argv, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL)

    @property
    def pid(self):
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        self._log.flush()
        return Path(self.log_path).read_text(errors='replace')

    def wait_for_output(self, text: str, timeout: float = 30.0) -> bool:
        """Wait until ``text`` appears in the process output; False on timeout or exit."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return True
            if not self.running():
                return text in self.output()
            time.sleep(0.1)
        return False

    def stop(self, timeout: float = 10.0) -> int:
        """SIGINT (a clean rclpy shutdown), then SIGKILL if it does not exit in time."""
        if self.running():
            os.kill(self.popen.pid, signal.SIGINT)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=timeout)
        self._log.close()
        return self.popen.returncode


def tool_module(name: str):
    """
    Import the script ``tools/<name>.py`` as a module, from its path.

    The scripts are not a package (they are the top layer, nothing imports them); loading one by
    path leaves ``sys.path`` as it is, so no test can make another import from ``tools/``.
    """
    path = REPO / 'tools' / f'{name}.py'
    spec = importlib.util.spec_from_file_location(f'gfde_tools_{name}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def installed_executable(name: str) -> Path:
    """Return the path of an executable installed by colcon into lib/gfde_perception."""
    path = INSTALL / 'gfde_perception' / 'lib' / 'gfde_perception' / name
    if not path.exists():
        pytest.fail(f'{path} is missing: run tools/setup.sh (colcon build) first')
    return path


def workspace_env(extra=None) -> dict:
    """Environment for a child process: this run's DDS settings and the built workspace."""
    env = dict(os.environ)
    env.update(DDS_ENV)
    prefixes = [str(INSTALL / 'gfde_msgs'), str(INSTALL / 'gfde_perception')]
    lib = [str(INSTALL / 'gfde_msgs' / 'lib')]
    site = sorted(str(p) for p in INSTALL.glob('*/lib/python3*/site-packages'))
    env['AMENT_PREFIX_PATH'] = os.pathsep.join(prefixes + [sys.prefix]
                                               + [env.get('AMENT_PREFIX_PATH', '')]).rstrip(':')
    env['LD_LIBRARY_PATH'] = os.pathsep.join(lib + [env.get('LD_LIBRARY_PATH', '')]).rstrip(':')
    env['PYTHONPATH'] = os.pathsep.join([str(REPO)] + site
                                        + [env.get('PYTHONPATH', '')]).rstrip(':')
    env.update(extra or {})
    return env


@pytest.fixture
def node_process(tmp_path):
    """
    Start installed executables (or any argv) as subprocesses; stop them at teardown.

    ``node_process('classifier_node', args=[...], env_extra={})`` runs
    ``install/gfde_perception/lib/gfde_perception/classifier_node`` with this run's DDS
    environment; ``node_process(argv=[sys.executable, script])`` runs any command the same way.
    """
    started = []

    def start(executable=None, args=(), env_extra=None, argv=None):
        if argv is None:
            argv = [sys.executable, str(installed_executable(executable))] + list(args)
        log_path = tmp_path / f'process-{len(started)}.log'
        proc = NodeProcess(list(argv), workspace_env(env_extra), log_path)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()
