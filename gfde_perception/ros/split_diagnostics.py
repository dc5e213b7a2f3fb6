# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""The split nodes' ``/diagnostics`` entry: static facts and event counters as key-values."""

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from gfde_perception.ros.diagnostics import build_array


def publish_counts(node, publisher, name: str, counts: dict, info: dict) -> None:
    """
    Publish one DiagnosticStatus of static facts and ``count.<event>`` values.

    Never raises: a failed publish is logged, diagnostics must not take a node down.
    """
    status = DiagnosticStatus()
    status.level = DiagnosticStatus.OK
    status.name = name
    status.values = [KeyValue(key=str(k), value=str(v)) for k, v in list(info.items())
                     + [(f'count.{k}', v) for k, v in counts.items()]]
    try:
        publisher.publish(build_array(node.get_clock().now().to_msg(), [status]))
    except Exception as exc:  # noqa: B902 - any publish failure is only logged
        node.get_logger().warning(f'diagnostics publish failed: {exc!r}')
