# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
The camera side of the classifier node: subscriptions that hand serialized frames to the worker.

:class:`CameraInput` is one camera subscription (``sensor_msgs/Image``, or ``CompressedImage``
for a ``.../compressed`` topic), taken serialized with its message info; :class:`CameraGate`
is the callback group of them all, which stops the executor reading the cameras while
inference is busy so that the worker takes the newest frame itself when it is done.
"""

import time
from typing import Callable, Optional

from gfde_perception.ros.conversions import (serialized_compressed_imgmsg_to_array,
                                             serialized_imgmsg_to_array, serialized_stamp_ns)
from gfde_perception.runtime.worker import InferenceWorker
from rclpy.callback_groups import CallbackGroup
from rclpy.exceptions import InvalidHandle
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CompressedImage, Image

COMPRESSED_SUFFIX = 'compressed'


def is_compressed_topic(name: str) -> bool:
    """Return True for image_transport's compressed topic names (``.../compressed``)."""
    return name.rstrip('/').split('/')[-1] == COMPRESSED_SUFFIX


class CameraGate(CallbackGroup):
    """
    Callback group of the camera subscriptions: the executor reads them while inference keeps up.

    Open, the executor takes each frame and hands it to the worker. When a frame arrives while
    the worker is still busy, the camera is faster than inference: the gate closes, and from
    then on the worker takes the newest frame waiting in the subscription's history itself
    when it is done (:meth:`CameraInput.pull`, no thread hand-over), reopening the gate only
    when nothing is waiting. Meanwhile new frames wait in the history (``qos.depth``), a newer
    one overwriting the older before anything was taken or deserialized, so a camera faster
    than inference costs nothing per frame that could not be used, as with a plain callback
    that classifies inline, while the executor stays free for parameters, services and
    diagnostics. Frames overwritten in the history are counted from the publisher's sequence
    numbers (``lost_before_callback``); should both sides take at once, the publisher's numbers
    keep the newest frame and the books right. While the worker does not run, frames are
    taken, counted as inactive and discarded.
    """

    def __init__(self, wake: Callable[[], None]):
        super().__init__()
        self.worker: Optional[InferenceWorker] = None
        self._wake = wake
        self._open = True
        self._held = False  # the executor left the cameras out of a wait set while closed

    def can_execute(self, entity) -> bool:
        worker = self.worker
        if self._open or worker is None or not worker.active:
            return True  # (a closed gate of a stopped worker lets frames be counted inactive)
        self._held = True
        return False

    def beginning_execution(self, entity) -> bool:
        return True

    def ending_execution(self, entity) -> None:
        pass

    def close(self):
        """Stop the executor reading the cameras (the worker will take the frames)."""
        self._open = False

    def reopen(self):
        """Let the executor read the cameras again, waking it if it left them out."""
        self._open = True
        if self._held:
            self._held = False
            self._wake()


class CameraInput:
    """
    One camera subscription: its frames go to the node's worker, serialized, with their info.

    :param node: the classifier node (its ``worker`` receives the frames).
    :param name: topic name; ``.../compressed`` is read as ``sensor_msgs/CompressedImage``.
    :param qos: the subscription's QoS.
    :param gate: the callback group that holds the subscription while the worker is busy.
    :param budget: returns the decode budget in bytes, read per frame (a parameter).
    """

    def __init__(self, node, name: str, qos: QoSProfile, gate: CameraGate,
                 budget: Callable[[], int]):
        compressed = is_compressed_topic(name)
        self._decode = (serialized_compressed_imgmsg_to_array if compressed
                        else serialized_imgmsg_to_array)
        self._budget = budget
        self._node = node
        self._gate = gate
        self.subscription = node.create_subscription(
            CompressedImage if compressed else Image, name, self._on_frame, qos, raw=True,
            callback_group=gate)
        self.topic = self.subscription.topic_name

    def decode(self, raw):
        """Decode a serialized frame of this topic within the current decode budget."""
        return self._decode(raw, self._budget())

    def hand_over(self, worker: InferenceWorker, raw, info) -> bool:
        """Submit one taken frame; return True when the worker was waiting for it."""
        gid = info['publisher_gid']
        # The writer's GID and sequence number let the worker count the frames that never
        # reached the node (overwritten in the history, lost in transport).
        return worker.submit(raw, self.topic, self.decode, serialized_stamp_ns(raw),
                             publisher=bytes(gid['data']) if gid else None,
                             publisher_seq=info['publication_sequence_number'] or 0,
                             received_ns=info['received_timestamp'] or 0)

    def _on_frame(self, raw, info):
        worker = self._node.worker
        if worker is None:
            return
        if self.hand_over(worker, raw, info):
            # Hand the interpreter to the waiting worker now rather than after the executor's
            # own bookkeeping (measured: the queue wait's p50 went from 0.30 to 0.08 ms).
            time.sleep(0)
        elif worker.active:
            self._gate.close()  # faster than inference: the worker takes the next frames

    def pull(self, worker: InferenceWorker) -> bool:
        """Take what waits in the subscription's history (on the worker thread); True if any."""
        sub, pulled = self.subscription, False
        try:
            with sub.handle:
                # The same take the executor makes; the rmw layer serializes the two.
                while True:
                    got = sub.handle.take_message(sub.msg_type, sub.raw)
                    if got is None:
                        return pulled
                    self.hand_over(worker, *got)
                    pulled = True
        except InvalidHandle:  # destroyed meanwhile (cleanup)
            return pulled
