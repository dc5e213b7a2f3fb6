# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
The ROS 2 shell of gfde_perception: conversions, the classifier node and its lifecycle variant.

This is the only package that imports rclpy and message packages; the modules are imported
explicitly (``gfde_perception.ros.node``), so importing the package itself stays cheap.
"""
