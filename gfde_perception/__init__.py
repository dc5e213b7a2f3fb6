# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
gfde_perception: early-exit GFNet image classification for robots.

The package is a ROS-free core (models, training, runtime, evaluation) under a thin rclpy shell
(`gfde_perception.ros`). Importing the core never imports rclpy, message packages, CUDA or
TensorRT.
"""

__version__ = '0.1.0'
