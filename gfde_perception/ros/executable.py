# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
The process of every node executable: how it spins its node and how old it is.

:func:`spin_node` is the body of each node's ``main`` (classifier, lifecycle, split robot and
server); :func:`process_age_s` dates the start-up log lines from the moment the process began.
"""

import math
import os
import sys
from typing import Callable

from gfde_perception.errors import GfdeError
import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor


def process_age_s() -> float:
    """Return the seconds since this process started (NaN where ``/proc`` cannot tell)."""
    try:
        with open('/proc/self/stat', encoding='ascii') as f:
            # Fields after the command name, which is in parentheses and may hold spaces;
            # the 22nd field of the line, the start time in clock ticks, is the 20th here.
            ticks = int(f.read().rsplit(')', 1)[1].split()[19])
        with open('/proc/uptime', encoding='ascii') as f:
            uptime = float(f.read().split()[0])
        return uptime - ticks / os.sysconf('SC_CLK_TCK')
    except (OSError, ValueError, IndexError):
        return math.nan


def spin_node(node_factory: Callable, args=None) -> int:
    """Init rclpy, build a node, spin it on a SingleThreadedExecutor until shutdown."""
    rclpy.init(args=args)
    node = None
    try:
        node = node_factory()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except GfdeError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 1
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0
