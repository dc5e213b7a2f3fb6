# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
The managed (lifecycle) classifier node, for stacks brought up by a lifecycle manager.

Transitions:

* configure: load the model (``model.*`` parameters), create the publishers and subscriptions;
  frames that arrive while inactive are counted (``dropped.inactive``) and discarded;
* activate: start the inference worker; results and diagnostics are published; only frames the
  transport received after this moment are ever classified;
* deactivate: stop the worker (frames waiting and frames arriving count as inactive);
* cleanup: destroy the subscriptions and publishers and free the model;
* shutdown: as cleanup, from any state.

Parameters are declared at construction, so they can be set before configure. Those a reload
needs (``model.*``, topics, QoS, the diagnostics period) are writable here, but only while
unconfigured, and take effect at the next configure: cleanup, set ``model.bundle``, configure
switches the model.
"""

import sys
from typing import Callable, Optional

from diagnostic_msgs.msg import DiagnosticArray
from gfde_msgs.msg import Classification
from gfde_perception.errors import GfdeError
from gfde_perception.ros import parameters as params
from gfde_perception.ros.executable import spin_node
from gfde_perception.ros.node import (ClassifierNodeMixin, DEFAULT_NODE_NAME,
                                      DIAGNOSTICS_TOPIC, OUTPUT_TOPIC)
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn


class ClassifierLifecycleNode(ClassifierNodeMixin, LifecycleNode):
    """
    Lifecycle variant of :class:`~gfde_perception.ros.node.ClassifierNode`.

    :param classifier_factory: ``factory(values) -> classifier`` called at configure with the
        parameter values; None loads the bundle the ``model.*`` parameters name. Classifiers it
        returns are owned by the node and closed at cleanup.
    :param node_name: name of the node.
    :param kwargs: passed to ``rclpy.lifecycle.LifecycleNode``.
    """

    def __init__(self, classifier_factory: Optional[Callable] = None,
                 node_name: str = DEFAULT_NODE_NAME, **kwargs):
        super().__init__(node_name, **kwargs)
        self._factory = classifier_factory or params.build_classifier
        self._setup_parameters(reload_read_only=False)
        self.get_logger().info('classifier lifecycle node created (unconfigured)')

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            classifier = self._load_classifier(self._factory)
        except (GfdeError, OSError) as exc:
            self.get_logger().error(f'configure failed: cannot load the model: {exc}')
            return TransitionCallbackReturn.FAILURE
        try:
            self._attach_classifier(classifier)
        except GfdeError as exc:
            classifier.close()
            self.get_logger().error(f'configure failed: {exc}')
            return TransitionCallbackReturn.FAILURE
        self._publisher = self.create_lifecycle_publisher(
            Classification, OUTPUT_TOPIC, params.qos_profile(self.values, 'output'))
        self._diag_publisher = self.create_lifecycle_publisher(
            DiagnosticArray, DIAGNOSTICS_TOPIC, 10)
        self._create_subscriptions()
        self._diag_timer = self.create_timer(self.values['diagnostics.period_s'],
                                             self._diagnostics_tick)
        info = self.describe()
        self.get_logger().info(f"configured: backend={info['backend']} "
                               f"exits={info['num_exits']} topics=[{info['topics']}]")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        outcome = super().on_activate(state)  # the lifecycle publishers first
        if outcome == TransitionCallbackReturn.SUCCESS:
            # From now on frames are accepted; anything received before stays discarded.
            self.worker.start()
            self.get_logger().info('active')
        return outcome

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        # The frame in inference is published while the publisher is still enabled.
        self.worker.stop()
        self.get_logger().info('inactive')
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._teardown()
        self.get_logger().info('cleaned up (model freed)')
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def _teardown(self):
        worker, self.worker = self.worker, None
        if worker is not None:
            worker.stop()
        self._release_io()
        for attr in ('_publisher', '_diag_publisher'):
            publisher = getattr(self, attr)
            if publisher is not None:
                self.destroy_lifecycle_publisher(publisher)
                setattr(self, attr, None)
        classifier, self.classifier = self.classifier, None
        if classifier is not None:
            classifier.close()

    def destroy_node(self):
        """Free everything, then destroy the node."""
        self._teardown()
        return super().destroy_node()


def main(args=None) -> int:
    """Entry point of the ``classifier_lifecycle_node`` executable (starts unconfigured)."""
    return spin_node(ClassifierLifecycleNode, args)


if __name__ == '__main__':
    sys.exit(main())
