# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""The split nodes' ``/diagnostics`` entry: static facts and event counters as key-values."""

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from gfde_perception.ros.diagnostics import publish


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
    publish(node, publisher, [status])
