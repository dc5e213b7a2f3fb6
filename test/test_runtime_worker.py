# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
The ROS-free inference worker: drop accounting, throttled warnings, the non-finite guard, timings.

No rclpy: frames are numpy arrays (or bytes) handed in with their decode function, results are
collected by a plain ``publish`` function. The classifier is a real one on a tiny bundle; where a
real classifier cannot produce the case (a backend failure, a NaN score), a stand-in with the
same ``classify`` interface returns or raises it.
"""

import math
import threading
import time

from gfde_perception.errors import BackendError, ImageError, ImageErrorKind
from gfde_perception.runtime import Classifier, RuntimeConfig
from gfde_perception.runtime.worker import (Frame, InferenceWorker, SequenceGaps,
                                            stage_latencies)
from gfde_perception.stats import (DROP_BAD_INPUT, DROP_INACTIVE, DROP_INFERENCE_ERROR,
                                   DROP_LOST, DROP_NON_FINITE, DROP_PUBLISH_FAILED,
                                   DROP_SUPERSEDED, PipelineStats)
import numpy as np
import pytest
from runtime_fixtures import make_tiny_bundle, random_images


@pytest.fixture(scope='module')
def classifier(tmp_path_factory):
    folder = tmp_path_factory.mktemp('worker')
    bundle = make_tiny_bundle(folder)
    config = RuntimeConfig(backend='torch', schedule='sequential', warmup=0, threads=1,
                           energy='none', engine_cache_dir=str(folder))
    with Classifier(bundle, config) as clf:
        yield clf


class Published:
    """A publish function that keeps what it was handed (or raises, when told to)."""

    def __init__(self, fail=False):
        self.fail = fail
        self.calls = []

    def __call__(self, frame, result, timing):
        if self.fail:
            raise RuntimeError('publisher saturated')
        self.calls.append((frame, result, timing))


class Warnings:
    """A logger that keeps its warnings."""

    def __init__(self):
        self.lines = []

    def warning(self, text):
        self.lines.append(text)


class StandIn:
    """The classifier interface returning a prepared result or raising a prepared error."""

    def __init__(self, outcome):
        self.outcome = outcome

    def classify(self, image):
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


def _worker(classifier, publish=None, now_ns=lambda: 0, warn_period_s=5.0):
    stats = PipelineStats(window_s=60.0)
    log = Warnings()
    worker = InferenceWorker(classifier, publish or Published(), now_ns, stats, log,
                             warn_period_s)
    return worker, stats, log


def _frame(image, topic='cam', decode=np.asarray, stamp_ns=0, seq=0):
    return Frame(image, decode, topic, seq, stamp_ns, time.monotonic())


def test_a_frame_is_decoded_classified_and_published_with_its_timings(classifier):
    publish = Published()
    worker, stats, log = _worker(classifier, publish, now_ns=lambda: 5_000_000_000)
    image = random_images(1)[0]
    worker.process(_frame(image.tobytes(), decode=lambda raw: np.frombuffer(
        raw, np.uint8).reshape(image.shape), stamp_ns=4_990_000_000))
    (frame, result, timing), = publish.calls
    assert frame.topic == 'cam' and result is worker.last_result
    assert result.class_id == classifier.classify(image).class_id
    assert timing.frame_age_ms == pytest.approx(10.0)
    assert timing.decode_ms >= 0 and timing.total_ms >= timing.decode_ms
    snap = stats.snapshot()
    assert snap.processed == 1 and sum(snap.dropped.values()) == 0 and not log.lines
    assert snap.exit_counts == {result.exit_index: 1}
    stages = stage_latencies(result, timing)
    assert {'decode', 'queue', 'preprocess', 'inference', 'total', 'frame_age',
            'segment_0', 'exit_head_0'} <= set(stages)


def test_a_frame_without_stamp_has_no_age(classifier):
    publish = Published()
    worker, _, _ = _worker(classifier, publish, now_ns=lambda: 123)
    worker.process(_frame(random_images(1)[0]))
    assert math.isnan(publish.calls[0][2].frame_age_ms)


def test_every_frame_without_a_result_is_counted_with_its_reason(classifier):
    images = random_images(2)
    worker, stats, _ = _worker(classifier)

    def truncated(_):
        raise ImageError('truncated data: 3 B, expected 12', ImageErrorKind.TRUNCATED)

    worker.process(_frame(images[0], decode=truncated))
    nan_image = np.full((8, 8, 3), np.nan, np.float32)  # preprocessing refuses it
    worker.process(_frame(nan_image))
    failing, _, _ = _worker(StandIn(BackendError('segment 2 failed on the device')))
    failing.stats = stats
    failing.process(_frame(images[0]))
    nan_result = classifier.classify(images[0])._replace(score=math.nan)
    guarded, _, _ = _worker(StandIn(nan_result))
    guarded.stats = stats
    guarded.process(_frame(images[0]))
    refused, _, _ = _worker(classifier, Published(fail=True))
    refused.stats = stats
    refused.process(_frame(images[1]))
    snap = stats.snapshot()
    assert snap.processed == 0
    assert snap.dropped[DROP_BAD_INPUT] == 2
    assert snap.bad_input == {'truncated': 1, 'non_finite': 1}
    assert snap.dropped[DROP_INFERENCE_ERROR] == 1
    assert snap.dropped[DROP_NON_FINITE] == 1
    assert snap.dropped[DROP_PUBLISH_FAILED] == 1
    assert guarded.last_result is None and refused.last_result is None


class Gated:
    """The real classifier, held on its first frame until ``release()`` (a busy worker)."""

    def __init__(self, inner):
        self.inner = inner
        self.gate = threading.Event()
        self.holding = threading.Event()
        self.calls = 0

    def classify(self, image):
        self.calls += 1
        if self.calls == 1:
            self.holding.set()
            assert self.gate.wait(30.0), 'the test never released the first frame'
        return self.inner.classify(image)

    def release(self):
        self.gate.set()


def _wait(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)
    return predicate()


def _books_balance(snap):
    return snap.published == snap.processed + sum(snap.dropped.values()) + snap.in_flight


def test_superseded_frames_are_counted_and_the_newest_is_processed(classifier):
    publish = Published()
    gated = Gated(classifier)
    worker, stats, _ = _worker(gated, publish)
    images = random_images(4)
    worker.start()
    worker.submit(images[0], 'cam', np.asarray, stamp_ns=1)
    assert gated.holding.wait(30.0)  # the worker is busy with frame 0 of 'cam'
    for image in images[1:]:  # each frame supersedes the one before
        worker.submit(image, 'cam', np.asarray, stamp_ns=1)
    worker.submit(images[0], 'other', np.asarray)
    assert stats.snapshot().dropped[DROP_SUPERSEDED] == 2
    gated.release()
    assert _wait(lambda: len(publish.calls) == 3)
    worker.stop()
    frames = sorted((frame.topic, frame.seq) for frame, _, _ in publish.calls)
    assert frames == [('cam', 0), ('cam', 3), ('other', 0)]  # per-topic sequence numbers
    snap = stats.snapshot()
    assert snap.received == 5 and snap.processed == 3 and snap.in_flight == 0
    assert _books_balance(snap)


def test_frames_still_waiting_at_stop_are_counted_as_inactive(classifier):
    publish = Published()
    gated = Gated(classifier)
    worker, stats, _ = _worker(gated, publish)
    worker.start()
    thread = worker._thread
    worker.submit(random_images(1)[0], 'cam', np.asarray)
    assert gated.holding.wait(30.0)
    worker.submit(random_images(1)[0], 'cam', np.asarray)  # waits behind the busy worker
    worker.stop(timeout=0.01)
    assert stats.snapshot().dropped[DROP_INACTIVE] == 1 and len(worker.mailbox) == 0
    gated.release()  # the frame in inference still comes out
    thread.join(30.0)
    assert len(publish.calls) == 1 and publish.calls[0][0].seq == 0
    assert _books_balance(stats.snapshot()) and stats.snapshot().in_flight == 0


def test_no_frame_from_before_the_start_is_ever_published(classifier):
    # Issue 11, item 2: a frame received after configure and before the first activate was
    # published on activate, seconds old. Frames are accepted only while the worker runs, and
    # a frame the transport received before start() stays discarded even when handed over
    # after it (the executor may run the callback late).
    publish = Published()
    worker, stats, _ = _worker(classifier, publish)
    images = random_images(3)
    received_before = time.time_ns()
    worker.submit(images[0], 'cam', np.asarray)  # not started yet
    assert stats.snapshot().dropped[DROP_INACTIVE] == 1 and len(worker.mailbox) == 0
    worker.start()
    worker.submit(images[1], 'cam', np.asarray, received_ns=received_before)
    assert stats.snapshot().dropped[DROP_INACTIVE] == 2
    worker.submit(images[2], 'cam', np.asarray, received_ns=time.time_ns())
    assert _wait(lambda: len(publish.calls) == 1)
    worker.stop()
    worker.submit(images[0], 'cam', np.asarray)  # stopped again
    snap = stats.snapshot()
    assert snap.dropped[DROP_INACTIVE] == 3 and snap.processed == 1
    assert publish.calls[0][0].seq == 0  # the first frame ever accepted
    assert _books_balance(snap) and snap.in_flight == 0


def test_gaps_in_publisher_sequence_numbers_are_counted_as_lost():
    gaps = SequenceGaps(max_publishers=2, window=4)
    assert gaps.observe('a', 5) == 0  # first frame seen: nothing before it is ours
    assert gaps.observe('a', 6) == 0
    assert gaps.observe('a', 9) == 2
    assert gaps.observe('a', 9) == 0 and gaps.observe('a', 3) == 0  # repeats count nothing
    assert gaps.observe('a', 7) == -1  # counted missing, came late: taken back, once
    assert gaps.observe('a', 7) == 0
    assert gaps.observe('a', 20) == 10
    assert gaps.observe('a', 12) == 0  # further back than the window: stays counted
    assert gaps.observe('a', 17) == -1
    assert gaps.observe('b', 100) == 0 and gaps.observe('b', 102) == 1
    gaps.observe('c', 1)  # 'a' is the least recently heard: forgotten
    assert gaps.observe('a', 30) == 0


def test_a_frame_handed_over_late_neither_replaces_a_newer_one_nor_unbalances_the_books(
        classifier):
    # The executor and the worker may both take from a subscription: a frame can then be
    # submitted after a newer one of the same publisher.
    publish = Published()
    gated = Gated(classifier)
    worker, stats, _ = _worker(gated, publish)
    images = random_images(2)
    worker.start()
    worker.submit(images[0], 'cam', np.asarray, publisher='p', publisher_seq=1)
    assert gated.holding.wait(30.0)
    worker.submit(images[1], 'cam', np.asarray, publisher='p', publisher_seq=4)
    worker.submit(images[0], 'cam', np.asarray, publisher='p', publisher_seq=3)  # late
    gated.release()
    assert _wait(lambda: len(publish.calls) == 2)
    worker.stop()
    assert [frame.publisher_seq for frame, _, _ in publish.calls] == [1, 4]
    snap = stats.snapshot()
    assert snap.dropped[DROP_LOST] == 1 and snap.dropped[DROP_SUPERSEDED] == 1  # 2; 3 late
    assert snap.published == 4 and _books_balance(snap)


def test_every_frame_a_publisher_sent_is_processed_or_counted(classifier):
    publish = Published()
    worker, stats, _ = _worker(classifier, publish)
    worker.start()
    images = random_images(2)
    sent = [1, 2, 5, 6, 11]  # the publisher sent 1..11; 3, 4 and 7..10 never arrived
    for seq in sent:
        worker.submit(images[seq % 2], 'cam', np.asarray, publisher=b'gid-1', publisher_seq=seq)
        assert _wait(lambda: stats.snapshot().in_flight == 0)
    worker.stop()
    snap = stats.snapshot()
    assert snap.dropped[DROP_LOST] == 6 and snap.received == 5 and snap.unnumbered == 0
    assert snap.published == 11 and snap.processed == 5
    assert _books_balance(snap)


def test_age_is_at_least_total_and_every_stage_within_total(classifier):
    # Issue 11, item 9: frame_age_ms < total_ms when the worker was descheduled between the
    # two clock reads. A clock that returns its reading and then stalls the thread shows it.
    def stalling_now_ns():
        now = time.time_ns()
        time.sleep(0.005)
        return now

    publish = Published()
    worker, _, _ = _worker(classifier, publish, now_ns=stalling_now_ns)
    image = random_images(1)[0]
    for _ in range(3):
        worker.process(_frame(image, stamp_ns=time.time_ns()))
    for _, result, timing in publish.calls:
        assert timing.frame_age_ms >= timing.total_ms
        for stage_ms in (timing.decode_ms, timing.queue_ms, result.timings.inference_ms,
                         result.timings.preprocess_ms, *result.timings.segment_ms):
            assert 0 <= stage_ms <= timing.total_ms
        assert (timing.queue_ms + timing.decode_ms + result.timings.inference_ms
                <= timing.total_ms)


def test_the_worker_survives_an_unexpected_error_and_goes_on(classifier):
    publish = Published()
    worker, stats, log = _worker(classifier, publish)

    def broken(_):
        raise KeyError('a bug in a decoder')

    worker.start()
    worker.submit(b'', 'broken', broken)
    worker.submit(random_images(1)[0], 'cam', np.asarray)
    deadline = time.monotonic() + 30.0
    while not publish.calls and time.monotonic() < deadline:
        time.sleep(0.01)
    worker.stop()
    assert len(publish.calls) == 1
    assert stats.snapshot().dropped[DROP_INFERENCE_ERROR] == 1
    assert any('unexpected error' in line and 'KeyError' in line for line in log.lines)


def test_warnings_are_throttled_per_reason_and_say_how_many_were_left_out(classifier):
    worker, stats, log = _worker(classifier, warn_period_s=3600.0)

    def zero_size(_):
        raise ImageError('zero-size image: 0x4', ImageErrorKind.ZERO_SIZE)

    for _ in range(3):
        worker.process(_frame(None, decode=zero_size))
    assert len(log.lines) == 1 and 'zero-size' in log.lines[0]
    worker.warn_period_s = 0.0
    worker.process(_frame(None, decode=zero_size))
    assert len(log.lines) == 2 and '(2 more since the last warning)' in log.lines[1]
    assert stats.snapshot().bad_input == {'zero_size': 4}
