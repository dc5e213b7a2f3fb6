# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
The command-line tools of gfde_perception, one module per console script.

``gfde-model`` (:mod:`.model`), ``gfde-train`` (:mod:`.train`), ``gfde-infer`` (:mod:`.infer`),
``gfde-eval`` (:mod:`.evaluate`) and ``gfde-make-bag`` (:mod:`.make_bag`). The ROS executables
are the ``main`` functions of :mod:`gfde_perception.ros.node` and
:mod:`gfde_perception.ros.lifecycle_node`.
"""
