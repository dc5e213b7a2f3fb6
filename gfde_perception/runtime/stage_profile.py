# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
A rolling runtime profile: per-stage latency, exits taken, gate confidences, energy per frame.

The classifier appends one :class:`FrameRecord` per frame; the budget policy and diagnostics read
summaries of the last ``window`` frames. Records are small tuples in a bounded deque, so the
profile stops growing once it is full.
"""

from collections import deque
import math
from typing import NamedTuple, Optional, Sequence

from gfde_perception.errors import ConfigError


class FrameRecord(NamedTuple):
    """What the profile keeps of one frame (times in ms)."""

    preprocess_ms: float
    segment_ms: tuple
    exit_head_ms: tuple
    inference_ms: float
    exit_index: int
    gate_confidence: tuple
    joules: float  # NaN unless measured by a counter
    speculative_segments: int = 0


class RuntimeProfile:
    """The last ``window`` frames of one classifier, with per-stage summaries."""

    def __init__(self, num_exits: int, window: int = 64,
                 blocks_per_exit: Optional[Sequence[int]] = None):
        if num_exits < 1 or window < 1:
            raise ConfigError(f'need num_exits >= 1 and window >= 1, got {num_exits}, {window}')
        self.num_exits = num_exits
        self.window = window
        self.blocks_per_exit = tuple(blocks_per_exit) if blocks_per_exit else tuple(
            range(1, num_exits + 1))
        if len(self.blocks_per_exit) != num_exits:
            raise ConfigError(f'blocks_per_exit needs {num_exits} entries, '
                              f'got {self.blocks_per_exit}')
        self.records = deque(maxlen=window)
        self.frames_seen = 0

    def add(self, record: FrameRecord):
        """Append one frame (the oldest falls out once the window is full)."""
        self.records.append(record)
        self.frames_seen += 1

    def clear(self):
        """Forget all frames (e.g. after warm-up, whose timings are not representative)."""
        self.records.clear()

    def __len__(self) -> int:
        return len(self.records)

    def mean_stage_ms(self) -> tuple:
        """
        Return (segment_ms, exit_head_ms): mean per exit over frames that ran that stage.

        A stage no frame in the window reached is estimated from the mean per-block time of
        the stages that did run (segments scale with their block count, heads are alike), so
        a planner can price exits it has not seen lately. NaN when nothing ran at all.
        """
        n = self.num_exits
        seg_sum, seg_n = [0.0] * n, [0] * n
        head_sum, head_n = [0.0] * n, [0] * n
        for r in self.records:
            # Only the segments up to the exit taken count: a discarded speculative segment
            # ran concurrently with a head and is priced by the schedule, not the exit.
            for k, ms in enumerate(r.segment_ms[:r.exit_index + 1]):
                seg_sum[k] += ms
                seg_n[k] += 1
            for k, ms in enumerate(r.exit_head_ms):
                head_sum[k] += ms
                head_n[k] += 1
        blocks = (self.blocks_per_exit[0],) + tuple(
            b - a for a, b in zip(self.blocks_per_exit, self.blocks_per_exit[1:]))
        known_ms = sum(seg_sum[k] / seg_n[k] for k in range(n) if seg_n[k])
        known_blocks = sum(blocks[k] for k in range(n) if seg_n[k])
        per_block = known_ms / known_blocks if known_blocks else math.nan
        seg = tuple(seg_sum[k] / seg_n[k] if seg_n[k] else per_block * blocks[k]
                    for k in range(n))
        seen_heads = [head_sum[k] / head_n[k] for k in range(n) if head_n[k]]
        head_fill = sum(seen_heads) / len(seen_heads) if seen_heads else math.nan
        head = tuple(head_sum[k] / head_n[k] if head_n[k] else head_fill for k in range(n))
        return seg, head

    def mean_overhead_ms(self) -> float:
        """Mean time per frame outside segments and heads (preprocessing, hand-offs)."""
        if not self.records:
            return math.nan
        total = 0.0
        for r in self.records:
            total += r.inference_ms - sum(r.segment_ms[:r.exit_index + 1]) - sum(r.exit_head_ms)
        return max(0.0, total / len(self.records))

    def mean_latency_ms(self) -> float:
        """Mean inference time per frame in the window."""
        if not self.records:
            return math.nan
        return sum(r.inference_ms for r in self.records) / len(self.records)

    def exit_histogram(self) -> tuple:
        """Return the number of frames in the window that left at each exit."""
        counts = [0] * self.num_exits
        for r in self.records:
            counts[r.exit_index] += 1
        return tuple(counts)

    def joules_per_ms(self) -> float:
        """Measured energy per millisecond of inference; NaN without measured frames."""
        joules = ms = 0.0
        for r in self.records:
            if not math.isnan(r.joules):
                joules += r.joules
                ms += r.inference_ms
        return joules / ms if ms > 0 else math.nan

    def mean_joules(self) -> float:
        """Mean measured energy per frame; NaN without measured frames."""
        values = [r.joules for r in self.records if not math.isnan(r.joules)]
        return sum(values) / len(values) if values else math.nan

    def summary(self) -> dict:
        """Return a JSON-ready summary for logs and diagnostics."""
        seg, head = self.mean_stage_ms()
        return {
            'frames': len(self.records),
            'mean_latency_ms': self.mean_latency_ms(),
            'segment_ms': list(seg),
            'exit_head_ms': list(head),
            'overhead_ms': self.mean_overhead_ms(),
            'exit_histogram': list(self.exit_histogram()),
            'mean_joules': self.mean_joules(),
        }
