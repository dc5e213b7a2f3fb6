# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""``gfde-make-bag``: labelled bags from Fashion-MNIST or an image folder, read back intact."""

import json

import cv2
from gfde_perception import recording
from gfde_perception.cli.make_bag import main
from gfde_perception.errors import ConfigError
from gfde_perception.recording import make_bag, MakeBagConfig
import numpy as np
import pytest

FMNIST = '/usr/share/datasets/fashion-mnist'


def _fashion(count):
    from gfde_perception.training.data import load_fashion_mnist
    data = load_fashion_mnist('test', FMNIST)
    return np.asarray(data.images[:count]), [int(v) for v in data.labels[:count]], data.classes


@pytest.mark.parametrize('storage,encoding,label_type', [
    ('mcap', 'bgr8', 'string'), ('sqlite3', 'mono8', 'int32'), ('mcap', 'png', 'string'),
    ('sqlite3', 'jpeg', 'int32'), ('mcap', 'yuv422', 'string')])
def test_cli_builds_a_resized_labelled_bag(tmp_path, capsys, storage, encoding, label_type):
    images, labels, classes = _fashion(6)
    rc = main([str(tmp_path / 'bag'), '--fashion-mnist', '--fashion-mnist-dir', FMNIST,
               '--count', '6', '--size', '40x30', '--encoding', encoding, '--storage', storage,
               '--label-type', label_type, '--rate', '10', '--quiet'])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary['frames'] == 6 and summary['storage'] == storage
    topics = recording.list_topics(tmp_path / 'bag')
    expected_type = 'String' if label_type == 'string' else 'Int32'
    assert topics['/camera/label'].msgtype.endswith(expected_type)
    # The class names travel in the bag metadata, so string labels resolve without a bundle.
    reader = recording.read_labelled_frames(tmp_path / 'bag', '/camera/image_raw', '/camera/label')
    frames = list(reader)
    assert [f.label for f in frames] == labels
    assert [f.stamp_ns - frames[0].stamp_ns for f in frames] == [i * 100_000_000
                                                                 for i in range(6)]
    for frame, image in zip(frames, images):
        assert frame.image.shape[:2] == (30, 40)
        grey = frame.image if frame.image.ndim == 2 else frame.image[:, :, 1]
        expected = cv2.resize(image, (40, 30), interpolation=cv2.INTER_LINEAR)
        tolerance = 0 if encoding in ('bgr8', 'mono8', 'png') else 12
        assert np.abs(grey.astype(int) - expected).mean() <= tolerance


def test_deterministic_bags_and_sidecar(tmp_path):
    images, labels, classes = _fashion(5)
    config = MakeBagConfig(storage='sqlite3', label_type='none', label_topic='')
    make_bag(tmp_path / 'a', images, labels, classes, config, sidecar=tmp_path / 'a.json')
    make_bag(tmp_path / 'b', images, labels, classes, config, sidecar=tmp_path / 'b.csv')
    first = list(recording.read_labelled_frames(tmp_path / 'a', config.image_topic,
                                                sidecar=tmp_path / 'a.json'))
    second = list(recording.read_labelled_frames(tmp_path / 'b', config.image_topic,
                                                 sidecar=tmp_path / 'b.csv'))
    assert [f.label for f in first] == [f.label for f in second] == labels
    assert [f.stamp_ns for f in first] == [f.stamp_ns for f in second]
    for x, y in zip(first, second):
        np.testing.assert_array_equal(x.image, y.image)


def test_image_folder_source(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for name in ('cat', 'dog'):
        (tmp_path / 'images' / name).mkdir(parents=True)
        for i in range(2):
            cv2.imwrite(str(tmp_path / 'images' / name / f'{i}.png'),
                        rng.integers(0, 255, (20, 24, 3), dtype=np.uint8))
    rc = main([str(tmp_path / 'bag'), '--image-folder', str(tmp_path / 'images'), '--count', '0',
               '--encoding', 'rgb8', '--quiet'])
    assert rc == 0
    reader = recording.read_labelled_frames(tmp_path / 'bag', '/camera/image_raw', '/camera/label')
    assert reader.class_names == ('cat', 'dog')
    assert [f.label for f in reader] == [0, 0, 1, 1]
    first = next(iter(reader)).image
    stored = cv2.cvtColor(cv2.imread(str(tmp_path / 'images' / 'cat' / '0.png')),
                          cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(first, stored)


def test_errors(tmp_path, capsys):
    images, labels, classes = _fashion(2)
    make_bag(tmp_path / 'bag', images, labels, classes)
    assert main([str(tmp_path / 'bag'), '--fashion-mnist', '--count', '2', '--quiet']) == 2
    assert 'already exists' in capsys.readouterr().err
    with pytest.raises(ConfigError, match='encoding'):
        MakeBagConfig(encoding='h264')
    with pytest.raises(ConfigError, match='rate_hz'):
        MakeBagConfig(rate_hz=0)
    with pytest.raises(ConfigError, match='outside'):
        make_bag(tmp_path / 'other', images, [0, 10], classes)
