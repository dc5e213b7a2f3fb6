# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Offline replay: every configuration classifies every frame in this process.

This module holds the one timing loop of the evaluation (:func:`time_prediction`): a GFDE bundle
run by the runtime and a plain torch teacher are timed by the same code around the same call,
preprocessing included, so every ratio in a report compares like with like. Frames are decoded
once, outside the timed region, and handed to all configurations in turn. Three orders:

* ``'rotating-blocks'`` (the benchmark's): ``block`` frames through one configuration, then the
  same frames through the next, the configuration order rotating from block to block. Slow
  drifts of the machine (other load, clocks) spread evenly over all configurations, while each
  still runs with warm caches; measured here, rotating per frame raised one model's p50 by
  20-30% against timing it in a block (see /work/shared/BENCHMARKING.md);
* ``'interleaved'``: the order rotates from frame to frame (the same frame, every model);
* ``'blocked'``: one configuration over all frames, then the next.
"""

import os
import platform
import time
from typing import Optional, Sequence

from gfde_perception.errors import ConfigError
from gfde_perception.evaluation.records import ConfigurationRecords, EvaluationRun
from gfde_perception.gating import confidence, first_exit
from gfde_perception.preprocessing import preprocess_batch
import numpy as np
import torch

ORDERS = ('rotating-blocks', 'interleaved', 'blocked')


def host_info(threads: int = 0) -> dict:
    """Return the machine and library versions figures are measured on."""
    info = {
        'platform': platform.platform(), 'machine': platform.machine(),
        'processor': platform.processor() or platform.machine(),
        'cpu_count': os.cpu_count(), 'python': platform.python_version(),
        'numpy': np.__version__, 'torch': torch.__version__,
        'torch_threads': torch.get_num_threads(), 'requested_threads': threads,
        'cuda': bool(torch.cuda.is_available()),
    }
    if info['cuda']:
        info['gpu'] = torch.cuda.get_device_name(0)
    return info


def time_prediction(configuration, image: np.ndarray, meter=None):
    """
    Run one prediction and time it: the evaluation's one timing loop body.

    :return: ``(prediction, latency_ms, energy)``; ``energy`` is the meter's reading for the
        call (None without a meter). The meter is read outside the timed region.
    """
    mark = meter.begin() if meter is not None else None
    t0 = time.perf_counter_ns()
    prediction = configuration.predict(image)
    t1 = time.perf_counter_ns()
    energy = meter.end(mark) if meter is not None else None
    return prediction, (t1 - t0) / 1e6, energy


def run_offline(frames, configurations: Sequence, *, warmup: int = 5,
                order: str = 'interleaved', meter=None, progress: bool = True,
                source: Optional[dict] = None, class_names: Sequence[str] = (),
                threads: int = 0, block: int = 200) -> EvaluationRun:
    """
    Replay ``frames`` through every configuration and record predictions and timings.

    :param frames: a re-iterable of ``(image, label, stamp_ns)`` (a
        :class:`~gfde_perception.recording.FrameReader` or a list); labels may be None.
    :param configurations: built configurations (see :mod:`.configurations`), names unique.
    :param warmup: frames run through each configuration untimed first (caches, allocator,
        lazy initialisation), taken from the start of ``frames``.
    :param order: 'rotating-blocks', 'interleaved' or 'blocked' (see the module docstring).
    :param meter: optional :class:`~gfde_perception.runtime.energy.EnergyMeter`.
    :param progress: show a progress bar.
    :param source: description of where the frames came from, stored in the run.
    :param class_names: class names in index order.
    :param threads: torch intra-op threads for every configuration (0 keeps the default).
    :param block: frames per block for ``order='rotating-blocks'``.
    :return: an :class:`EvaluationRun` with one :class:`ConfigurationRecords` per
        configuration.
    :raises ConfigError: bad arguments, or no frames.
    """
    if order not in ORDERS:
        raise ConfigError(f'order must be one of {ORDERS}, got {order!r}')
    if warmup < 0:
        raise ConfigError(f'warmup must be >= 0, got {warmup}')
    if block < 1:
        raise ConfigError(f'block must be >= 1, got {block}')
    names = [c.spec.name for c in configurations]
    if not names:
        raise ConfigError('no configurations to evaluate')
    if len(set(names)) != len(names):
        raise ConfigError(f'configuration names must be unique, got {names}')
    if threads:
        torch.set_num_threads(int(threads))
    records = [ConfigurationRecords(c.spec.name, c.describe()) for c in configurations]
    if warmup:
        for count, (image, _, _) in enumerate(frames):
            if count >= warmup:
                break
            for conf in configurations:
                conf.predict(image)
    stamps, labels = [], []
    total = len(frames) if hasattr(frames, '__len__') else None
    bar = None
    if progress:
        from tqdm import tqdm
        steps = total * len(configurations) if total is not None else None
        bar = tqdm(total=steps, desc='offline replay', unit='pred')
    try:
        if order == 'rotating-blocks':
            chunk = []
            n = len(configurations)

            def run_chunk(index):
                for j in range(n):
                    k = (index + j) % n
                    for image, _label, _stamp in chunk:
                        records[k].append(*time_prediction(configurations[k], image, meter))
                if bar is not None:
                    bar.update(n * len(chunk))

            for image, label, stamp in frames:
                stamps.append(int(stamp))
                labels.append(label)
                chunk.append((image, label, stamp))
                if len(chunk) == block:
                    run_chunk(len(stamps) // block - 1)
                    chunk = []
            if chunk:
                run_chunk(len(stamps) // block)
        elif order == 'interleaved':
            for i, (image, label, stamp) in enumerate(frames):
                stamps.append(int(stamp))
                labels.append(label)
                n = len(configurations)
                for j in range(n):
                    k = (i + j) % n
                    records[k].append(*time_prediction(configurations[k], image, meter))
                if bar is not None:
                    bar.update(n)
        else:
            for k, conf in enumerate(configurations):
                for image, label, stamp in frames:
                    if k == 0:
                        stamps.append(int(stamp))
                        labels.append(label)
                    records[k].append(*time_prediction(conf, image, meter))
                    if bar is not None:
                        bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    if not stamps:
        raise ConfigError('no frames to evaluate')
    labelled = any(v is not None for v in labels)
    return EvaluationRun(
        mode='offline', source=dict(source or {}), class_names=tuple(class_names),
        stamps_ns=stamps, labels=labels if labelled else None, configurations=records,
        host=host_info(threads),
        settings={'warmup': warmup, 'order': order, 'threads': threads, 'block': block,
                  'energy_meter': getattr(getattr(meter, 'source', None), 'name', 'none')})


# ----------------------------------------------------------------------------- trade-off


def exit_confidences(bundle, frames, batch_size: int = 256) -> tuple:
    """
    Run the bundle's model on all frames and return its per-exit outputs.

    :return: ``(predictions (E, N) int, confidences (E, N) float)`` for every exit E (the final
        one last), the confidence being the gate metric of the bundle.
    """
    model = bundle.build_model()
    metric = bundle.gate.metric
    weights = bundle.gate.learned_weights
    preds, confs = [], []

    def flush(batch):
        with torch.inference_mode():
            out = model(torch.from_numpy(preprocess_batch(batch, bundle.preprocessing)))
        logits = [t.float().numpy() for t in tuple(out.exit_logits) + (out.logits,)]
        preds.append(np.stack([lg.argmax(axis=1) for lg in logits]))
        confs.append(np.stack([np.asarray(confidence(lg, metric, weights), dtype=np.float64)
                               for lg in logits]))

    batch = []
    for image, _, _ in frames:
        batch.append(image)
        if len(batch) == batch_size:
            flush(batch)
            batch = []
    if batch:
        flush(batch)
    return np.concatenate(preds, axis=1), np.concatenate(confs, axis=1)


def simulate_exits(confidences: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """
    Exit index each frame takes under ``thresholds`` (one per early exit).

    :param confidences: (E, N) confidences of every exit, the final one included (ignored).
    :return: (N,) exit indices, decided by :func:`gfde_perception.gating.first_exit`, the
        runtime's own rule.
    """
    num_exits = confidences.shape[0]
    if len(thresholds) != num_exits - 1:
        raise ConfigError(f'{num_exits} exits need {num_exits - 1} thresholds, got '
                          f'{len(thresholds)}')
    return np.asarray(first_exit(confidences[:-1], list(thresholds)), dtype=np.int64)


def tradeoff_curve(predictions: np.ndarray, confidences: np.ndarray, targets: np.ndarray,
                   blocks_per_exit: Sequence[int], thresholds=None) -> list:
    """
    Accuracy (or agreement with ``targets``) and compute against one shared exit threshold.

    :param predictions: (E, N) class predicted at every exit.
    :param confidences: (E, N) gate confidence at every exit.
    :param targets: (N,) labels, or a reference's predictions.
    :param blocks_per_exit: backbone blocks completed at each exit (last = total depth).
    :param thresholds: thresholds to sweep (default 0, 0.05, ..., 1).
    :return: one dict per threshold: threshold, accuracy, blocks_fraction, exit_histogram.
    """
    if thresholds is None:
        thresholds = np.round(np.linspace(0.0, 1.0, 21), 4)
    num_exits = predictions.shape[0]
    cost = np.asarray(blocks_per_exit, dtype=np.float64) / float(blocks_per_exit[-1])
    points = []
    for t in thresholds:
        taken = simulate_exits(confidences, [float(t)] * (num_exits - 1))
        chosen = predictions[taken, np.arange(predictions.shape[1])]
        points.append({
            'threshold': float(t),
            'accuracy': float(np.mean(chosen == targets)),
            'blocks_fraction': float(np.mean(cost[taken])),
            'exit_histogram': np.bincount(taken, minlength=num_exits).tolist(),
        })
    return points


def per_exit_accuracy(predictions: np.ndarray, targets: np.ndarray) -> list:
    """Accuracy of every exit if all frames left there."""
    return [float(np.mean(p == targets)) for p in predictions]


def bundle_tradeoff(bundle, frames, targets: np.ndarray, target_kind: str) -> dict:
    """Trade-off curve of one bundle on ``frames`` against ``targets`` (labels or reference)."""
    predictions, confidences = exit_confidences(bundle, frames)
    if predictions.shape[1] != len(targets):
        raise ConfigError(f'{predictions.shape[1]} frames but {len(targets)} targets')
    blocks = list(bundle.config.exit_blocks) + [_total_blocks(bundle)]
    thresholds = tuple(float(t) for t in bundle.gate.thresholds)
    operating = simulate_exits(confidences, thresholds)
    chosen = predictions[operating, np.arange(predictions.shape[1])]
    cost = np.asarray(blocks, dtype=np.float64) / blocks[-1]
    return {
        'target': target_kind, 'metric': bundle.gate.metric, 'blocks_per_exit': blocks,
        'curve': tradeoff_curve(predictions, confidences, targets, blocks),
        'per_exit_accuracy': per_exit_accuracy(predictions, targets),
        'operating_point': {'thresholds': list(thresholds),
                            'accuracy': float(np.mean(chosen == targets)),
                            'blocks_fraction': float(np.mean(cost[operating]))},
    }


def _total_blocks(bundle) -> int:
    model_blocks = getattr(bundle.config, 'blocks_per_exit', None)
    if model_blocks:
        return int(model_blocks[-1])
    backbone = bundle.config.backbone
    depth = backbone.depths if getattr(backbone, 'hierarchical', False) else backbone.depth
    return int(sum(depth)) if isinstance(depth, (tuple, list)) else int(depth)
