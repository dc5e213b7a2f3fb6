# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Split inference engines: the robot side and the server side of a split bundle.

:class:`SplitRobot` takes an image and gives an answer or a feature packet; :class:`SplitServer`
takes a feature packet and gives an answer. The robot runs its segments one by one and gates
each exit outside the model (:mod:`gfde_perception.gating`); an exit that opens answers the
frame on the robot. Otherwise
the features at the split are encoded, quantised and packed into a
:class:`~gfde_perception.feature_codec.FeaturePacket` for the server, and the robot keeps its
best local result (the last exit it computed) as the fallback for a server that does not answer
in time. Both engines run eager torch on the CPU in the calling thread, one frame at a time.
"""

import threading
import time
from typing import NamedTuple, Optional, Union

from gfde_perception.errors import ConfigError, FeatureError
from gfde_perception.feature_codec import FeaturePacket
from gfde_perception.gating import should_exit, softmax
from gfde_perception.models.split import dequantise
from gfde_perception.preprocessing import preprocess
from gfde_perception.runtime.result import Result, StageTimings, top_classes
from gfde_perception.split_bundle import load_split_bundle, SplitBundle
import numpy as np
import torch

BACKEND = 'torch-cpu'
EXIT_DEVICE = 'cpu-inline'
DEFAULT_TOP_K = 5
FALLEN_MEMORY = 4096  # fallen-back frames remembered to count their late answers


class RobotOutcome(NamedTuple):
    """
    What the robot made of one frame.

    :ivar result: the answer when ``packet`` is None (an exit took the frame); otherwise the
        best local result, to publish if the server does not answer in time.
    :ivar packet: the features to send to the server, or None.
    """

    result: Result
    packet: Optional[FeaturePacket]


class _SplitSide:
    """
    What both sides take from their split bundle.

    :param bundle_or_path: a :class:`SplitBundle` or a path to one.
    :param build: ``SplitBundle.build_robot`` or ``SplitBundle.build_server``.
    :param top_k: classes listed in results.
    """

    def __init__(self, bundle_or_path: Union[SplitBundle, str], build, top_k: int):
        self.bundle = bundle_or_path if isinstance(bundle_or_path, SplitBundle) \
            else load_split_bundle(bundle_or_path)
        cfg = self.bundle.config
        self.model = build(self.bundle)
        self.split = cfg.split
        self.num_exits = cfg.num_exits
        self.labels = self.bundle.labels
        self.model_id = self.bundle.model_id
        self._bits = cfg.bottleneck.bits
        self._top_k = max(1, min(top_k, len(self.labels)))
        self._blocks_per_exit = tuple(cfg.head.blocks_per_exit)
        self._blocks_total = self._blocks_per_exit[-1]
        self._lock = threading.Lock()


class SplitRobot(_SplitSide):
    """
    The robot side of a split bundle.

    :param bundle_or_path: a :class:`SplitBundle` or a path to one.
    :param thresholds: one gate threshold per robot exit; None = the bundle's; ``(1.0,) *
        split`` disables the exits (every frame is offloaded).
    :param top_k: classes listed in results.
    """

    def __init__(self, bundle_or_path: Union[SplitBundle, str], thresholds=None,
                 top_k: int = DEFAULT_TOP_K):
        super().__init__(bundle_or_path, SplitBundle.build_robot, top_k)
        self.thresholds = tuple(self.bundle.gate.thresholds if thresholds is None
                                else thresholds)
        if len(self.thresholds) != self.split:
            raise ConfigError(f'{len(self.thresholds)} thresholds for {self.split} robot exits')
        self._gate = self.bundle.gate
        self._segments = self.model.robot_segments
        self._heads = self.model.robot_exit_heads
        scale, zero_point = self.model.quantiser.params()
        self._scale = tuple(float(s) for s in scale)
        self._zero_point = tuple(int(z) for z in zero_point)
        self._blocks = self._blocks_per_exit[:self.split]
        self._input = np.zeros(self.bundle.config.input_shape, np.float32)

    def process(self, image: np.ndarray) -> RobotOutcome:
        """
        Run the robot side on one image.

        :raises ImageError: the image cannot be preprocessed.
        """
        with self._lock:
            t0 = time.perf_counter()
            preprocess(image, self.bundle.preprocessing, out=self._input)
            t1 = time.perf_counter()
            confs, seg_ms, head_ms = [], [], []
            with torch.inference_mode():
                features = torch.from_numpy(self._input).unsqueeze(0)
                for k in range(self.split):
                    s0 = time.perf_counter()
                    features, pooled = self._segments[k](features)
                    s1 = time.perf_counter()
                    probs = softmax(self._heads[k](pooled)[0].numpy())
                    confs.append(float(self._gate.confidence_from_probs(probs)))
                    seg_ms.append((s1 - s0) * 1e3)
                    head_ms.append((time.perf_counter() - s1) * 1e3)
                    if should_exit(confs[-1], self.thresholds[k]):
                        result = self._result(k, probs, confs, t0, t1, seg_ms, head_ms,
                                              'robot')
                        return RobotOutcome(result, None)
                s0 = time.perf_counter()
                codes = self.model.encode(features)[0].numpy()  # (c, h, w) uint8
                seg_ms.append((time.perf_counter() - s0) * 1e3)
            packet = FeaturePacket.from_codes(codes, self._bits, self._scale, self._zero_point,
                                              self.model_id, self.split)
            result = self._result(self.split - 1, probs, confs, t0, t1, seg_ms, head_ms,
                                  'robot-fallback')
            return RobotOutcome(result, packet)

    def _result(self, k, probs, confs, t0, t1, seg_ms, head_ms, side) -> Result:
        top = top_classes(probs, self.labels, self._top_k)
        timings = StageTimings((t1 - t0) * 1e3, tuple(seg_ms), tuple(head_ms),
                               (time.perf_counter() - t0) * 1e3)
        return Result(
            class_id=top[0].class_id, label=top[0].label, score=top[0].score, top_k=top,
            exit_index=k, num_exits=self.num_exits, blocks_run=self._blocks[k],
            blocks_total=self._blocks_total, gate_metric=self._gate.metric,
            gate_confidence=tuple(confs), gate_threshold=self.thresholds[:len(confs)],
            policy='threshold', speculative_segments=0, timings=timings, backend=BACKEND,
            exit_device=EXIT_DEVICE, model_id=self.model_id, answered_by=side)


class SplitServer(_SplitSide):
    """
    The server side of a split bundle: decode a packet, run the tail.

    :param bundle_or_path: a :class:`SplitBundle` or a path to one.
    :param top_k: classes listed in results.
    """

    def __init__(self, bundle_or_path: Union[SplitBundle, str], top_k: int = DEFAULT_TOP_K):
        super().__init__(bundle_or_path, SplitBundle.build_server, top_k)
        self.code_shape = self.bundle.config.code_shape
        self._blocks_run = self._blocks_per_exit[self.split - 1]

    def check(self, packet: FeaturePacket) -> None:
        """Raise :class:`FeatureError` unless ``packet`` was made by this model's robot side."""
        if not isinstance(packet, FeaturePacket):
            raise FeatureError(f'expected a FeaturePacket, got {type(packet).__name__}')
        if packet.model_id != self.model_id:
            raise FeatureError(f'packet from model {packet.model_id!r}, this server runs '
                               f'{self.model_id!r}')
        if packet.split != self.split or packet.shape != self.code_shape \
                or packet.bits != self._bits:
            raise FeatureError(f'packet split {packet.split}, shape {packet.shape}, '
                               f'{packet.bits} bits; expected split {self.split}, shape '
                               f'{self.code_shape}, {self._bits} bits')

    def process(self, packet: FeaturePacket) -> Result:
        """
        Classify one packet.

        :raises FeatureError: the packet does not belong to this model or is malformed.
        """
        self.check(packet)
        with self._lock:
            t0 = time.perf_counter()
            codes = torch.from_numpy(packet.codes()).unsqueeze(0)  # (1, c, h, w)
            values = dequantise(codes, torch.tensor(packet.scale),
                                torch.tensor(packet.zero_point, dtype=torch.float32))
            t1 = time.perf_counter()
            with torch.inference_mode():
                logits = self.model.tail_logits(self.model.decode(values))[0].numpy()
            t2 = time.perf_counter()
        top = top_classes(softmax(logits), self.labels, self._top_k)
        # preprocess_ms is the unpacking and dequantisation here; the tail is one segment.
        timings = StageTimings((t1 - t0) * 1e3, ((t2 - t1) * 1e3,), (), (t2 - t0) * 1e3)
        return Result(
            class_id=top[0].class_id, label=top[0].label, score=top[0].score, top_k=top,
            exit_index=self.split, num_exits=self.num_exits, blocks_run=self._blocks_run,
            blocks_total=self._blocks_total, gate_metric=self.bundle.gate.metric,
            gate_confidence=(), gate_threshold=(), policy='threshold', speculative_segments=0,
            timings=timings, backend=BACKEND, exit_device=EXIT_DEVICE, model_id=self.model_id,
            answered_by='server')


class PendingAnswers:
    """
    Offloaded frames waiting for the server, each answered exactly once.

    A frame is added when its packet is sent, with the robot's fallback result and whatever
    the caller needs to publish it. Then exactly one of two things happens: :meth:`resolve`
    (the server's answer arrived in time: the caller publishes it) or :meth:`expire` (the
    deadline passed: the caller publishes the fallback). A server answer for a frame that
    already fell back, or that was never offloaded, is counted and ignored. Thread-safe.

    :param deadline_s: how long the server has to answer a frame.
    :param clock: a monotonic clock in seconds (tests hand in their own).
    """

    def __init__(self, deadline_s: float, clock=time.monotonic):
        if not deadline_s > 0:
            raise ConfigError(f'deadline must be > 0 s, got {deadline_s!r}')
        self.deadline_s = float(deadline_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._pending = {}  # key -> (due time, item); insertion order = due order
        # Keys that fell back (bounded), so that late answers are told apart from unknown ones.
        self._fallen = {}
        self.counts = {'offloaded': 0, 'server': 0, 'fallback': 0, 'late': 0, 'unknown': 0}

    def add(self, key, item) -> None:
        """Register an offloaded frame (``key`` unique among pending frames)."""
        with self._lock:
            if key in self._pending:
                raise ConfigError(f'frame {key!r} is already pending')
            self._pending[key] = (self._clock() + self.deadline_s, item)
            self.counts['offloaded'] += 1

    def resolve(self, key):
        """Server answered ``key``: its item if the frame still waits (publish the answer)."""
        with self._lock:
            entry = self._pending.pop(key, None)
            if entry is None:
                self.counts['late' if key in self._fallen else 'unknown'] += 1
                return None
            self.counts['server'] += 1
            return entry[1]

    def expire(self, now: Optional[float] = None) -> list:
        """Items whose deadline passed, oldest first (publish their fallbacks)."""
        now = self._clock() if now is None else now
        out = []
        with self._lock:
            for key in list(self._pending):
                due, item = self._pending[key]
                if due > now:
                    break
                del self._pending[key]
                self._remember(key)
                out.append(item)
            self.counts['fallback'] += len(out)
        return out

    def drain(self) -> list:
        """Every pending item, now (shutdown: publish their fallbacks so none is lost)."""
        return self.expire(now=float('inf'))

    def __len__(self):
        with self._lock:
            return len(self._pending)

    def _remember(self, key) -> None:
        self._fallen[key] = None
        if len(self._fallen) > FALLEN_MEMORY:
            self._fallen.pop(next(iter(self._fallen)))
