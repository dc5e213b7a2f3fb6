# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Rolling statistics of a live classifier: rates, latency percentiles, drops, exits, health.

ROS-free so that it is tested from plain numbers: the node feeds it events (a frame arrived, a
frame was dropped and why, a result with its stage timings) from its callback and worker threads
and reads a :class:`StatsSnapshot` about once a second for ``/diagnostics``. Every figure is over
a sliding time window, so a stall shows up within one window instead of being averaged away.
"""

from collections import Counter, deque
from dataclasses import dataclass
import math
import threading
import time
from typing import Callable, Dict, Optional, Tuple

from gfde_perception.errors import ConfigError, ImageError

PERCENTILES = (50, 90, 99)
# Samples kept per series; at 1 kHz this still covers a 4 s window (older ones fall out anyway).
MAX_SAMPLES = 4096

OK, WARN, ERROR = 0, 1, 2
LEVEL_NAMES = {OK: 'OK', WARN: 'WARN', ERROR: 'ERROR'}

# Why a frame produced no result. 'superseded' is the real-time policy, not a fault;
# 'inactive' frames arrived while the pipeline was not running (before the first activation, or
# between deactivate and activate); 'lost_before_callback' frames were numbered by their
# publisher but never reached the pipeline (overwritten in the subscription's history or lost in
# transport), counted from gaps in the publisher's sequence numbers.
DROP_SUPERSEDED = 'superseded'
DROP_BAD_INPUT = 'bad_input'
DROP_INFERENCE_ERROR = 'inference_error'
DROP_NON_FINITE = 'non_finite_output'
DROP_PUBLISH_FAILED = 'publish_failed'
DROP_INACTIVE = 'inactive'
DROP_LOST = 'lost_before_callback'
DROP_REASONS = (DROP_SUPERSEDED, DROP_BAD_INPUT, DROP_INFERENCE_ERROR, DROP_NON_FINITE,
                DROP_PUBLISH_FAILED, DROP_INACTIVE, DROP_LOST)


def bad_input_kind(error: ImageError) -> str:
    """Return the stable counter name of the bad input an ImageError reports (its kind)."""
    return error.kind.value


def percentiles(values, qs=PERCENTILES) -> Tuple[float, ...]:
    """Return the ``qs`` percentiles of ``values`` (nearest-rank); NaN for an empty series."""
    data = sorted(values)
    if not data:
        return tuple(math.nan for _ in qs)
    n = len(data)
    return tuple(data[min(n - 1, max(0, math.ceil(q / 100.0 * n) - 1))] for q in qs)


class _Series:
    """Time-stamped samples of one quantity, trimmed to a window when read."""

    def __init__(self):
        self.samples = deque(maxlen=MAX_SAMPLES)  # (t, value)

    def add(self, t: float, value: float):
        self.samples.append((t, value))

    def values_since(self, t0: float) -> list:
        return [v for t, v in self.samples if t >= t0]


@dataclass(frozen=True)
class HealthBounds:
    """
    When the node's diagnostic status leaves OK.

    :ivar min_output_rate_hz: WARN when results come out slower than this (0 disables). (ERROR,
        whatever the bounds, when a frame has been in the pipeline for a whole window without
        a result coming out: a stall, never the start-up.)
    :ivar max_latency_ms: WARN when the p90 end-to-end latency exceeds it, ERROR above twice it
        (0 disables).
    :ivar max_bad_input_ratio: WARN when more than this share of received frames was bad input.
    :ivar window_s: sliding window of every rate and percentile, in seconds.
    """

    min_output_rate_hz: float = 0.0
    max_latency_ms: float = 0.0
    max_bad_input_ratio: float = 0.5
    window_s: float = 5.0

    def __post_init__(self):
        for name in ('min_output_rate_hz', 'max_latency_ms', 'max_bad_input_ratio', 'window_s'):
            value = float(getattr(self, name))
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f'{name} must be a finite number >= 0, got {value}')
            object.__setattr__(self, name, value)
        if self.max_bad_input_ratio > 1:
            raise ConfigError(
                f'max_bad_input_ratio must be in [0, 1], got {self.max_bad_input_ratio}')
        if self.window_s <= 0:
            raise ConfigError(f'window_s must be > 0, got {self.window_s}')


@dataclass(frozen=True)
class StatsSnapshot:
    """
    Figures over the last window, as read for one diagnostics message.

    :ivar window_s: length of the window the rates and percentiles cover.
    :ivar input_rate_hz: frames received per second (all topics).
    :ivar output_rate_hz: results published per second.
    :ivar received: frames that reached the pipeline since start.
    :ivar processed: results published since start.
    :ivar dropped: frames without a result since start, by reason (see ``DROP_REASONS``);
        ``lost_before_callback`` counts frames that never reached the pipeline.
    :ivar bad_input: bad-input drops since start, by kind.
    :ivar latency_ms: stage name -> (p50, p90, p99) over the window, NaN when no sample.
    :ivar exit_counts: exit index -> results since start that left there.
    :ivar energy_measured: True when every energy figure in the window was measured.
    :ivar energy_j_per_frame: mean measured joules per frame in the window, NaN otherwise.
    :ivar energy_source: the counter's name, or 'none'.
    :ivar energy_method: why energy is not measured (empty when it is).
    :ivar window_received: frames received within the window.
    :ivar window_processed: results within the window.
    :ivar window_bad_input: bad-input drops within the window.
    :ivar in_flight: frames received and not yet processed or dropped (waiting or in inference).
    :ivar unnumbered: frames received without their publisher's sequence number (the frames
        lost before those cannot be counted).
    :ivar waiting_s: how long frames have been in the pipeline without a result coming out:
        since the first frame received after the last result (or after the pipeline was last
        empty); 0 when nothing is in flight.
    """

    window_s: float
    input_rate_hz: float
    output_rate_hz: float
    received: int
    processed: int
    dropped: Dict[str, int]
    bad_input: Dict[str, int]
    latency_ms: Dict[str, Tuple[float, float, float]]
    exit_counts: Dict[int, int]
    energy_measured: bool
    energy_j_per_frame: float
    energy_source: str
    energy_method: str
    window_received: int = 0
    window_processed: int = 0
    window_bad_input: int = 0
    in_flight: int = 0
    waiting_s: float = 0.0
    unnumbered: int = 0

    @property
    def published(self) -> int:
        """Return the frames the publishers sent: received plus those lost before the callback."""
        return self.received + self.dropped.get(DROP_LOST, 0)


class PipelineStats:
    """
    Thread-safe event sink of a live classifier; :meth:`snapshot` reads the window.

    :param window_s: sliding window of rates and percentiles, in seconds.
    :param clock: monotonic time source in seconds (injected in tests).
    """

    def __init__(self, window_s: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self._lock = threading.Lock()
        self._clock = clock
        self.window_s = float(window_s)
        self._arrivals = _Series()
        self._outputs = _Series()
        self._bad = _Series()
        self._latency: Dict[str, _Series] = {}
        self._energy = _Series()
        self._energy_source = 'none'
        self._energy_method = 'no result yet'
        self._energy_all_measured = True
        self.received = 0
        self.processed = 0
        self.dropped = Counter(dict.fromkeys(DROP_REASONS, 0))
        self.bad_input = Counter()
        self.exit_counts = Counter()
        self.unnumbered = 0
        self._in_flight = 0
        self._waiting_since = None  # clock time of the oldest frame without a result since

    def frame_received(self, numbered: bool = True):
        """
        Count one frame arriving in the pipeline.

        :param numbered: False when it came without its publisher's sequence number, so frames
            lost before it cannot be counted (``unnumbered`` says how many such frames came).
        """
        with self._lock:
            t = self._clock()
            self.received += 1
            if not numbered:
                self.unnumbered += 1
            self._in_flight += 1
            if self._waiting_since is None:
                self._waiting_since = t
            self._arrivals.add(t, 1.0)

    def frames_lost(self, count: int):
        """
        Count ``count`` frames their publisher sent that never reached the pipeline.

        A negative count takes back frames counted lost that reached it after all (late).
        """
        if count:
            with self._lock:
                self.dropped[DROP_LOST] += int(count)

    def frame_dropped(self, reason: str, kind: Optional[str] = None):
        """Count one received frame that gave no result, with its reason (and bad-input kind)."""
        if reason == DROP_LOST:
            raise ValueError('frames lost before the pipeline are counted by frames_lost()')
        with self._lock:
            self.dropped[reason] += 1
            self._in_flight -= 1
            if not self._in_flight:
                # Nothing left waiting: a bad or inactive frame is an answer, not a stall.
                self._waiting_since = None
            if reason == DROP_BAD_INPUT:
                self.bad_input[kind or 'other'] += 1
                self._bad.add(self._clock(), 1.0)

    def result_published(self, exit_index: int, latency_ms: Dict[str, float],
                         energy_measured: bool = False, energy_j: float = math.nan,
                         energy_source: str = 'none', energy_method: str = ''):
        """Count one published result with its per-stage latencies (stage name -> ms)."""
        with self._lock:
            t = self._clock()
            self.processed += 1
            self._in_flight -= 1
            self._waiting_since = None
            self._outputs.add(t, 1.0)
            self.exit_counts[int(exit_index)] += 1
            for stage, ms in latency_ms.items():
                if ms is not None and math.isfinite(ms):
                    self._latency.setdefault(stage, _Series()).add(t, float(ms))
            self._energy_source = energy_source
            self._energy_method = energy_method
            if energy_measured and math.isfinite(energy_j):
                self._energy.add(t, float(energy_j))
            else:
                self._energy_all_measured = False
                self._energy.add(t, math.nan)

    def snapshot(self) -> StatsSnapshot:
        """Return the figures over the last ``window_s`` seconds (and totals since start)."""
        with self._lock:
            now = self._clock()
            t0 = now - self.window_s
            arrivals = len(self._arrivals.values_since(t0))
            outputs = len(self._outputs.values_since(t0))
            bad = len(self._bad.values_since(t0))
            latency = {stage: percentiles(series.values_since(t0))
                       for stage, series in sorted(self._latency.items())}
            energies = self._energy.values_since(t0)
            measured = bool(energies) and all(math.isfinite(e) for e in energies)
            return StatsSnapshot(
                window_s=self.window_s,
                input_rate_hz=arrivals / self.window_s,
                output_rate_hz=outputs / self.window_s,
                received=self.received,
                processed=self.processed,
                dropped=dict(self.dropped),
                bad_input=dict(self.bad_input),
                latency_ms=latency,
                exit_counts=dict(sorted(self.exit_counts.items())),
                energy_measured=measured,
                energy_j_per_frame=(sum(energies) / len(energies)) if measured else math.nan,
                energy_source=self._energy_source,
                energy_method='' if measured else (self._energy_method or 'not measured'),
                window_received=arrivals,
                window_processed=outputs,
                window_bad_input=bad,
                in_flight=self._in_flight,
                unnumbered=self.unnumbered,
                waiting_s=0.0 if self._waiting_since is None else now - self._waiting_since,
            )


def evaluate_health(snapshot: StatsSnapshot, bounds: HealthBounds) -> Tuple[int, str]:
    """
    Turn a snapshot into a diagnostic level (OK, WARN, ERROR) and a one-line reason.

    :param snapshot: figures over the window.
    :param bounds: the configured limits.
    :return: ``(level, message)``; the message lists every bound that was left.
    """
    level, reasons = OK, []

    def raise_to(new_level, reason):
        nonlocal level
        level = max(level, new_level)
        reasons.append(reason)

    if snapshot.window_received == 0:
        raise_to(WARN, f'no input in the last {snapshot.window_s:g} s')
    elif snapshot.window_processed == 0 and snapshot.waiting_s >= snapshot.window_s:
        # Only a frame that has waited a whole window is a stall: right after the first frame
        # (model warm, first inference running) the window simply has no result yet.
        raise_to(ERROR, f'frames arrive but no result in {snapshot.window_s:g} s')
    elif snapshot.processed == 0:
        pass  # starting: the first result is on its way, no rate to judge yet
    elif bounds.min_output_rate_hz > 0 and snapshot.output_rate_hz < bounds.min_output_rate_hz:
        raise_to(WARN, f'output rate {snapshot.output_rate_hz:.1f} Hz is below '
                       f'{bounds.min_output_rate_hz:g} Hz')
    p90 = snapshot.latency_ms.get('total', (math.nan,) * 3)[1]
    if bounds.max_latency_ms > 0 and math.isfinite(p90) and p90 > bounds.max_latency_ms:
        raise_to(ERROR if p90 > 2 * bounds.max_latency_ms else WARN,
                 f'latency p90 {p90:.1f} ms exceeds {bounds.max_latency_ms:g} ms')
    if snapshot.window_received:
        ratio = snapshot.window_bad_input / snapshot.window_received
        if ratio > bounds.max_bad_input_ratio:
            raise_to(WARN, f'{ratio:.0%} of frames were bad input')
    return level, '; '.join(reasons) if reasons else 'ok'
