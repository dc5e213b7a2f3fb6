# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
The ROS workspace this package runs in: its share files, the DDS environment, node processes.

ROS-free (no rclpy, no message packages), so that the offline tools, the live evaluation, the
demo and the tests start classifier nodes and find installed files the same way:

* :func:`share_path`: a file that colcon installs to ``share/<package>/``, found in the install
  prefixes of ``AMENT_PREFIX_PATH`` first, then in the source checkout;
* :func:`dds_environment`: DDS discovery kept on this host and the Fast DDS profile for large
  images (frames above the default 512 KiB shared-memory segment are lost without it);
* :func:`node_command`, :func:`start_node` and :func:`stop_node`: a ``classifier_node`` as a
  child process, stopped by its own PID.
"""

import os
from pathlib import Path
import signal
import subprocess
import sys
from typing import Mapping, Optional, Sequence

PACKAGE = 'gfde_perception'
SOURCE_ROOT = Path(__file__).resolve().parents[1]  # the repository root in a source checkout
LARGE_IMAGE_PROFILE = 'config/fastdds_large_images.xml'
NODE_MODULE = 'gfde_perception.ros.node'


def share_path(package: str, relative: str) -> Optional[Path]:
    """
    Return ``share/<package>/<relative>`` from an install prefix or the source checkout.

    The first prefix of ``AMENT_PREFIX_PATH`` that has the file wins; without one, the file in
    the source checkout (``gfde_msgs`` sits inside this repository); None when neither has it.

    :param package: 'gfde_perception' or 'gfde_msgs'.
    :param relative: path inside the package's share folder, e.g. 'msg/Classification.msg'.
    """
    for prefix in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep):
        if prefix:
            candidate = Path(prefix) / 'share' / package / relative
            if candidate.exists():
                return candidate
    source = SOURCE_ROOT if package == PACKAGE else SOURCE_ROOT / package
    candidate = source / relative
    return candidate if candidate.exists() else None


def dds_environment(base: Optional[Mapping[str, str]] = None) -> dict:
    """
    Return ``base`` (default ``os.environ``) with what a process needs to reach the node here.

    Values already set win: ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` (nothing leaves this
    host), ``PYTHONUNBUFFERED=1`` (child logs arrive line by line) and
    ``FASTDDS_DEFAULT_PROFILES_FILE`` pointing at the large-image profile, installed or in the
    source checkout.
    """
    env = dict(os.environ if base is None else base)
    env.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    env.setdefault('PYTHONUNBUFFERED', '1')
    if 'FASTDDS_DEFAULT_PROFILES_FILE' not in env:
        profile = share_path(PACKAGE, LARGE_IMAGE_PROFILE)
        if profile is not None:
            env['FASTDDS_DEFAULT_PROFILES_FILE'] = str(profile)
    return env


def node_command(params: Mapping[str, object] = None, namespace: str = '',
                 node_name: str = '', remaps: Sequence[str] = ()) -> list:
    """
    Return the command line of a ``classifier_node`` run by this Python interpreter.

    :param params: parameter name -> value, passed as ``-p name:=value`` (lists as YAML).
    :param namespace: node namespace (``__ns``), '' for none.
    :param node_name: node name (``__node``), '' for the default.
    :param remaps: further ``from:=to`` remappings.
    """
    argv = [sys.executable, '-m', NODE_MODULE, '--ros-args']
    rules = ([f'__ns:={namespace}'] if namespace else []) + (
        [f'__node:={node_name}'] if node_name else []) + list(remaps)
    for rule in rules:
        argv += ['-r', rule]
    for key, value in (params or {}).items():
        if isinstance(value, (list, tuple)):
            value = '[' + ', '.join(repr(v) for v in value) + ']'
        argv += ['-p', f'{key}:={value}']
    return argv


def start_node(argv: Sequence[str], stdout=None, env: Optional[Mapping[str, str]] = None):
    """
    Start ``argv`` (see :func:`node_command`) in the DDS environment; return the Popen.

    :param stdout: a file to write the node's output to (stderr included); None = a pipe.
    :param env: environment to extend with :func:`dds_environment` (default ``os.environ``).
    """
    return subprocess.Popen(list(argv), env=dds_environment(env),
                            stdout=subprocess.PIPE if stdout is None else stdout,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            text=stdout is None)


def stop_node(process, timeout: float = 10.0) -> Optional[int]:
    """SIGINT (the node's clean shutdown), then SIGKILL after ``timeout`` s; return the status."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)
    return process.returncode
