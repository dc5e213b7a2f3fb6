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
import time

from gfde_perception.errors import BackendError, ImageError, ImageErrorKind
from gfde_perception.runtime import Classifier, RuntimeConfig
from gfde_perception.runtime.worker import Frame, InferenceWorker, stage_latencies
from gfde_perception.stats import (DROP_BAD_INPUT, DROP_INFERENCE_ERROR, DROP_NON_FINITE,
                                   DROP_PUBLISH_FAILED, DROP_SUPERSEDED, PipelineStats)
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


def test_superseded_frames_are_counted_and_the_newest_is_processed(classifier):
    publish = Published()
    worker, stats, _ = _worker(classifier, publish)
    images = random_images(3)
    for image in images:  # not started yet: each frame supersedes the one before
        worker.submit(image, 'cam', np.asarray, stamp_ns=1)
    worker.submit(images[0], 'other', np.asarray)
    assert stats.snapshot().dropped[DROP_SUPERSEDED] == 2
    worker.start()
    deadline = time.monotonic() + 30.0
    while len(publish.calls) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    worker.stop()
    frames = sorted((frame.topic, frame.seq) for frame, _, _ in publish.calls)
    assert frames == [('cam', 2), ('other', 0)]  # per-topic sequence numbers
    assert stats.snapshot().received == 4 and stats.snapshot().processed == 2


def test_frames_still_waiting_at_stop_are_counted(classifier):
    worker, stats, _ = _worker(classifier)
    worker.submit(random_images(1)[0], 'cam', np.asarray)
    worker.stop()
    assert stats.snapshot().dropped[DROP_SUPERSEDED] == 1 and len(worker.mailbox) == 0


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
