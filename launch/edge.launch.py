# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Launch the gfde_perception classifier on a robot: plain or managed (lifecycle) node.

Arguments (``ros2 launch gfde_perception edge.launch.py --show-args``):

* ``camera_topic``: topic the node's ``image`` input is remapped to (default ``image``); more
  cameras go in the ``topics`` parameter of the params file;
* ``namespace``: namespace of the node (and of its relative topics);
* ``node_name``: name of the node;
* ``bundle``: path of a ``.gfde`` model bundle; empty = the embedded default model;
* ``backend``: backbone backend: auto, tensorrt, cuda, torch, torch-compile, onnxruntime;
* ``params_file``: YAML parameters (default: this package's ``config/edge.yaml``);
* ``managed``: ``true`` starts the lifecycle node (unconfigured: a lifecycle manager brings it
  up), ``false`` the plain node.

``bundle`` and ``backend`` are applied after ``params_file`` and therefore win over it. The
file only describes what to start (no environment changes, no processes at import), so another
launch file can include it with ``IncludeLaunchDescription``. Big images between processes need
the Fast DDS profile ``config/fastdds_large_images.xml`` in the camera driver's environment:
see docs/NODE.md.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node

PACKAGE = 'gfde_perception'
NODE_EXECUTABLE = 'classifier_node'
LIFECYCLE_EXECUTABLE = 'classifier_lifecycle_node'


def generate_launch_description():
    """Describe the classifier node and its launch arguments."""
    default_params = os.path.join(get_package_share_directory(PACKAGE), 'config', 'edge.yaml')
    arguments = [
        DeclareLaunchArgument('camera_topic', default_value='image',
                              description='Camera topic remapped onto the input "image".'),
        DeclareLaunchArgument('namespace', default_value='',
                              description='Namespace of the node and its relative topics.'),
        DeclareLaunchArgument('node_name', default_value='gfde_classifier',
                              description='Name of the node.'),
        DeclareLaunchArgument('bundle', default_value='',
                              description='Model bundle (.gfde); empty = embedded default.'),
        DeclareLaunchArgument('backend', default_value='auto',
                              description='auto, tensorrt, cuda, torch, torch-compile or '
                                          'onnxruntime.'),
        DeclareLaunchArgument('params_file', default_value=default_params,
                              description='YAML file with the node parameters.'),
        DeclareLaunchArgument('managed', default_value='false',
                              description='true: lifecycle node (needs a lifecycle manager); '
                                          'false: plain node.'),
    ]
    parameters = [
        LaunchConfiguration('params_file'),
        {'model.bundle': LaunchConfiguration('bundle'),
         'model.backend': LaunchConfiguration('backend')},
    ]
    remappings = [('image', LaunchConfiguration('camera_topic'))]
    common = {
        'package': PACKAGE,
        'name': LaunchConfiguration('node_name'),
        'namespace': LaunchConfiguration('namespace'),
        'parameters': parameters,
        'remappings': remappings,
        'output': 'screen',
    }
    plain = Node(executable=NODE_EXECUTABLE,
                 condition=UnlessCondition(LaunchConfiguration('managed')), **common)
    managed = LifecycleNode(executable=LIFECYCLE_EXECUTABLE,
                            condition=IfCondition(LaunchConfiguration('managed')), **common)
    return LaunchDescription(arguments + [plain, managed])
