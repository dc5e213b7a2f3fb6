# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Write an evaluation's results back as a new bag, for inspection in any rosbag2 tool.

The new bag holds the source frames (their CDR bytes copied unchanged) and, per configuration,
a ``gfde_msgs/Classification`` topic ``/gfde_eval/<name>/classification`` whose headers carry
the frame stamps, so results line up with images in Foxglove, rqt_bag or a script.
"""

import math

from gfde_perception.errors import BagError
from gfde_perception.evaluation.bags import (BagWriter, CLASSIFICATION_TYPE, list_topics,
                                             make_header, make_typestore, raw_frames)
from gfde_perception.evaluation.records import MISSING
import numpy as np

TOPIC_PREFIX = '/gfde_eval'


def result_topic(name: str) -> str:
    """Topic of configuration ``name``'s results in the written bag."""
    return f'{TOPIC_PREFIX}/{name}/classification'


def _classification(store, stamp_ns: int, records, i: int, class_names, image_topic: str):
    types = store.types
    class_id = records.class_id[i]
    num_exits = records.num_exits
    latency = types['gfde_msgs/msg/StageLatency'](
        decode_ms=0.0, preprocess_ms=0.0, segment_ms=np.zeros(0, np.float32),
        exit_head_ms=np.zeros(0, np.float32),
        inference_ms=_f(records.inference_ms[i]), queue_ms=0.0,
        total_ms=_f(records.latency_ms[i]), frame_age_ms=0.0)
    joules = records.energy_j[i]
    energy = types['gfde_msgs/msg/Energy'](
        measured=bool(records.energy_measured and math.isfinite(joules)),
        joules=float(joules), source=records.energy_source, method=records.energy_method)
    label = class_names[class_id] if 0 <= class_id < len(class_names) else ''
    score = types['gfde_msgs/msg/ClassScore'](class_id=int(class_id), label=label,
                                              score=_f(records.score[i]))
    blocks = records.blocks_fraction[i]
    return types[CLASSIFICATION_TYPE](
        header=make_header(store, stamp_ns, ''), class_id=int(class_id), label=label,
        score=_f(records.score[i]), top_k=[score], exit_index=int(records.exit_index[i]),
        num_exits=int(num_exits), blocks_run=int(round(1000 * blocks)) if math.isfinite(blocks)
        else 0, blocks_total=1000, gate_metric=str(records.info.get('gate_metric', '')),
        gate_confidence=np.zeros(0, np.float32), gate_threshold=np.asarray(
            records.info.get('thresholds', []), dtype=np.float32),
        policy=str(records.info.get('policy', '')), speculative_segments=0, latency=latency,
        energy=energy, backend=str(records.info.get('backend', '')), exit_device='',
        model_id=str(records.info.get('model_id', records.name)), answered_by='',
        source_topic=image_topic,
        frame_seq=int(i))


def _f(value) -> float:
    return float(value) if value is not None and math.isfinite(value) else 0.0


def write_results_bag(run, out_path, storage: str = 'mcap') -> dict:
    """
    Write ``run``'s frames and results into a new bag at ``out_path``.

    ``blocks_run``/``blocks_total`` carry the backbone share in thousandths (the records keep
    the share, not the block counts). Dropped frames (live mode) get no result message.

    :return: ``{topic: messages written}``.
    :raises BagError: the source bag cannot be read or the output exists.
    """
    source = run.source.get('bag')
    image_topic = run.source.get('image_topic')
    if not source or not image_topic:
        raise BagError('the run does not name its source bag and image topic')
    store = make_typestore()
    counts = {}
    stamps = run.stamps_ns
    wanted = set(stamps)
    topics = list_topics(source)
    if image_topic not in topics:
        raise BagError(f'image topic {image_topic!r} is not in {source!r}')
    with BagWriter(out_path, storage, store) as writer:
        writer.add_topic(image_topic, topics[image_topic].msgtype)
        n = 0
        for _, logtime, stamp, raw in raw_frames(source, image_topic):
            if stamp in wanted:
                writer.write_raw(image_topic, raw, logtime)
                n += 1
        counts[image_topic] = n
        for records in run.configurations:
            topic = result_topic(records.name)
            writer.add_topic(topic, CLASSIFICATION_TYPE)
            written = 0
            for i, stamp in enumerate(stamps):
                if records.class_id[i] == MISSING:
                    continue
                writer.write(topic, _classification(store, stamp, records, i, run.class_names,
                                                    image_topic), stamp)
                written += 1
            counts[topic] = written
    return counts
