# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
The inference worker of a live pipeline: newest frame -> decode -> classify -> publish.

ROS-free: whatever receives frames (the classifier node's subscription callbacks, a test)
:meth:`~InferenceWorker.submit` s them with the function that decodes them; one worker thread
takes the newest frame of each topic from a
:class:`~gfde_perception.runtime.frame_mailbox.LatestFrameMailbox`, decodes and classifies it and
hands the result to the ``publish`` function it was given.

All frame accounting lives here, so that it adds up: every frame a publisher sent is published
or counted in :class:`~gfde_perception.stats.PipelineStats` with its reason: lost before it
reached :meth:`~InferenceWorker.submit` (from gaps in the publisher's sequence numbers, when the
transport gives them), received while the worker was not running (``inactive``: before the
first :meth:`~InferenceWorker.start`, after :meth:`~InferenceWorker.stop`), superseded, bad
input and its kind, inference error, non-finite output, publish failed. Warnings come at most
once per ``warn_period_s`` per reason; the worker survives anything a frame does.
"""

from collections import deque, OrderedDict
from dataclasses import dataclass
import logging
import math
import threading
import time
from typing import Any, Callable, Hashable, Optional

from gfde_perception.errors import GfdeError, ImageError
from gfde_perception.runtime.frame_mailbox import LatestFrameMailbox
from gfde_perception.stats import (bad_input_kind, DROP_BAD_INPUT, DROP_INACTIVE,
                                   DROP_INFERENCE_ERROR, DROP_NON_FINITE, DROP_PUBLISH_FAILED,
                                   DROP_SUPERSEDED, PipelineStats)

LOG = logging.getLogger(__name__)
DEFAULT_WARN_PERIOD_S = 5.0
# Publishers whose last sequence number is remembered (the least recently heard is forgotten).
MAX_PUBLISHERS = 256


@dataclass(frozen=True)
class Frame:
    """
    One received frame, waiting for the worker.

    :ivar payload: the frame as received (e.g. a ``sensor_msgs/Image``), passed to ``decode``.
    :ivar decode: ``decode(payload) -> image array``; raises ``ImageError`` for bad input.
    :ivar topic: where it came from.
    :ivar seq: the worker's sequence number of the frame on its topic, from 0.
    :ivar stamp_ns: the frame's own time stamp in ns (0 = none: no frame age is computed).
    :ivar arrival: ``time.monotonic()`` when it was submitted.
    :ivar publisher: who sent it (None = unknown).
    :ivar publisher_seq: the publisher's number of the frame (0 = unknown).
    """

    payload: Any
    decode: Callable[[Any], Any]
    topic: str
    seq: int
    stamp_ns: int
    arrival: float
    publisher: Optional[Hashable] = None
    publisher_seq: int = 0


@dataclass(frozen=True)
class FrameTiming:
    """
    The pipeline's own timings of one frame, in milliseconds (the runtime's are in the result).

    Every duration is read from one monotonic clock, and ``total_ms`` last, so each stage
    (queue, decode, the runtime's preprocess and inference) is at most ``total_ms``; the frame
    age is read from the node's clock right after ``total_ms``, so it is at least ``total_ms``
    whenever the stamp precedes the frame's arrival.

    :ivar decode_ms: decoding the payload into an array.
    :ivar queue_ms: waiting for the worker.
    :ivar total_ms: from submit to the result being handed to ``publish``.
    :ivar frame_age_ms: the clock's time at that point minus the frame stamp (NaN without one).
    """

    decode_ms: float
    queue_ms: float
    total_ms: float
    frame_age_ms: float


def stage_latencies(result, timing: FrameTiming) -> dict:
    """Return stage name -> ms of one frame, as :class:`PipelineStats` keeps them."""
    timings = result.timings
    latency = {'decode': timing.decode_ms, 'queue': timing.queue_ms,
               'preprocess': timings.preprocess_ms, 'inference': timings.inference_ms,
               'total': timing.total_ms, 'frame_age': timing.frame_age_ms}
    for k, ms in enumerate(timings.segment_ms):
        latency[f'segment_{k}'] = ms
    for k, ms in enumerate(timings.exit_head_ms):
        latency[f'exit_head_{k}'] = ms
    return latency


class SequenceGaps:
    """
    Frames lost before they were handed over, from the numbers their publishers gave them.

    A DDS writer numbers every sample it sends (1, 2, 3, ...); a subscriber that is handed 7
    after 4 missed 5 and 6: overwritten in its history before the callback ran, or lost in
    transport. Counting starts at the first frame seen from each publisher (what it sent before
    is not this subscriber's). A frame counted missing that turns up later (handed over out of
    order) is taken back, within the last ``window`` numbers; a repeat counts nothing.

    :param max_publishers: publishers remembered; the least recently heard is forgotten.
    :param window: how far back a late frame is still recognised as one counted missing.
    """

    def __init__(self, max_publishers: int = MAX_PUBLISHERS, window: int = 256):
        self.max_publishers = max_publishers
        self.window = window
        self._state = OrderedDict()  # publisher -> [last number, missing set, missing order]

    def observe(self, publisher: Hashable, seq: int) -> int:
        """
        Note frame ``seq`` of ``publisher``.

        :return: frames newly known to be missing before it, or -1 when it is itself a frame
            counted missing before (it came late), or 0.
        """
        state = self._state.pop(publisher, None)
        if state is None:
            state, missed = [seq, set(), deque()], 0
        elif seq > state[0]:
            last, missing, order = state
            missed = seq - last - 1
            for number in range(max(last + 1, seq - self.window), seq):
                missing.add(number)
                order.append(number)
            while order and order[0] < seq - self.window:
                missing.discard(order.popleft())
            state[0] = seq
        elif seq in state[1]:
            state[1].discard(seq)
            missed = -1
        else:
            missed = 0
        self._state[publisher] = state
        if len(self._state) > self.max_publishers:
            self._state.popitem(last=False)
        return missed


class InferenceWorker:
    """
    One worker thread between frame producers and a classifier.

    Frames are accepted only while the worker runs (between :meth:`start` and :meth:`stop`);
    the others are counted as ``inactive`` and discarded, so that no frame older than the last
    start is ever published.

    :param classifier: object with ``classify(image) -> Result``
        (:class:`gfde_perception.runtime.Classifier`).
    :param publish: ``publish(frame, result, timing)``, called on the worker thread for each
        result; it may raise (the frame is then counted as ``publish_failed``).
    :param now_ns: the clock frame stamps are read against, in ns (the node's ROS clock).
    :param stats: where every event is counted.
    :param logger: anything with ``warning(text)`` (a ``logging`` or an rclpy logger).
    :param warn_period_s: at most one warning per reason per this many seconds; the warnings
        left out are counted and reported with the next one.
    :param on_idle: called on the worker thread each time it is about to wait for a frame
        with none waiting (after a result, when it starts, and every 0.2 s while idle): a
        producer that leaves frames where they are while the worker is busy can submit the
        newest one from here, or resume reading.
    """

    def __init__(self, classifier, publish: Callable, now_ns: Callable[[], int],
                 stats: PipelineStats, logger=LOG,
                 warn_period_s: float = DEFAULT_WARN_PERIOD_S,
                 on_idle: Optional[Callable[[], None]] = None):
        self.classifier = classifier
        self.publish = publish
        self.now_ns = now_ns
        self.stats = stats
        self.logger = logger
        self.warn_period_s = warn_period_s
        self.on_idle = on_idle
        self.mailbox = LatestFrameMailbox()
        self.last_result = None
        self._warned = {}  # reason -> (last warning time, suppressed count)
        self._seq = {}
        self._gaps = SequenceGaps()
        # Guards the producer side against start/stop: a frame is either accepted into a
        # running worker or counted as inactive, never left in a stopped mailbox.
        self._lock = threading.Lock()
        self._active = False
        self._active_since_ns = 0
        self._idle = False  # True while the thread waits for a frame
        self._thread = None
        self._stop = threading.Event()

    @property
    def active(self) -> bool:
        """Return True while the worker accepts frames (between start and stop)."""
        return self._active

    @property
    def idle(self) -> bool:
        """Return True while the thread waits for a frame (False while one is in inference)."""
        return self._idle

    # --- producer side (any thread) ---------------------------------------------------------
    def submit(self, payload, topic: str, decode: Callable[[Any], Any], stamp_ns: int = 0,
               publisher: Optional[Hashable] = None, publisher_seq: int = 0,
               received_ns: int = 0) -> bool:
        """
        Hand a frame to the worker (never blocks); count what it tells about other frames.

        :param payload: the frame as received, passed to ``decode`` on the worker thread.
        :param topic: where it came from (each topic has its own newest-frame slot).
        :param decode: ``decode(payload) -> image array``.
        :param stamp_ns: the frame's own time stamp in ns (0 = none).
        :param publisher: who sent it (any hashable, e.g. the DDS writer's GID); with
            ``publisher_seq`` it lets the frames lost before this call be counted.
        :param publisher_seq: the publisher's sequence number of this frame; 0 = unknown.
        :param received_ns: when the transport received it, in ns of ``time.time_ns()``'s
            clock; a frame received before the worker's last :meth:`start` is discarded as
            inactive even when it is handed over after it. 0 = unknown (judged on arrival).
        :return: True when the worker was idle, waiting for this frame: a caller on an
            interpreter with a GIL may yield it now (``time.sleep(0)``) so inference starts at
            once; when the worker is busy the frame waits anyway and yielding only costs.
        """
        arrival = time.monotonic()
        with self._lock:
            numbered = bool(publisher_seq) and publisher is not None
            if numbered:
                self.stats.frames_lost(self._gaps.observe(publisher, publisher_seq))
            self.stats.frame_received(numbered)
            if not self._active or 0 < received_ns < self._active_since_ns:
                self.stats.frame_dropped(DROP_INACTIVE)
                return False
            waiting = self.mailbox.peek(topic)
            if (numbered and waiting is not None and waiting.publisher == publisher
                    and waiting.publisher_seq > publisher_seq):
                # Handed over after a newer frame of its publisher: the newer one stays.
                self.stats.frame_dropped(DROP_SUPERSEDED)
                return False
            seq = self._seq.get(topic, 0)
            self._seq[topic] = seq + 1
            superseded = self.mailbox.put(
                topic, Frame(payload, decode, topic, seq, int(stamp_ns), arrival,
                             publisher, publisher_seq))
        if superseded is not None:
            self.stats.frame_dropped(DROP_SUPERSEDED)
        return self._idle

    # --- consumer side ----------------------------------------------------------------------
    def start(self):
        """Start the worker thread and accept frames from now on (idempotent)."""
        with self._lock:
            if self._active:
                return
            self._stop.clear()
            self.mailbox.reopen()
            self._active_since_ns = time.time_ns()
            self._active = True
            self._thread = threading.Thread(target=self._run, name='gfde-inference',
                                            daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0):
        """Stop accepting frames and stop the thread; frames still waiting count as inactive."""
        with self._lock:
            self._active = False
            self._stop.set()
            self.mailbox.close()
            waiting = self.mailbox.clear()
            thread, self._thread = self._thread, None
        for _ in waiting:
            self.stats.frame_dropped(DROP_INACTIVE)
        if thread is not None:
            # The frame in inference, if any, finishes and is published before this returns.
            thread.join(timeout)

    def _run(self):
        while not self._stop.is_set():
            self._idle = True
            if self.on_idle is not None and not len(self.mailbox):
                self.on_idle()
            got = self.mailbox.get(timeout=0.2)
            self._idle = False
            if got is None:
                continue
            try:
                self.process(got[1])
            except Exception as exc:  # the worker must survive anything
                self.stats.frame_dropped(DROP_INFERENCE_ERROR)
                self._warn(DROP_INFERENCE_ERROR, f'unexpected error on a frame: {exc!r}')

    def _warn(self, key: str, text: str):
        now = time.monotonic()
        last, suppressed = self._warned.get(key, (-math.inf, 0))
        if now - last >= self.warn_period_s:
            extra = f' ({suppressed} more since the last warning)' if suppressed else ''
            self.logger.warning(f'frame skipped: {text}{extra}')
            self._warned[key] = (now, 0)
        else:
            self._warned[key] = (last, suppressed + 1)

    def _bad_input(self, frame: Frame, exc: ImageError):
        kind = bad_input_kind(exc)
        self.stats.frame_dropped(DROP_BAD_INPUT, kind)
        self._warn(f'bad:{kind}', f'bad image on {frame.topic}: {exc}')

    def process(self, frame: Frame):
        """Run one frame through decode, classify and publish (the worker thread calls it)."""
        start = time.monotonic()
        queue_ms = (start - frame.arrival) * 1e3
        try:
            image = frame.decode(frame.payload)
        except ImageError as exc:
            self._bad_input(frame, exc)
            return
        decoded = time.monotonic()
        try:
            result = self.classifier.classify(image)
        except ImageError as exc:  # e.g. non-finite pixels found by preprocessing
            self._bad_input(frame, exc)
            return
        except GfdeError as exc:
            self.stats.frame_dropped(DROP_INFERENCE_ERROR)
            self._warn(DROP_INFERENCE_ERROR, f'inference failed on {frame.topic}: {exc}')
            return
        if not (math.isfinite(result.score)
                and all(math.isfinite(c) for c in result.gate_confidence)):
            self.stats.frame_dropped(DROP_NON_FINITE)
            self._warn(DROP_NON_FINITE, f'non-finite scores on {frame.topic} (NaN input?)')
            return
        # Total first, then the clock the stamp is read against: whatever happens between the
        # two reads (the thread may be descheduled) can only make the age larger.
        total_ms = (time.monotonic() - frame.arrival) * 1e3
        age_ms = (self.now_ns() - frame.stamp_ns) / 1e6 if frame.stamp_ns else math.nan
        timing = FrameTiming(decode_ms=(decoded - start) * 1e3, queue_ms=queue_ms,
                             total_ms=total_ms, frame_age_ms=age_ms)
        try:
            self.publish(frame, result, timing)
        except Exception as exc:  # a reliable publish can raise under saturation
            self.stats.frame_dropped(DROP_PUBLISH_FAILED)
            self._warn(DROP_PUBLISH_FAILED, f'publish failed: {exc!r}')
            return
        self.last_result = result
        energy = result.energy
        self.stats.result_published(result.exit_index, stage_latencies(result, timing),
                                    energy.measured, energy.joules, energy.source,
                                    energy.method)
