# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Write an evaluation's results back as a new bag, for inspection in any rosbag2 tool.

The new bag holds the source frames (their CDR bytes copied unchanged) and, per configuration,
a ``gfde_msgs/Classification`` topic ``/gfde_eval/<name>/classification`` whose headers carry
the frame stamps, so results line up with images in Foxglove, rqt_bag or a script. Each result
is rebuilt as a runtime :class:`~gfde_perception.runtime.Result` from the records and turned
into the message by :func:`~gfde_perception.runtime.result.classification_fields`, the mapping
the node publishes with.
"""

import math

from gfde_perception.errors import BagError
from gfde_perception.evaluation.records import MISSING
from gfde_perception.recording import (BagWriter, CLASSIFICATION_TYPE, list_topics, make_header,
                                       make_typestore, message_from_fields, raw_frames)
from gfde_perception.runtime.result import (classification_fields, ClassScore, EnergyReading,
                                            Result, StageTimings)

TOPIC_PREFIX = '/gfde_eval'


def result_topic(name: str) -> str:
    """Topic of configuration ``name``'s results in the written bag."""
    return f'{TOPIC_PREFIX}/{name}/classification'


def _finite(value) -> float:
    return float(value) if value is not None and math.isfinite(value) else 0.0


def recorded_result(records, i: int, class_names) -> Result:
    """
    Rebuild frame ``i``'s result from the records (what they keep of it).

    Kept: class, score, exit, blocks run, the runtime's inference time, energy, and the
    configuration's gate metric, thresholds, policy, backend and model id. Not kept (left
    empty): the rest of the top-k list, per-stage timings, gate confidences.
    """
    info = records.info
    class_id = int(records.class_id[i])
    label = class_names[class_id] if 0 <= class_id < len(class_names) else ''
    score = _finite(records.score[i])
    joules = float(records.energy_j[i])
    return Result(
        class_id=class_id, label=label, score=score, top_k=(ClassScore(class_id, label, score),),
        exit_index=int(records.exit_index[i]), num_exits=records.num_exits,
        blocks_run=int(records.blocks_run[i]), blocks_total=int(records.blocks_total),
        gate_metric=str(info.get('gate_metric', '')), gate_confidence=(),
        gate_threshold=tuple(info.get('thresholds', ())),
        # The records keep the policy as written ('threshold=0.8'); results carry its keyword.
        policy=str(info.get('policy', '')).partition('=')[0], speculative_segments=0,
        timings=StageTimings(0.0, (), (), _finite(records.inference_ms[i])),
        backend=str(info.get('backend', '')), exit_device='',
        model_id=str(info.get('model_id', records.name)),
        energy=EnergyReading(bool(records.energy_measured and math.isfinite(joules)), joules,
                             records.energy_source, records.energy_method))


def write_results_bag(run, out_path, storage: str = 'mcap') -> dict:
    """
    Write ``run``'s frames and results into a new bag at ``out_path``.

    Dropped frames (live mode) get no result message.

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
                fields = classification_fields(
                    recorded_result(records, i, run.class_names),
                    total_ms=_finite(records.latency_ms[i]), source_topic=image_topic,
                    frame_seq=i)
                fields['header'] = make_header(store, stamp, '')
                writer.write(topic, message_from_fields(store, CLASSIFICATION_TYPE, fields),
                             stamp)
                written += 1
            counts[topic] = written
    return counts
