# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Reading labelled frames from rosbag2 bags written by the third-party ``rosbags`` writer.

The bags here are written with ``rosbags.rosbag2.Writer`` directly and the pixels packed by plain
numpy, so the reader is checked against an independent writer rather than against itself.
"""

import json

from gfde_perception import recording
from gfde_perception.errors import BagError
import numpy as np
import pytest

FMNIST = '/usr/share/datasets/fashion-mnist'
IMAGE = '/camera/image_raw'
LABEL = '/camera/label'
START = 1_700_000_000_000_000_000
PERIOD = 33_333_333


@pytest.fixture(scope='module')
def fashion():
    """Twelve real Fashion-MNIST test frames and their labels."""
    from gfde_perception.training.data import load_fashion_mnist
    data = load_fashion_mnist('test', FMNIST)
    return np.asarray(data.images[:12]), [int(v) for v in data.labels[:12]], data.classes


def _write_bag(path, images, labels, classes, storage='mcap', label_kind='string',
               compressed=None, stamps=None, label_stamps=None, extra_labels=()):
    """Write a bag with rosbags' own Writer; rgb8 pixels packed by numpy."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import get_typestore, Stores

    store = get_typestore(Stores.ROS2_KILTED)
    if label_kind == 'classification':
        store = recording.make_typestore()
    types = store.types
    plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
    stamps = stamps or [START + i * PERIOD for i in range(len(images))]
    label_stamps = label_stamps or stamps
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        msgtype = 'sensor_msgs/msg/CompressedImage' if compressed else 'sensor_msgs/msg/Image'
        img_conn = writer.add_connection(IMAGE, msgtype, typestore=store)
        label_type = {'string': 'std_msgs/msg/String', 'int32': 'std_msgs/msg/Int32',
                      'classification': 'gfde_msgs/msg/Classification'}.get(label_kind)
        lab_conn = (writer.add_connection(LABEL, label_type, typestore=store)
                    if label_type else None)
        for i, image in enumerate(images):
            sec, nsec = divmod(stamps[i], 1_000_000_000)
            header = types['std_msgs/msg/Header'](
                stamp=types['builtin_interfaces/msg/Time'](sec=sec, nanosec=nsec),
                frame_id='cam')
            if compressed:
                import cv2
                ok, data = cv2.imencode('.' + compressed, image)
                assert ok
                msg = types[msgtype](header=header, format=compressed, data=data.reshape(-1))
            else:
                rgb = np.repeat(image[:, :, None], 3, axis=2)
                msg = types[msgtype](header=header, height=rgb.shape[0], width=rgb.shape[1],
                                     encoding='rgb8', is_bigendian=0, step=rgb.shape[1] * 3,
                                     data=rgb.reshape(-1))
            writer.write(img_conn, stamps[i], store.serialize_cdr(msg, msgtype))
        if lab_conn is None:
            return
        entries = [(label_stamps[i], v) for i, v in enumerate(labels)] + list(extra_labels)
        for stamp, value in entries:
            if label_kind == 'string':
                msg = types[label_type](data=value if isinstance(value, str) else classes[value])
            elif label_kind == 'int32':
                msg = types[label_type](data=int(value))
            else:
                msg = _classification(types, stamp, int(value))
            # Stamped labels are recorded a little late, as a real labeller would publish them.
            logtime = stamp + (1_000_000 if label_kind == 'classification' else 0)
            writer.write(lab_conn, logtime, store.serialize_cdr(msg, label_type))


def _classification(types, stamp, class_id):
    sec, nsec = divmod(stamp, 1_000_000_000)
    header = types['std_msgs/msg/Header'](
        stamp=types['builtin_interfaces/msg/Time'](sec=sec, nanosec=nsec), frame_id='cam')
    latency = types['gfde_msgs/msg/StageLatency'](
        decode_ms=0.0, preprocess_ms=0.0, segment_ms=np.zeros(0, np.float32),
        exit_head_ms=np.zeros(0, np.float32), inference_ms=0.0, queue_ms=0.0, total_ms=0.0,
        frame_age_ms=0.0)
    energy = types['gfde_msgs/msg/Energy'](
        measured=False, joules=float('nan'), source='none', method='')
    return types['gfde_msgs/msg/Classification'](
        header=header, class_id=class_id, label='', score=1.0, top_k=[], exit_index=0,
        num_exits=1, blocks_run=1, blocks_total=1, gate_metric='max_softmax',
        gate_confidence=np.zeros(0, np.float32), gate_threshold=np.zeros(0, np.float32),
        policy='final', speculative_segments=0, latency=latency, energy=energy, backend='',
        exit_device='', model_id='', answered_by='', source_topic='', frame_seq=0)


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
@pytest.mark.parametrize('label_kind', ['string', 'int32'])
def test_real_fashion_mnist_frames_and_labels_round_trip(tmp_path, fashion, storage, label_kind):
    images, labels, classes = fashion
    _write_bag(tmp_path / 'bag', images, labels, classes, storage, label_kind)
    reader = recording.read_labelled_frames(tmp_path / 'bag', IMAGE, LABEL, class_names=classes)
    assert len(reader) == len(images)
    frames = list(reader)
    assert [f.label for f in frames] == labels
    assert [f.stamp_ns for f in frames] == [START + i * PERIOD for i in range(len(images))]
    for frame, image in zip(frames, images):
        assert frame.image.shape == (28, 28, 3)
        np.testing.assert_array_equal(frame.image[:, :, 1], image)


def test_the_reader_is_a_collection_each_loop_reads_from_the_first_frame(tmp_path, fashion):
    images, labels, classes = fashion
    _write_bag(tmp_path / 'bag', images, labels, classes)
    reader = recording.read_labelled_frames(tmp_path / 'bag', IMAGE, LABEL, class_names=classes,
                                            limit=5)
    first = iter(reader)
    next(first)
    # A second loop, even while the first is under way, starts again from frame 0.
    assert [f.stamp_ns for f in reader] == reader.stamps_ns == [START + i * PERIOD
                                                                for i in range(5)]
    assert next(first).stamp_ns == START + PERIOD
    with pytest.raises(TypeError):
        next(reader)  # one protocol: the reader is iterable, not an iterator with a cursor


@pytest.mark.parametrize('fmt', ['png', 'jpeg'])
def test_compressed_frames_decode(tmp_path, fashion, fmt):
    images, labels, classes = fashion
    _write_bag(tmp_path / 'bag', images, labels, classes, compressed=fmt)
    frames = list(recording.read_labelled_frames(tmp_path / 'bag', IMAGE, LABEL,
                                                 class_names=classes))
    for frame, image in zip(frames, images):
        assert frame.image.shape == (28, 28)
        error = np.abs(frame.image.astype(int) - image).mean()
        assert error == 0 if fmt == 'png' else error < 8


def test_stamped_labels_match_by_header_stamp(tmp_path, fashion):
    images, labels, classes = fashion
    _write_bag(tmp_path / 'bag', images, labels, classes, label_kind='classification')
    frames = list(recording.read_labelled_frames(tmp_path / 'bag', IMAGE, LABEL))
    assert [f.label for f in frames] == labels


def test_unlabelled_bag_yields_none(tmp_path, fashion):
    images, labels, classes = fashion
    _write_bag(tmp_path / 'bag', images, labels, classes, label_kind='none')
    reader = recording.read_labelled_frames(tmp_path / 'bag', IMAGE)
    assert not reader.labelled
    assert [f.label for f in reader] == [None] * len(images)


def test_single_mcap_file_opens(tmp_path, fashion):
    images, labels, classes = fashion
    _write_bag(tmp_path / 'bag', images, labels, classes)
    frames = list(recording.read_labelled_frames(tmp_path / 'bag' / 'bag.mcap', IMAGE, LABEL,
                                                 class_names=classes, limit=3))
    assert [f.label for f in frames] == labels[:3]


def test_sidecar_csv_and_json(tmp_path, fashion):
    images, labels, classes = fashion
    _write_bag(tmp_path / 'bag', images, labels, classes, label_kind='none')
    by_index = tmp_path / 'labels.csv'
    by_index.write_text('index,label\n' + ''.join(f'{i},{v}\n' for i, v in enumerate(labels)))
    reader = recording.read_labelled_frames(tmp_path / 'bag', IMAGE, sidecar=by_index)
    got = [f.label for f in reader]
    assert got == labels
    by_stamp = tmp_path / 'labels.json'
    by_stamp.write_text(json.dumps({
        'key': 'stamp_ns', 'classes': list(classes),
        'labels': {str(START + i * PERIOD): classes[v] for i, v in enumerate(labels)}}))
    reader = recording.read_labelled_frames(tmp_path / 'bag', IMAGE, sidecar=by_stamp)
    got = [f.label for f in reader]
    assert got == labels


def test_tolerance_matches_nearest_label(tmp_path, fashion):
    images, labels, classes = fashion
    late = [START + i * PERIOD + 2_000_000 for i in range(len(images))]
    _write_bag(tmp_path / 'bag', images, labels, classes, label_stamps=late)
    with pytest.raises(BagError, match='no label'):
        recording.read_labelled_frames(tmp_path / 'bag', IMAGE, LABEL, class_names=classes,
                                       on_orphan_labels='ignore')
    reader = recording.read_labelled_frames(tmp_path / 'bag', IMAGE, LABEL, class_names=classes,
                                            tolerance_ns=5_000_000)
    assert [f.label for f in reader] == labels


def test_missing_topics_list_the_available_ones(tmp_path, fashion):
    images, labels, classes = fashion
    _write_bag(tmp_path / 'bag', images, labels, classes)
    with pytest.raises(BagError, match=r"'/camera/rgb'.*available topics: /camera/image_raw "
                                       r'\[sensor_msgs/msg/Image, 12 msgs\], /camera/label'):
        recording.read_labelled_frames(tmp_path / 'bag', '/camera/rgb', LABEL)
    with pytest.raises(BagError, match="label topic '/labels' is not in the bag"):
        recording.read_labelled_frames(tmp_path / 'bag', IMAGE, '/labels')
    with pytest.raises(BagError, match='expected one of sensor_msgs'):
        recording.read_labelled_frames(tmp_path / 'bag', LABEL)


def test_label_mismatches_are_reported(tmp_path, fashion):
    images, labels, classes = fashion
    # The last frame has no label; one label stamped where no frame exists.
    stray = (START + 999 * PERIOD, 3)
    _write_bag(tmp_path / 'bag', images, labels[:-1], classes, extra_labels=[stray])
    with pytest.raises(BagError, match='1 label.* match no frame .*' + str(stray[0])):
        recording.read_labelled_frames(tmp_path / 'bag', IMAGE, LABEL, class_names=classes)
    with pytest.raises(BagError, match='1 of 12 frame.* no label'):
        recording.read_labelled_frames(tmp_path / 'bag', IMAGE, LABEL, class_names=classes,
                                       on_orphan_labels='ignore')
    kept = recording.read_labelled_frames(tmp_path / 'bag', IMAGE, LABEL, class_names=classes,
                                          on_orphan_labels='ignore', on_unlabelled='keep')
    assert [f.label for f in kept] == labels[:-1] + [None]
    skipped = recording.read_labelled_frames(tmp_path / 'bag', IMAGE, LABEL, class_names=classes,
                                             on_orphan_labels='ignore', on_unlabelled='skip')
    assert len(skipped) == 11 and skipped.labels == labels[:-1]


def test_unknown_class_names_are_reported(tmp_path, fashion):
    images, labels, classes = fashion
    names = [classes[v] for v in labels]
    names[2] = 'Hat'
    _write_bag(tmp_path / 'bag', images, names, classes)
    with pytest.raises(BagError, match="unknown classes: 'Hat'; known classes: T-shirt/top"):
        recording.read_labelled_frames(tmp_path / 'bag', IMAGE, LABEL, class_names=classes)
    with pytest.raises(BagError, match='pass class_names'):
        recording.read_labelled_frames(tmp_path / 'bag', IMAGE, LABEL)


def test_two_labels_for_one_frame_are_reported(tmp_path, fashion):
    images, labels, classes = fashion
    twice = (START, (labels[0] + 1) % 10)
    _write_bag(tmp_path / 'bag', images, labels, classes, extra_labels=[twice])
    with pytest.raises(BagError, match='two different labels'):
        recording.read_labelled_frames(tmp_path / 'bag', IMAGE, LABEL, class_names=classes)


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_corrupt_bags_give_bag_errors(tmp_path, fashion, storage):
    images, labels, classes = fashion
    _write_bag(tmp_path / 'bag', images, labels, classes, storage)
    data_file = next(p for p in (tmp_path / 'bag').iterdir() if p.suffix in ('.mcap', '.db3'))
    raw = data_file.read_bytes()
    data_file.write_bytes(raw[:len(raw) // 3])
    with pytest.raises(BagError, match='corrupt'):
        list(recording.read_labelled_frames(tmp_path / 'bag', IMAGE, LABEL, class_names=classes))
    (tmp_path / 'bag' / 'metadata.yaml').write_text('not: [valid')
    with pytest.raises(BagError, match='cannot open bag'):
        recording.read_labelled_frames(tmp_path / 'bag', IMAGE)
    with pytest.raises(BagError, match='does not exist'):
        recording.read_labelled_frames(tmp_path / 'nothing', IMAGE)


def test_bad_sidecars_give_bag_errors(tmp_path):
    bad = tmp_path / 'labels.csv'
    bad.write_text('frame_number,what\n0,1\n')
    with pytest.raises(BagError, match='key column'):
        recording.load_sidecar(bad)
    bad = tmp_path / 'labels.json'
    bad.write_text('{"key": "time", "labels": []}')
    with pytest.raises(BagError, match='"key" must be one of'):
        recording.load_sidecar(bad)
    bad.write_text('{oops')
    with pytest.raises(BagError, match='not valid JSON'):
        recording.load_sidecar(bad)


def test_gfde_msgs_types_are_registered_and_written_back(tmp_path):
    store = recording.make_typestore()
    msg = _classification(store.types, START, 4)
    with recording.BagWriter(tmp_path / 'out', 'sqlite3', store) as writer:
        writer.add_topic('/classification', recording.CLASSIFICATION_TYPE)
        writer.write('/classification', msg, START)
    topics = recording.list_topics(tmp_path / 'out')
    assert topics['/classification'].msgtype == recording.CLASSIFICATION_TYPE
    assert topics['/classification'].count == 1
    with pytest.raises(BagError, match='already exists'):
        recording.BagWriter(tmp_path / 'out')
