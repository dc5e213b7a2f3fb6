# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Launch the server side of split inference (``split_server_node``) on the edge server.

Arguments (``ros2 launch gfde_perception split_server.launch.py --show-args``):

* ``namespace``: namespace of the node, the robot node's namespace (the ``split/features`` and
  ``split/result`` topics are relative);
* ``node_name``: name of the node;
* ``bundle``: the split bundle (.gfde); empty = the embedded one; the same file as the robot's;
* ``params_file``: YAML parameters (default: this package's ``config/split_server.yaml``).

Arguments win over ``params_file``. No side effects: another launch file can include this one.
One server can serve several robots, one node per robot namespace.
"""

from gfde_perception.ros.launch_support import node_arguments, node_settings
from launch import LaunchDescription
from launch_ros.actions import Node

EXECUTABLE = 'split_server_node'


def generate_launch_description():
    """Describe the server-side split node and its launch arguments."""
    arguments = node_arguments(
        'gfde_split_server', 'split_server.yaml',
        namespace_help="Namespace of the robot's split node.",
        bundle_help='Split bundle (.gfde); empty = embedded one.', camera=False)
    node = Node(executable=EXECUTABLE, **node_settings(camera=False))
    return LaunchDescription(arguments + [node])
