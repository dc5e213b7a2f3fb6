# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""ament_python package definition for gfde_perception."""

from glob import glob

from setuptools import find_packages, setup

package_name = 'gfde_perception'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'test.*']),
    package_data={package_name: ['data/*.gfde', 'data/baselines/*.gfde', 'data/*.json']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        ('share/' + package_name + '/launch', glob('launch/*.launch.py')),
        ('share/' + package_name + '/config', glob('config/*.yaml') + glob('config/*.xml')),
    ],
    install_requires=['setuptools'],
    zip_safe=False,
    maintainer='gfde_perception maintainers',
    maintainer_email='maintainers@gfde-perception.dev',
    description='Early-exit GFNet image classification for ROS 2 on edge hardware.',
    license='Apache-2.0',
    tests_require=['pytest'],
    entry_points={
        'console_scripts': [
            # ROS executables: `ros2 run gfde_perception <name>`.
            'classifier_node = gfde_perception.ros.node:main',
            'classifier_lifecycle_node = gfde_perception.ros.lifecycle_node:main',
            'split_robot_node = gfde_perception.ros.split_robot_node:main',
            'split_server_node = gfde_perception.ros.split_server_node:main',
            # Tools, all in gfde_perception/cli/.
            'gfde-model = gfde_perception.cli.model:main',
            'gfde-train = gfde_perception.cli.train:main',
            'gfde-infer = gfde_perception.cli.infer:main',
            'gfde-eval = gfde_perception.cli.evaluate:main',
            'gfde-make-bag = gfde_perception.cli.make_bag:main',
        ],
    },
)
