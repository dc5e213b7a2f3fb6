# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Evaluation on recorded data: offline and live replay, reports, plots, results written back.

Bags are read and written through :mod:`gfde_perception.recording`; the ``gfde-eval`` command is
:mod:`gfde_perception.cli.evaluate`. Only :mod:`gfde_perception.evaluation.live` touches
``rclpy`` (inside the function that publishes).
"""
