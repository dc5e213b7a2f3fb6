# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Evaluation on recorded data: rosbag2 reading and writing, replay, reports and plots.

Nothing here imports ROS at module import: bags are read and written with the pure-Python
``rosbags`` library, and only :mod:`gfde_perception.evaluation.live` touches ``rclpy`` (inside the
function that publishes).
"""
