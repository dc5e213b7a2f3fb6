# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
The hand-over between subscription callbacks and the inference worker: newest frame wins.

One slot per input topic (a drop-oldest queue of size 1, the camera_calibration pattern): the
callback only puts the message in its topic's slot and returns, the worker takes whatever is
newest. A frame still waiting when the next one of its topic arrives is superseded and returned
to the caller to be counted, so the output never lags behind the camera. With several cameras
the worker serves the topics in turn, so one fast camera cannot starve another. No ROS imports.
"""

from collections import OrderedDict
import threading
from typing import Any, Hashable, Optional, Tuple


class LatestFrameMailbox:
    """Per-topic newest-frame slots shared by producer callbacks and one consumer thread."""

    def __init__(self):
        self._cond = threading.Condition()
        self._slots = OrderedDict()  # topic -> item; order = service order
        self._closed = False

    def put(self, topic: Hashable, item: Any) -> Optional[Any]:
        """Store ``item`` as the newest frame of ``topic``; return the frame it superseded."""
        with self._cond:
            if self._closed:
                return item
            old = self._slots.pop(topic, None)
            # Re-inserting at the end puts a busy topic behind the others that are waiting.
            self._slots[topic] = item
            self._cond.notify()
            return old

    def peek(self, topic: Hashable) -> Optional[Any]:
        """Return the frame waiting in ``topic``'s slot without taking it (None if empty)."""
        with self._cond:
            return self._slots.get(topic)

    def get(self, timeout: Optional[float] = None) -> Optional[Tuple[Hashable, Any]]:
        """Take the oldest-waiting topic's newest frame; None on timeout or when closed."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._slots or self._closed, timeout):
                return None
            if self._closed:
                return None
            return self._slots.popitem(last=False)

    def clear(self) -> list:
        """Empty every slot and return what was waiting (to be counted as dropped)."""
        with self._cond:
            items = list(self._slots.values())
            self._slots.clear()
            return items

    def close(self):
        """Wake the consumer and refuse further frames (``put`` then returns its argument)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def reopen(self):
        """Accept frames again after :meth:`close` (lifecycle re-activation)."""
        with self._cond:
            self._closed = False

    def __len__(self):
        with self._cond:
            return len(self._slots)
