# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""Training data sources: IDX, image folders, rosbag frames, leak-free splits, augmentation."""

import gzip
from pathlib import Path
import struct

import cv2
from gfde_perception.errors import DatasetError
from gfde_perception.preprocessing import preprocess, PreprocessSpec
from gfde_perception.recording import make_bag, MakeBagConfig
from gfde_perception.training.data import (
    augment, AugmentConfig, FASHION_MNIST_DIR, iterate_batches, LabelledImages,
    load_bag_frames, load_fashion_mnist, load_image_folder, make_splits, read_idx,
    split_by_time, split_indices)
import numpy as np
import pytest


def _write_idx(path: Path, array: np.ndarray, compress: bool = True):
    header = struct.pack('>BBBB', 0, 0, 0x08, array.ndim) + struct.pack(
        f'>{array.ndim}I', *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def test_read_idx_round_trip_gz_and_plain(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 4, 3), dtype=np.uint8)
    _write_idx(tmp_path / 'a.gz', images)
    _write_idx(tmp_path / 'b', images, compress=False)
    np.testing.assert_array_equal(read_idx(tmp_path / 'a.gz'), images)
    np.testing.assert_array_equal(read_idx(tmp_path / 'b'), images)


def test_read_idx_rejects_bad_files(tmp_path):
    (tmp_path / 'junk').write_bytes(b'\x01\x02\x03\x04')
    with pytest.raises(DatasetError, match='magic'):
        read_idx(tmp_path / 'junk')
    images = np.zeros((5, 4, 3), np.uint8)
    _write_idx(tmp_path / 'short', images, compress=False)
    (tmp_path / 'short').write_bytes((tmp_path / 'short').read_bytes()[:-3])
    with pytest.raises(DatasetError, match='bytes'):
        read_idx(tmp_path / 'short')
    with pytest.raises(DatasetError, match='not found'):
        read_idx(tmp_path / 'missing')


def test_fashion_mnist_layout_from_any_folder(tmp_path):
    rng = np.random.default_rng(1)
    _write_idx(tmp_path / 't10k-images-idx3-ubyte.gz', rng.integers(0, 256, (7, 28, 28)))
    _write_idx(tmp_path / 't10k-labels-idx1-ubyte.gz', np.arange(7) % 10)
    data = load_fashion_mnist('test', tmp_path)
    assert data.images.shape == (7, 28, 28) and data.images.dtype == np.uint8
    assert list(data.labels) == list(range(7))
    assert data.classes[9] == 'Ankle boot'
    with pytest.raises(DatasetError, match='split'):
        load_fashion_mnist('validation', tmp_path)
    with pytest.raises(DatasetError, match='not found'):
        load_fashion_mnist('train', tmp_path)


@pytest.mark.skipif(not Path(FASHION_MNIST_DIR).is_dir(),
                    reason='Debian dataset-fashion-mnist is not installed')
def test_real_fashion_mnist_official_split_sizes():
    test = load_fashion_mnist('test')
    assert len(test) == 10000 and test.images.shape[1:] == (28, 28)
    assert (test.class_counts() == 1000).all()


def _write_folder(root: Path, per_class: int = 4):
    rng = np.random.default_rng(2)
    for c, name in enumerate(('cat', 'dog')):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
            cv2.imwrite(str(root / name / f'{i}.png'), img[:, :, ::-1])
    (root / 'dog' / 'notes.txt').write_text('not an image')


def test_image_folder_reads_classes_in_sorted_order(tmp_path):
    _write_folder(tmp_path)
    data = load_image_folder(tmp_path)
    assert data.classes == ('cat', 'dog')
    assert list(data.class_counts()) == [4, 4]
    assert data.images.shape == (8, 12, 10, 3)
    # PNG stores BGR in OpenCV; the loader must hand out RGB (the package convention).
    first = cv2.imread(str(tmp_path / 'cat' / '0.png'))[:, :, ::-1]
    np.testing.assert_array_equal(data.images[0], first)


def test_image_folder_errors_name_the_problem(tmp_path):
    with pytest.raises(DatasetError, match='not found'):
        load_image_folder(tmp_path / 'nope')
    (tmp_path / 'empty_class').mkdir()
    with pytest.raises(DatasetError, match='holds no images'):
        load_image_folder(tmp_path)
    _write_folder(tmp_path / 'ok')
    with pytest.raises(DatasetError, match='lacks class folders'):
        load_image_folder(tmp_path / 'ok', classes=('cat', 'bird'))
    (tmp_path / 'bad' / 'x').mkdir(parents=True)
    (tmp_path / 'bad' / 'x' / 'broken.png').write_bytes(b'not a png')
    with pytest.raises(DatasetError, match='cannot decode'):
        load_image_folder(tmp_path / 'bad')


def test_stratified_split_is_disjoint_complete_and_seeded():
    labels = np.repeat(np.arange(3), [50, 30, 2])
    tr, va = split_indices(labels, 0.2, seed=5)
    assert not set(tr) & set(va)
    assert sorted(np.concatenate([tr, va])) == list(range(len(labels)))
    assert np.bincount(labels[va], minlength=3).tolist() == [10, 6, 1]
    tr2, va2 = split_indices(labels, 0.2, seed=5)
    np.testing.assert_array_equal(va, va2)
    _, va3 = split_indices(labels, 0.2, seed=6)
    assert not np.array_equal(va, va3)


def test_make_splits_keeps_test_untouched_and_checks_classes():
    rng = np.random.default_rng(3)
    train = LabelledImages(rng.integers(0, 256, (40, 8, 8), dtype=np.uint8),
                           np.arange(40) % 2, ('a', 'b'))
    test = LabelledImages(rng.integers(0, 256, (6, 8, 8), dtype=np.uint8),
                          np.arange(6) % 2, ('a', 'b'))
    splits = make_splits(train, test, 0.25, seed=0)
    assert len(splits.train) + len(splits.val) == 40
    assert splits.test is test
    train_rows = {im.tobytes() for im in splits.train.images}
    assert not any(im.tobytes() in train_rows for im in splits.val.images)
    other = LabelledImages(test.images, test.labels, ('x', 'y'))
    with pytest.raises(DatasetError, match='differ'):
        make_splits(train, other, 0.25, seed=0)


def test_time_split_puts_validation_after_training():
    tr, va = split_by_time(10, 0.3)
    assert list(tr) == list(range(7)) and list(va) == [7, 8, 9]
    with pytest.raises(DatasetError):
        split_by_time(1, 0.5)


def test_augment_shift_and_flip_move_pixels_not_values():
    image = np.zeros((6, 6), np.uint8)
    image[2, 1] = 200
    rng = np.random.default_rng(0)
    outs = [augment(image, AugmentConfig(hflip=0.5, shift=1), rng) for _ in range(30)]
    assert all(o.shape == image.shape and o.dtype == np.uint8 for o in outs)
    assert all(o.max() in (0, 200) for o in outs)
    assert len({o.tobytes() for o in outs}) > 3
    flipped = augment(image, AugmentConfig(hflip=1.0, shift=0), rng)
    assert flipped[2, 4] == 200


def test_batches_use_the_one_preprocessing_and_resume_exactly():
    rng = np.random.default_rng(4)
    data = LabelledImages(rng.integers(0, 256, (10, 8, 8), dtype=np.uint8), np.arange(10) % 2,
                          ('a', 'b'))
    spec = PreprocessSpec((8, 8), 'gray', (0.5,), (0.25,))
    batches = list(iterate_batches(data, spec, 4))
    assert [b[0].shape for b in batches] == [(4, 1, 8, 8), (4, 1, 8, 8), (2, 1, 8, 8)]
    np.testing.assert_array_equal(batches[0][0][1], preprocess(data.images[1], spec))
    full = list(iterate_batches(data, spec, 4, shuffle=True, seed=9,
                                augment_cfg=AugmentConfig()))
    resumed = list(iterate_batches(data, spec, 4, shuffle=True, seed=9,
                                   augment_cfg=AugmentConfig(), start_batch=1))
    assert len(resumed) == 2
    for a, b in zip(full[1:], resumed):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[2], b[2])


def test_labelled_images_validate_labels():
    with pytest.raises(DatasetError, match='labels must lie'):
        LabelledImages(np.zeros((2, 4, 4), np.uint8), [0, 3], ('a', 'b'))
    with pytest.raises(DatasetError, match='2 images but 1 labels'):
        LabelledImages(np.zeros((2, 4, 4), np.uint8), [0], ('a', 'b'))


def test_bag_frames_become_a_labelled_set(tmp_path):
    rng = np.random.default_rng(5)
    images = [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(6)]
    labels = [0, 1, 1, 0, 1, 0]
    cfg = MakeBagConfig(image_topic='/cam', label_topic='/label', encoding='rgb8')
    make_bag(tmp_path / 'bag', images, labels, ('left', 'right'), cfg)
    data = load_bag_frames(tmp_path / 'bag', '/cam', ('left', 'right'), label_topic='/label')
    assert data.classes == ('left', 'right')
    assert list(data.labels) == labels
    np.testing.assert_array_equal(data.images[2], images[2])
    assert data.source.startswith('rosbag:')
