# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Labelled image sources, leak-free splits, augmentation and batching for training.

Every source yields a :class:`LabelledImages`: uint8 images in the package's array convention
((H, W) grey or (H, W, 3) RGB, see :mod:`gfde_perception.preprocessing`), integer labels and class
names. Images stay uint8 until a batch is formed; augmentation works on those uint8 pixels, and
the one preprocessing function (:func:`gfde_perception.preprocessing.preprocess_batch`) turns the
batch into model input, so training sees exactly what the runtime serves.
"""

from dataclasses import dataclass
import gzip
import math
import os
from pathlib import Path
import struct
from typing import Iterator, Optional, Sequence

from gfde_perception.errors import ConfigError, DatasetError
from gfde_perception.preprocessing import preprocess_batch, PreprocessSpec
from gfde_perception.recording import read_labelled_frames
import numpy as np


FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist'
FASHION_MNIST_LABELS = (
    'T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat',
    'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot',
)
IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.pgm', '.ppm')
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: '>i2', 0x0C: '>i4', 0x0D: '>f4', 0x0E: '>f8'}


@dataclass(frozen=True)
class LabelledImages:
    """
    A labelled image set held in memory.

    :ivar images: uint8 array (N, H, W) or (N, H, W, 3) when all images share one size, else a
        tuple of per-image arrays.
    :ivar labels: int64 array (N,) of class indices in ``[0, len(classes))``.
    :ivar classes: class names, index = label.
    :ivar source: where the data came from (recorded in the bundle provenance).

    """

    images: object
    labels: np.ndarray
    classes: tuple
    source: str = ''

    def __post_init__(self):
        labels = np.asarray(self.labels, dtype=np.int64)
        object.__setattr__(self, 'labels', labels)
        object.__setattr__(self, 'classes', tuple(str(c) for c in self.classes))
        if labels.ndim != 1:
            raise DatasetError(f'labels must be one-dimensional, got shape {labels.shape}')
        if len(self.images) != len(labels):
            raise DatasetError(
                f'{len(self.images)} images but {len(labels)} labels in {self.source or "data"}')
        if not self.classes:
            raise DatasetError('a dataset needs at least one class name')
        if len(labels) and (labels.min() < 0 or labels.max() >= len(self.classes)):
            raise DatasetError(
                f'labels must lie in [0, {len(self.classes)}), got '
                f'[{labels.min()}, {labels.max()}]')

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: Sequence[int]) -> 'LabelledImages':
        """Return the images at ``indices`` (same classes)."""
        indices = np.asarray(indices, dtype=np.int64)
        if isinstance(self.images, np.ndarray):
            images = self.images[indices]
        else:
            images = tuple(self.images[i] for i in indices)
        return LabelledImages(images, self.labels[indices], self.classes, self.source)

    def fingerprint(self) -> str:
        """Short hash of labels and pixels: ties cached teacher logits to this exact split."""
        import hashlib

        digest = hashlib.sha256(self.labels.tobytes())
        step = max(1, len(self) // 256)
        for i in range(0, len(self), step):
            digest.update(np.ascontiguousarray(self.images[i]).tobytes())
        return digest.hexdigest()[:16]

    def class_counts(self) -> np.ndarray:
        """Count the images of each class."""
        return np.bincount(self.labels, minlength=len(self.classes))


@dataclass(frozen=True)
class DataSplits:
    """Train, validation and test sets that share classes and never share an image."""

    train: LabelledImages
    val: LabelledImages
    test: Optional[LabelledImages]

    @property
    def classes(self) -> tuple:
        return self.train.classes

    def describe(self) -> dict:
        """Sizes and sources, for metrics and provenance."""
        return {
            'train': len(self.train), 'val': len(self.val),
            'test': len(self.test) if self.test is not None else 0,
            'source': self.train.source, 'classes': list(self.classes),
        }


# ----------------------------------------------------------------------------- readers


def read_idx(path) -> np.ndarray:
    """Read an IDX file (the MNIST family's format), gzip-compressed or not."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f'IDX file not found: {path}')
    opener = gzip.open if path.suffix == '.gz' else open
    try:
        with opener(path, 'rb') as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise DatasetError(f'cannot read IDX file {path}: {exc}') from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DatasetError(f'{path} is not an IDX file (bad magic number)')
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DatasetError(f'{path}: truncated IDX header')
    shape = struct.unpack(f'>{ndim}I', raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    count = int(np.prod(shape))
    if len(raw) - header != count * dtype.itemsize:
        raise DatasetError(
            f'{path}: header says {shape} of {dtype} ({count * dtype.itemsize} bytes) but the '
            f'file holds {len(raw) - header} bytes of data')
    return np.frombuffer(raw, dtype, count, header).reshape(shape).astype(dtype.newbyteorder('='))


def _idx_file(root: Path, stem: str) -> Path:
    for name in (stem + '.gz', stem):
        if (root / name).is_file():
            return root / name
    raise DatasetError(f'{stem}[.gz] not found in {root}')


def load_fashion_mnist(split: str = 'train', root=FASHION_MNIST_DIR) -> LabelledImages:
    """
    Load the official Fashion-MNIST ``'train'`` (60,000) or ``'test'`` (10,000) split.

    Reads the IDX files that Debian's ``dataset-fashion-mnist`` installs (the same layout as the
    original distribution), so any directory holding those four files works.
    """
    if split not in ('train', 'test'):
        raise DatasetError(f"Fashion-MNIST split must be 'train' or 'test', got {split!r}")
    root = Path(root)
    prefix = 'train' if split == 'train' else 't10k'
    images = read_idx(_idx_file(root, f'{prefix}-images-idx3-ubyte'))
    labels = read_idx(_idx_file(root, f'{prefix}-labels-idx1-ubyte'))
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DatasetError(f'expected (N, 28, 28) uint8 images, got {images.dtype} {images.shape}')
    return LabelledImages(images, labels.astype(np.int64), FASHION_MNIST_LABELS,
                          f'fashion-mnist:{split}')


def _read_image(path: Path) -> np.ndarray:
    import cv2  # OpenCV decodes every common format; imported here so data.py stays light.

    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise DatasetError(f'cannot decode image {path}')
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    if image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    elif image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    elif image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.dtype != np.uint8:
        raise DatasetError(f'{path}: unsupported pixel type {image.dtype}')
    return np.ascontiguousarray(image)


def load_image_folder(root, classes: Optional[Sequence[str]] = None) -> LabelledImages:
    """
    Load an image-folder dataset: one sub-folder per class, images inside.

    :param root: folder whose sub-folders are named after the classes.
    :param classes: class order to use (e.g. the training set's, for a separate test folder); by
        default the sorted sub-folder names.

    :raises DatasetError: missing folder, no class folders, an empty class, an undecodable image.

    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f'image folder not found: {root}')
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith('.'))
    if classes is None:
        classes = found
    classes = tuple(classes)
    if not classes:
        raise DatasetError(f'{root} has no class sub-folders (expected root/<class>/<image>)')
    missing = [c for c in classes if c not in found]
    if missing:
        raise DatasetError(f'{root} lacks class folders {missing}')
    images, labels = [], []
    for index, name in enumerate(classes):
        files = sorted(p for p in (root / name).rglob('*')
                       if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DatasetError(f'class folder {root / name} holds no images ({IMAGE_SUFFIXES})')
        for path in files:
            images.append(_read_image(path))
            labels.append(index)
    return LabelledImages(_stack_if_uniform(images), np.asarray(labels), classes,
                          f'image-folder:{root}')


def load_bag_frames(bag_path, image_topic: str, classes: Optional[Sequence[str]] = None,
                    label_topic: Optional[str] = None, sidecar=None,
                    max_frames: Optional[int] = None) -> LabelledImages:
    """
    Load labelled frames from a rosbag2 bag (image topic plus a label topic or sidecar file).

    Reading is delegated to :func:`gfde_perception.recording.read_labelled_frames`, the
    project's one bag reader. ``classes`` maps label names to indices; by default the names the
    sidecar or the bag's metadata declare. Frames keep their recording order (split them with
    :func:`split_by_time` so near-duplicate neighbours do not land in both train and val).
    """
    reader = read_labelled_frames(bag_path, image_topic, label_topic=label_topic,
                                  sidecar=sidecar, class_names=classes, limit=max_frames)
    images, labels = [], []
    for image, label, _stamp in reader:
        if image.dtype != np.uint8:
            # 16-bit cameras: rescale to 8 bit, as preprocessing's scale to [0, 1] would.
            image = (image.astype(np.uint32) * 255 // 65535).astype(np.uint8)
        images.append(np.ascontiguousarray(image))
        labels.append(int(label))
    if not images:
        raise DatasetError(f'no labelled frames on {image_topic} in {bag_path}')
    names = classes if classes is not None else getattr(reader, 'class_names', None)
    if not names:
        names = tuple(str(i) for i in range(max(labels) + 1))
    return LabelledImages(_stack_if_uniform(images), np.asarray(labels), names,
                          f'rosbag:{os.fspath(bag_path)}:{image_topic}')


def _stack_if_uniform(images: list):
    shapes = {im.shape for im in images}
    return np.stack(images) if len(shapes) == 1 else tuple(images)


# ----------------------------------------------------------------------------- splits


def split_indices(labels: np.ndarray, val_fraction: float, seed: int) -> tuple:
    """
    Stratified, seeded train/validation index split (disjoint, covering every index).

    Each class gives ``round(val_fraction * count)`` images (at least one when it has two or
    more) to validation, so small classes are still measured.
    """
    if not 0.0 < val_fraction < 1.0:
        raise DatasetError(f'val_fraction must be in (0, 1), got {val_fraction}')
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train, val = [], []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        n_val = int(round(val_fraction * len(idx)))
        if len(idx) >= 2:
            n_val = min(max(n_val, 1), len(idx) - 1)
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def split_by_time(count: int, val_fraction: float) -> tuple:
    """
    Split ordered frames into a leading train block and a trailing validation block.

    Consecutive video frames are near duplicates; a random split would leak them across sets.
    """
    if not 0.0 < val_fraction < 1.0:
        raise DatasetError(f'val_fraction must be in (0, 1), got {val_fraction}')
    n_val = max(1, int(round(val_fraction * count)))
    if n_val >= count:
        raise DatasetError(f'{count} frames are too few to split')
    return np.arange(count - n_val), np.arange(count - n_val, count)


def make_splits(train: LabelledImages, test: Optional[LabelledImages], val_fraction: float,
                seed: int, temporal: bool = False) -> DataSplits:
    """
    Carve a validation split from ``train``; ``test`` stays untouched.

    :raises DatasetError: fewer than two classes with images (nothing to classify), or
        ``test`` uses other classes than ``train``.

    """
    present = np.flatnonzero(train.class_counts())
    if len(present) < 2:
        names = [train.classes[i] for i in present] or list(train.classes)
        raise DatasetError(
            f'a classifier needs at least two classes with images; {train.source or "the data"} '
            f'has {len(present)} ({names}): add a sub-folder per class')
    if test is not None and tuple(test.classes) != tuple(train.classes):
        raise DatasetError(
            f'test classes {test.classes} differ from training classes {train.classes}')
    if temporal:
        tr, va = split_by_time(len(train), val_fraction)
    else:
        tr, va = split_indices(train.labels, val_fraction, seed)
    return DataSplits(train.subset(tr), train.subset(va), test)


# ----------------------------------------------------------------------------- batches


@dataclass(frozen=True)
class AugmentConfig:
    """
    Light augmentation for small images, applied to uint8 pixels before preprocessing.

    :ivar hflip: probability of a horizontal mirror.
    :ivar shift: maximum translation in pixels (zero padding), drawn independently per axis.
    :ivar brightness: maximum relative change of pixel intensity (0 disables).
    :ivar erase: probability of random erasing (Zhong et al., 2017): a rectangle of 2-25% of
        the image, aspect ratio 0.3-3.3, filled with uniform noise (0 disables).
    :ivar views: 0 draws a fresh augmentation every time an image is used; V > 0 fixes V views
        per image (view 0 the image itself, the others augmented with a generator seeded by
        the image and the view), of which every epoch shows one at random. A teacher then labels
        exactly the views the student sees (augmentation-consistent distillation).

    """

    hflip: float = 0.5
    shift: int = 2
    brightness: float = 0.0
    erase: float = 0.0
    views: int = 0

    def __post_init__(self):
        if not 0.0 <= self.hflip <= 1.0:
            raise ConfigError(f'augment.hflip must be in [0, 1], got {self.hflip}')
        if self.shift < 0:
            raise ConfigError(f'augment.shift must be >= 0, got {self.shift}')
        if not 0.0 <= self.brightness < 1.0:
            raise ConfigError(f'augment.brightness must be in [0, 1), got {self.brightness}')
        if not 0.0 <= self.erase <= 1.0:
            raise ConfigError(f'augment.erase must be in [0, 1], got {self.erase}')
        if isinstance(self.views, bool) or not isinstance(self.views, int) \
                or not 0 <= self.views <= 64:
            raise ConfigError(f'augment.views must be an int in [0, 64], got {self.views!r}')

    @property
    def rows_per_image(self) -> int:
        """Rows of per-image data (teacher logits) each image has: one per view, at least 1."""
        return max(1, self.views)


def augment(image: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Return an augmented copy of one uint8 image (mirror, shift, brightness)."""
    out = image
    if cfg.hflip and rng.random() < cfg.hflip:
        out = out[:, ::-1]
    if cfg.shift:
        dy, dx = rng.integers(-cfg.shift, cfg.shift + 1, size=2)
        if dy or dx:
            shifted = np.zeros_like(out)
            h, w = out.shape[:2]
            if dy >= 0:
                ys, yd = slice(0, h - dy), slice(dy, h)
            else:
                ys, yd = slice(-dy, h), slice(0, h + dy)
            if dx >= 0:
                xs, xd = slice(0, w - dx), slice(dx, w)
            else:
                xs, xd = slice(-dx, w), slice(0, w + dx)
            shifted[yd, xd] = out[ys, xs]
            out = shifted
    if cfg.brightness:
        gain = 1.0 + rng.uniform(-cfg.brightness, cfg.brightness)
        out = np.clip(out.astype(np.float32) * gain, 0, 255).astype(np.uint8)
    if cfg.erase and rng.random() < cfg.erase:
        out = _erase(out, rng)
    return np.ascontiguousarray(out)


def _erase(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Fill one random rectangle (2-25% of the area, aspect 0.3-3.3) with uniform noise."""
    h, w = image.shape[:2]
    area = h * w * rng.uniform(0.02, 0.25)
    aspect = math.exp(rng.uniform(math.log(0.3), math.log(3.3)))
    eh = min(h, max(1, int(round(math.sqrt(area * aspect)))))
    ew = min(w, max(1, int(round(math.sqrt(area / aspect)))))
    y, x = int(rng.integers(0, h - eh + 1)), int(rng.integers(0, w - ew + 1))
    out = np.array(image, copy=True)
    top = np.iinfo(out.dtype).max if out.dtype.kind == 'u' else 1.0
    out[y:y + eh, x:x + ew] = rng.uniform(0, top, out[y:y + eh, x:x + ew].shape).astype(
        out.dtype)
    return out


def view_of(image: np.ndarray, index: int, view: int, cfg: AugmentConfig) -> np.ndarray:
    """Return fixed view ``view`` of image ``index`` (view 0: the image itself)."""
    if view == 0:
        return image
    return augment(image, cfg, np.random.default_rng((index, view, 0x9FDE)))


def iterate_batches(data: LabelledImages, spec: PreprocessSpec, batch_size: int,
                    shuffle: bool = False, seed: int = 0,
                    augment_cfg: Optional[AugmentConfig] = None,
                    start_batch: int = 0) -> Iterator[tuple]:
    """
    Yield ``(inputs (B, C, H, W) float32, labels (B,), rows (B,))`` numpy batches.

    ``rows`` index per-image data such as cached teacher logits: the image index, or with
    ``augment_cfg.views`` = V the row ``index * V + view`` of the view shown. The order of an
    epoch is a pure function of ``seed`` so a resumed run continues at ``start_batch`` with
    exactly the batches it had not seen yet. Augmentation draws from a generator seeded by
    ``(seed, batch)`` for the same reason.
    """
    if batch_size < 1:
        raise DatasetError(f'batch_size must be >= 1, got {batch_size}')
    n = len(data)
    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    views = augment_cfg.views if augment_cfg is not None else 0
    for b, start in enumerate(range(0, n, batch_size)):
        if b < start_batch:
            continue
        idx = order[start:start + batch_size]
        rows = idx
        if augment_cfg is None:
            images = [data.images[i] for i in idx]
        elif views:
            chosen = np.random.default_rng((seed, b)).integers(0, views, size=len(idx))
            images = [view_of(data.images[i], int(i), int(v), augment_cfg)
                      for i, v in zip(idx, chosen)]
            rows = idx * views + chosen
        else:
            rng = np.random.default_rng((seed, b))
            images = [augment(data.images[i], augment_cfg, rng) for i in idx]
        yield preprocess_batch(images, spec), data.labels[idx], rows


def iterate_views(data: LabelledImages, spec: PreprocessSpec, batch_size: int,
                  augment_cfg: AugmentConfig) -> Iterator[tuple]:
    """
    Yield every fixed view of every image, in row order (``index * V + view``).

    Batches are ``(inputs, labels, rows)`` like :func:`iterate_batches`; used to label every
    view a student will see (:attr:`AugmentConfig.views`).
    """
    views = augment_cfg.rows_per_image
    total = len(data) * views
    for start in range(0, total, batch_size):
        rows = np.arange(start, min(total, start + batch_size))
        images = [view_of(data.images[r // views], int(r // views), int(r % views), augment_cfg)
                  for r in rows]
        yield preprocess_batch(images, spec), data.labels[rows // views], rows


def num_batches(count: int, batch_size: int) -> int:
    """Return how many batches :func:`iterate_batches` yields for ``count`` images."""
    return (count + batch_size - 1) // batch_size
