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

from gfde_perception.ros.launch_support import node_arguments, node_settings
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node

NODE_EXECUTABLE = 'classifier_node'
LIFECYCLE_EXECUTABLE = 'classifier_lifecycle_node'


def generate_launch_description():
    """Describe the classifier node and its launch arguments."""
    backend = DeclareLaunchArgument('backend', default_value='auto',
                                    description='auto, tensorrt, cuda, torch, torch-compile or '
                                                'onnxruntime.')
    managed = DeclareLaunchArgument('managed', default_value='false',
                                    description='true: lifecycle node (needs a lifecycle '
                                                'manager); false: plain node.')
    arguments = node_arguments(
        'gfde_classifier', 'edge.yaml',
        namespace_help='Namespace of the node and its relative topics.',
        bundle_help='Model bundle (.gfde); empty = embedded default.',
        extra=(backend,)) + [managed]
    settings = node_settings({'model.backend': LaunchConfiguration('backend')})
    plain = Node(executable=NODE_EXECUTABLE,
                 condition=UnlessCondition(LaunchConfiguration('managed')), **settings)
    lifecycle = LifecycleNode(executable=LIFECYCLE_EXECUTABLE,
                              condition=IfCondition(LaunchConfiguration('managed')), **settings)
    return LaunchDescription(arguments + [plain, lifecycle])
