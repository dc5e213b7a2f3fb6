# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Launch the robot side of split inference (``split_robot_node``).

Arguments (``ros2 launch gfde_perception split_robot.launch.py --show-args``):

* ``camera_topic``: topic the node's ``image`` input is remapped to (default ``image``);
* ``namespace``: namespace of the node; its ``split/features`` and ``split/result`` topics
  are relative, so the server must run in the same namespace (or remap them);
* ``node_name``: name of the node;
* ``bundle``: the split bundle (.gfde); empty = the embedded one. The server must load the
  same file (packets carry its id, a server refuses others);
* ``deadline_ms``: how long the server has before the robot answers with its best local
  result;
* ``params_file``: YAML parameters (default: this package's ``config/split_robot.yaml``).

Arguments win over ``params_file``. The file only describes what to start (no environment
changes, nothing runs at import), so a robot's bringup can include it. Between two machines
both processes need the same ``ROS_DOMAIN_ID`` and a DDS transport that reaches the other
machine; docs/SPLIT.md shows the set-up with ``config/fastdds_udp_only.xml``.
"""

from gfde_perception.ros.launch_support import node_arguments, node_settings
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

EXECUTABLE = 'split_robot_node'


def generate_launch_description():
    """Describe the robot-side split node and its launch arguments."""
    deadline = DeclareLaunchArgument('deadline_ms', default_value='250.0',
                                     description='Server deadline before the local fallback '
                                                 '(ms).')
    arguments = node_arguments(
        'gfde_split_robot', 'split_robot.yaml',
        namespace_help='Namespace shared with the server node.',
        bundle_help='Split bundle (.gfde); empty = embedded one.',
        extra=(deadline,))
    node = Node(executable=EXECUTABLE, **node_settings({
        'deadline_ms': ParameterValue(LaunchConfiguration('deadline_ms'), value_type=float)}))
    return LaunchDescription(arguments + [node])
