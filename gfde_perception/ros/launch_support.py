# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
What the package's launch files share: the launch arguments and settings of one node.

``launch/edge.launch.py``, ``launch/split_robot.launch.py`` and ``launch/split_server.launch.py``
each start one node of this package with the same arguments (``camera_topic``, ``namespace``,
``node_name``, ``bundle``, ``params_file``) wired the same way; each declares what only it has
(``backend``, ``managed``, ``deadline_ms``) and hands it in. ``ros2 launch`` imports this module
from the installed package. It only builds descriptions: nothing runs at import or when a
function is called, so the launch files stay includable from other launch files.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration

PACKAGE = 'gfde_perception'


def node_arguments(node_name: str, params_file: str, *, namespace_help: str, bundle_help: str,
                   camera: bool = True, extra: tuple = ()) -> list:
    """
    Return the launch arguments of one node, in the order ``--show-args`` lists them.

    ``camera_topic`` (only with ``camera``), ``namespace``, ``node_name``, ``bundle``, the
    launch file's own ``extra`` arguments, then ``params_file``.

    :param node_name: default of ``node_name``.
    :param params_file: default YAML file, by name in this package's ``config/`` folder.
    :param namespace_help: description of ``namespace`` (what must share it).
    :param bundle_help: description of ``bundle`` (which kind of bundle).
    """
    default_params = os.path.join(get_package_share_directory(PACKAGE), 'config', params_file)
    camera_topic = [DeclareLaunchArgument(
        'camera_topic', default_value='image',
        description='Camera topic remapped onto the input "image".')] if camera else []
    return camera_topic + [
        DeclareLaunchArgument('namespace', default_value='', description=namespace_help),
        DeclareLaunchArgument('node_name', default_value=node_name,
                              description='Name of the node.'),
        DeclareLaunchArgument('bundle', default_value='', description=bundle_help),
        *extra,
        DeclareLaunchArgument('params_file', default_value=default_params,
                              description='YAML file with the node parameters.'),
    ]


def node_settings(overrides: dict = None, camera: bool = True) -> dict:
    """
    Return the keyword arguments of a ``Node`` or ``LifecycleNode`` for :func:`node_arguments`.

    Package, name, namespace and screen output; parameters: ``params_file``, then
    ``model.bundle`` and ``overrides`` (parameter name -> value), which win over the file;
    with ``camera``, the node's ``image`` input remapped onto ``camera_topic``.
    """
    settings = {
        'package': PACKAGE,
        'name': LaunchConfiguration('node_name'),
        'namespace': LaunchConfiguration('namespace'),
        'parameters': [LaunchConfiguration('params_file'),
                       {'model.bundle': LaunchConfiguration('bundle'), **(overrides or {})}],
        'output': 'screen',
    }
    if camera:
        settings['remappings'] = [('image', LaunchConfiguration('camera_topic'))]
    return settings
