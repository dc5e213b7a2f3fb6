# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
The classifier: a bundle and an image in, a :class:`~gfde_perception.runtime.result.Result` out.

Heterogeneous execution: the backbone segments run on the backend's device (the "accelerator":
a GPU, or the calling thread on a CPU-only machine) while each exit head and its gate run on a
CPU worker thread pool. With the speculative schedule the backbone starts segment k+1 as soon as
segment k has produced the pooled feature, while the worker decides on exit k; when exit k is
taken the speculative segment is discarded and nothing further is started. Speculation only
changes when work runs, never what is computed, so predictions are identical under either
schedule (tested).

Steady state: the input buffer is allocated once by the backend (pinned on CUDA) and every
frame is preprocessed into it; warm-up frames run at load; the profile is a bounded deque.
"""

from concurrent.futures import ThreadPoolExecutor
import logging
import math
import threading
import time
from typing import Optional, Union

from gfde_perception.bundle import Bundle, load_bundle
from gfde_perception.errors import BackendError, ConfigError
from gfde_perception.gating import exits_now
from gfde_perception.preprocessing import preprocess
from gfde_perception.runtime.backends import (cache_decision, cached_decision, host_signature,
                                              load_backend, SCHEDULE_FILE)
from gfde_perception.runtime.config import RuntimeConfig
from gfde_perception.runtime.energy import EnergyMeter
from gfde_perception.runtime.heads import choose_head_runner
from gfde_perception.runtime.policies import ExitPolicy, ThresholdPolicy
from gfde_perception.runtime.result import EnergyReading, Result, StageTimings, top_classes
from gfde_perception.runtime.stage_profile import FrameRecord, RuntimeProfile
import numpy as np
import torch

LOG = logging.getLogger(__name__)
EXIT_DEVICE = 'cpu-worker'
INLINE_EXIT_DEVICE = 'cpu-inline'


class Classifier:
    """
    Early-exit GFDE inference on one bundle.

    :param bundle_or_path: a loaded :class:`~gfde_perception.bundle.Bundle` or a ``.gfde`` path.
    :param config: runtime configuration (backend, schedule, workers, warm-up...).
    :param policy: exit policy; None uses the bundle's calibrated thresholds.
    :param energy_meter: an :class:`EnergyMeter` to use (tests inject one); None opens the
        counter ``config.energy`` names.
    :raises BundleError: the bundle cannot be loaded.
    :raises BackendError: no backend could be loaded at all.
    """

    def __init__(self, bundle_or_path: Union[Bundle, str], config: RuntimeConfig = None,
                 policy: Optional[ExitPolicy] = None,
                 energy_meter: Optional[EnergyMeter] = None):
        config = config or RuntimeConfig()
        if not isinstance(config, RuntimeConfig):
            raise ConfigError(f'config must be a RuntimeConfig, got {type(config).__name__}')
        self.config = config
        # Where the load-time went, in seconds per part, in order (the node logs it).
        self.load_seconds = {}
        t0 = time.perf_counter()
        if isinstance(bundle_or_path, Bundle):
            self.bundle = bundle_or_path
        else:
            self.bundle = load_bundle(bundle_or_path)
            self.load_seconds['bundle'] = time.perf_counter() - t0
        bundle = self.bundle
        if config.threads:
            torch.set_num_threads(config.threads)
        self.num_exits = bundle.config.num_exits
        self.blocks_per_exit = tuple(bundle.config.blocks_per_exit)
        self.labels = tuple(bundle.labels)
        self.model_id = f'{bundle.name}@{bundle.checksum[:12]}'
        self._gate = bundle.gate
        self._max_softmax = bundle.gate.metric == 'max_softmax'
        self._spec = bundle.preprocessing
        self._top_k = min(config.top_k, bundle.config.num_classes)
        self._lock = threading.Lock()
        self._closed = False
        self._pool = None
        self._backend = None
        self._meter = None
        try:
            self._setup(policy, energy_meter)
        except BaseException:
            self.close()
            raise

    def _setup(self, policy, energy_meter):
        config, bundle = self.config, self.bundle
        mark = time.perf_counter()
        self._backend, self.backend_reason = load_backend(bundle, config)
        mark = self._took('backend', mark)
        LOG.info('%s: backend %s (%s)', self.model_id, self._backend.name, self.backend_reason)
        # Heads always run on the host in fp32, from the reference (FFT) model's heads.
        cpu_model = bundle.build_model(deployable=False).eval()
        self._heads, self.head_impls = [], []
        for k, head in enumerate(cpu_model.exit_heads):
            dim = _in_features(head)
            runner, impl, why = choose_head_runner(head, dim, config.head_impl)
            self._heads.append(runner)
            self.head_impls.append(impl)
            LOG.debug('exit head %d runs in %s (%s)', k, impl, why)
        self.head_impls = tuple(self.head_impls)
        mark = self._took('exit heads', mark)
        if config.exit_workers:
            self._pool = ThreadPoolExecutor(max_workers=config.exit_workers,
                                            thread_name_prefix='gfde-exit')
        # Heads run on the pool unless there is none or 'auto' measures that inline is faster.
        self.pooled_heads = self._pool is not None
        self._policy = None
        self.set_policy(policy if policy is not None else ThresholdPolicy())
        self.profile = RuntimeProfile(self.num_exits, config.profile_window,
                                      self.blocks_per_exit)
        # A meter handed in belongs to the caller (it may outlive this classifier).
        self._owns_meter = energy_meter is None
        self._meter = energy_meter if energy_meter is not None else EnergyMeter.create(
            config.energy)
        self._unknown_energy = EnergyReading.unknown(self._meter.reason)
        if self._meter.available and config.energy_baseline_s > 0:
            watts = self._meter.measure_baseline(config.energy_baseline_s)
            LOG.info('idle baseline %.2f W (%s)', watts, self._meter.source.name)
        self.speculative = config.schedule != 'sequential' and self._pool is not None
        self.schedule_reason = ('forced by configuration' if self._pool is not None else
                                'sequential: exit heads run inline (exit_workers=0)')
        mark = self._took('pool and energy counter', mark)
        self._warm_up()

    # -- public API -------------------------------------------------------------------------

    @property
    def policy(self) -> ExitPolicy:
        """Return the exit policy in force."""
        return self._policy

    @property
    def backend(self) -> str:
        """Return the name of the backend running the backbone, e.g. 'torch-cpu'."""
        return self._backend.name

    @property
    def exit_device(self) -> str:
        """Return where exit heads run: 'cpu-worker' (the pool) or 'cpu-inline'."""
        return EXIT_DEVICE if self.pooled_heads else INLINE_EXIT_DEVICE

    @property
    def schedule(self) -> str:
        """Return the schedule in force: 'speculative' or 'sequential'."""
        return 'speculative' if self.speculative else 'sequential'

    @property
    def energy_meter(self) -> EnergyMeter:
        """Return the energy meter (its ``reason`` says which counter, or why none)."""
        return self._meter

    def set_policy(self, policy: ExitPolicy):
        """
        Swap the exit policy; it takes effect at the next frame (thread-safe).

        The policy is bound to this model first: one that does not fit raises
        :class:`ConfigError` and the current policy stays.
        """
        if not isinstance(policy, ExitPolicy):
            raise ConfigError(f'policy must be an ExitPolicy, got {type(policy).__name__}')
        policy.bind(self.num_exits, tuple(self._gate.thresholds))
        # One reference assignment: a frame in flight keeps the policy it started with.
        self._policy = policy
        LOG.info('%s: exit policy %s', self.model_id, policy.describe())

    def classify(self, image: np.ndarray) -> Result:
        """
        Classify one image ((H, W, 3) RGB or (H, W) grey, any size; see preprocessing).

        :raises ImageError: the image cannot be preprocessed.
        :raises BackendError: the classifier is closed or the backend failed.
        """
        with self._lock:
            if self._closed:
                raise BackendError('the classifier is closed')
            # Read the policy reference once: a swap from another thread lands between frames.
            result, record = self._classify(image, self._policy, self.speculative,
                                            self.pooled_heads)
            self.profile.add(record)
            # The policy in force now (possibly just swapped in) plans the next frame.
            self._policy.update(self.profile)
            return result

    def close(self):
        """Stop the worker pool, release the backend and the energy counter (idempotent)."""
        # Taking the frame lock lets a frame in flight on another thread finish first.
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._pool is not None:
                self._pool.shutdown(wait=True)
            if self._backend is not None:
                self._backend.close()
            if self._meter is not None and getattr(self, '_owns_meter', False):
                self._meter.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # -- the frame ------------------------------------------------------------------------

    def _classify(self, image, policy: ExitPolicy, speculative: bool, pooled: bool) -> tuple:
        # The per-frame path: everything here is paid on every camera frame, so it does only
        # what the result needs (one softmax per exit, reused for the gate and the top-k).
        thresholds = policy.thresholds()
        meter = self._meter
        mark = meter.begin() if meter.available else None
        t0 = time.perf_counter()
        preprocess(image, self._spec, out=self._backend.input)
        t1 = time.perf_counter()
        exit_k, probs, confs, head_ms, seg_ms, n_spec = self._run(thresholds, speculative,
                                                                  pooled)
        t2 = time.perf_counter()
        energy = meter.end(mark) if mark is not None else self._unknown_energy
        timings = StageTimings((t1 - t0) * 1e3, seg_ms, head_ms, (t2 - t0) * 1e3)
        top = top_classes(probs, self.labels, self._top_k)
        result = Result(
            class_id=top[0].class_id, label=top[0].label, score=top[0].score, top_k=top,
            exit_index=exit_k, num_exits=self.num_exits,
            blocks_run=self.blocks_per_exit[exit_k], blocks_total=self.blocks_per_exit[-1],
            gate_metric=self._gate.metric, gate_confidence=confs,
            gate_threshold=thresholds[:min(exit_k + 1, self.num_exits - 1)],
            policy=policy.name, speculative_segments=n_spec, timings=timings,
            backend=self._backend.name,
            exit_device=EXIT_DEVICE if pooled else INLINE_EXIT_DEVICE, model_id=self.model_id,
            energy=energy)
        record = FrameRecord(timings.preprocess_ms, seg_ms, head_ms, timings.inference_ms,
                             exit_k, confs, energy.joules if energy.measured else math.nan,
                             n_spec)
        return result, record

    def _head_task(self, k: int, pooled) -> tuple:
        # Runs on a worker thread (or inline): the feature on the host, then head, softmax, gate.
        feature = self._backend.pooled_to_numpy(pooled)
        t0 = time.perf_counter()
        logits = self._heads[k](feature)
        top = float(logits.max())
        z = np.exp(logits - top, dtype=np.float64)
        total = float(z.sum())
        # NaN or infinite logits make the maximum or the sum non-finite: one check covers both.
        if not (math.isfinite(top) and math.isfinite(total)):
            raise BackendError(f'exit {k} produced non-finite logits')
        probs = z / total
        # max_softmax (the usual gate) is exp(0) / total: no second pass over the probabilities.
        conf = 1.0 / total if self._max_softmax else self._gate.confidence_from_probs(probs)
        return probs, conf, (time.perf_counter() - t0) * 1e3

    def _run(self, thresholds: tuple, speculative: bool, pooled: bool) -> tuple:
        """Run segments and exits until one is taken; the scheduler of one frame."""
        backend, last = self._backend, self.num_exits - 1
        run = backend.run_segment(0, backend.start())
        executed = [run]
        confs, head_ms = [], []
        discarded = None
        k = 0
        while True:
            ahead = None
            if pooled:
                future = self._pool.submit(self._head_task, k, run.pooled)
                # Speculate only where exit k is in doubt or certainly not taken: a threshold
                # <= 0 exits for sure, so running segment k+1 would be pure waste.
                if speculative and k < last and thresholds[k] > 0.0:
                    ahead = backend.run_segment(k + 1, run.features)
                probs, conf, ms = future.result()
            else:
                probs, conf, ms = self._head_task(k, run.pooled)
            confs.append(conf)
            head_ms.append(ms)
            if k == last or exits_now(conf, thresholds[k]):
                discarded = ahead
                break
            run = ahead if ahead is not None else backend.run_segment(k + 1, run.features)
            executed.append(run)
            k += 1
        seg_ms = [r.elapsed_ms() for r in executed]
        n_spec = 0
        if discarded is not None:
            n_spec = 1
            # On an asynchronous device the abandoned segment may still be running: list its
            # time only if it already finished, never wait for it.
            if discarded.finished():
                seg_ms.append(discarded.elapsed_ms())
        return k, probs, tuple(confs), tuple(head_ms), tuple(seg_ms), n_spec

    # -- load-time work -----------------------------------------------------------------------

    def _synthetic_images(self, n: int) -> list:
        h, w = self._spec.input_size
        shape = (h, w) if self._spec.channels == 1 else (h, w, 3)
        rng = np.random.default_rng(0)
        return [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(max(n, 1))]

    def _took(self, part: str, since: float) -> float:
        """Note in :attr:`load_seconds` that ``part`` took since ``since``; return now."""
        now = time.perf_counter()
        self.load_seconds[part] = now - since
        return now

    def _warm_up(self):
        config = self.config
        images = self._synthetic_images(4)
        policy = self._policy
        mark = time.perf_counter()
        for i in range(config.warmup):
            self._classify(images[i % len(images)], policy, self.speculative, self.pooled_heads)
        mark = self._took('warm-up', mark)
        if config.schedule == 'auto' and self._pool is not None:
            self._choose_schedule(images, policy)
            self._took('schedule', mark)
        self.profile.clear()

    def _choose_schedule(self, images: list, policy: ExitPolicy):
        """
        Time the three schedules on interleaved frames; keep the fastest for this backend.

        Speculative and sequential both hand exit heads to the worker pool; 'inline' runs them
        on the backbone's thread. Where both sides share the CPU the hand-off can cost more
        than any overlap gains, and only a measurement on this machine can tell. The decision
        is cached per bundle, backend, worker count and host, like the backend's, so that a
        restart does not measure again.
        """
        plans = {'speculative': (True, True), 'sequential': (False, True),
                 'inline heads': (False, False)}
        key = (f'{self.bundle.checksum}|{self._backend.name}|workers={self.config.exit_workers}'
               f'|{host_signature(self.config)}')
        cached = cached_decision(self.config, SCHEDULE_FILE, key)
        if cached and cached.get('plan') in plans:
            self.speculative, self.pooled_heads = plans[cached['plan']]
            self.schedule_reason = ('cached decision for this bundle, backend and host: '
                                    f'{cached.get("why", "")}')
            return
        samples = {name: [] for name in plans}
        for i in range(self.config.measure_iters):
            for name, (speculative, pooled) in plans.items():
                result, _ = self._classify(images[i % len(images)], policy, speculative, pooled)
                samples[name].append(result.timings.inference_ms)
        medians = {name: float(np.median(times)) for name, times in samples.items()}
        best = min(medians, key=medians.get)
        self.speculative, self.pooled_heads = plans[best]
        timings = ', '.join(f'{ms:.3f} ms {name}' for name, ms in medians.items())
        self.schedule_reason = (f'{best}: measured median {timings} over '
                                f'{self.config.measure_iters} frames each on '
                                f'{self._backend.name}')
        cache_decision(self.config, SCHEDULE_FILE, key,
                       {'plan': best, 'why': self.schedule_reason})
        LOG.info('%s: schedule %s, exit heads %s (%s)', self.model_id, self.schedule,
                 self.exit_device, self.schedule_reason)


def _in_features(head: torch.nn.Module) -> int:
    for module in head.modules():
        if isinstance(module, torch.nn.Linear):
            return module.in_features
    raise BackendError(f'exit head {type(head).__name__} has no linear layer')
