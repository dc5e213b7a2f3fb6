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

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

PACKAGE = 'gfde_perception'
EXECUTABLE = 'split_robot_node'


def generate_launch_description():
    """Describe the robot-side split node and its launch arguments."""
    default_params = os.path.join(get_package_share_directory(PACKAGE), 'config',
                                  'split_robot.yaml')
    arguments = [
        DeclareLaunchArgument('camera_topic', default_value='image',
                              description='Camera topic remapped onto the input "image".'),
        DeclareLaunchArgument('namespace', default_value='',
                              description='Namespace shared with the server node.'),
        DeclareLaunchArgument('node_name', default_value='gfde_split_robot',
                              description='Name of the node.'),
        DeclareLaunchArgument('bundle', default_value='',
                              description='Split bundle (.gfde); empty = embedded one.'),
        DeclareLaunchArgument('deadline_ms', default_value='250.0',
                              description='Server deadline before the local fallback (ms).'),
        DeclareLaunchArgument('params_file', default_value=default_params,
                              description='YAML file with the node parameters.'),
    ]
    node = Node(
        package=PACKAGE, executable=EXECUTABLE, name=LaunchConfiguration('node_name'),
        namespace=LaunchConfiguration('namespace'), output='screen',
        parameters=[LaunchConfiguration('params_file'),
                    {'model.bundle': LaunchConfiguration('bundle'),
                     'deadline_ms': ParameterValue(LaunchConfiguration('deadline_ms'),
                                                   value_type=float)}],
        remappings=[('image', LaunchConfiguration('camera_topic'))])
    return LaunchDescription(arguments + [node])
