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

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = 'gfde_perception'
EXECUTABLE = 'split_server_node'


def generate_launch_description():
    """Describe the server-side split node and its launch arguments."""
    default_params = os.path.join(get_package_share_directory(PACKAGE), 'config',
                                  'split_server.yaml')
    arguments = [
        DeclareLaunchArgument('namespace', default_value='',
                              description="Namespace of the robot's split node."),
        DeclareLaunchArgument('node_name', default_value='gfde_split_server',
                              description='Name of the node.'),
        DeclareLaunchArgument('bundle', default_value='',
                              description='Split bundle (.gfde); empty = embedded one.'),
        DeclareLaunchArgument('params_file', default_value=default_params,
                              description='YAML file with the node parameters.'),
    ]
    node = Node(
        package=PACKAGE, executable=EXECUTABLE, name=LaunchConfiguration('node_name'),
        namespace=LaunchConfiguration('namespace'), output='screen',
        parameters=[LaunchConfiguration('params_file'),
                    {'model.bundle': LaunchConfiguration('bundle')}])
    return LaunchDescription(arguments + [node])
