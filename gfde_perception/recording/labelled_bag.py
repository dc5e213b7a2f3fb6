# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
A labelled bag built from images in memory: what ``gfde-make-bag`` writes.

The bag holds an image topic (``sensor_msgs/Image`` in a raw encoding, or ``CompressedImage``
for jpeg/png) and, optionally, a label topic (``std_msgs/String`` with the class name, or
``std_msgs/Int32`` with the index) written at the same record time as its image. Stamps are
deterministic: frame i is stamped ``start_ns + round(i * 1e9 / rate_hz)``, so the same call
always produces the same messages. Frames can be resized to a camera size (e.g. 640x480), so a
28x28 Fashion-MNIST image arrives the way a camera would send it.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import cv2
from gfde_perception.errors import BagError, ConfigError, GfdeError
from gfde_perception.image_codec import COMPRESSED_FORMATS, ENCODINGS as RAW_ENCODINGS
from gfde_perception.recording.bag import STORAGES
from gfde_perception.recording.labels import write_sidecar
from gfde_perception.recording.typestore import (COMPRESSED_TYPE, IMAGE_TYPE, make_typestore,
                                                 STRING_TYPE)
from gfde_perception.recording.writer import BagWriter, image_message
import numpy as np

ENCODINGS = RAW_ENCODINGS + COMPRESSED_FORMATS
LABEL_TYPES = {'string': STRING_TYPE, 'int32': 'std_msgs/msg/Int32', 'none': None}
# 2023-11-14T22:13:20Z: a fixed, plausible wall-clock start so stamps look like a real recording.
DEFAULT_START_NS = 1_700_000_000 * 1_000_000_000


@dataclass(frozen=True)
class MakeBagConfig:
    """
    How frames are written into the bag.

    :ivar image_topic: topic of the frames.
    :ivar encoding: raw encoding (rgb8, bgr8, mono8, ...) or 'jpeg' / 'png' (CompressedImage).
    :ivar label_topic: topic of the labels ('' = no label topic).
    :ivar label_type: 'string' (class name), 'int32' (class index) or 'none'.
    :ivar storage: 'mcap' or 'sqlite3'.
    :ivar rate_hz: frame rate that sets the stamps.
    :ivar start_ns: stamp of the first frame in nanoseconds.
    :ivar frame_id: header frame id of the images.
    :ivar size: (width, height) to resize every frame to, or None to keep the source size.
    :ivar quality: JPEG quality (1-100).
    """

    image_topic: str = '/camera/image_raw'
    encoding: str = 'rgb8'
    label_topic: str = '/camera/label'
    label_type: str = 'string'
    storage: str = 'mcap'
    rate_hz: float = 30.0
    start_ns: int = DEFAULT_START_NS
    frame_id: str = 'camera'
    size: Optional[tuple] = None
    quality: int = 90

    def __post_init__(self):
        if not self.image_topic:
            raise ConfigError('image_topic must not be empty')
        if self.encoding not in ENCODINGS:
            raise ConfigError(f'encoding must be one of {ENCODINGS}, got {self.encoding!r}')
        if self.label_type not in LABEL_TYPES:
            raise ConfigError(f'label_type must be one of {tuple(LABEL_TYPES)}, got '
                              f'{self.label_type!r}')
        if self.label_type != 'none' and not self.label_topic:
            raise ConfigError(f'label_type {self.label_type!r} needs a label_topic')
        if self.label_topic and self.label_topic == self.image_topic:
            raise ConfigError('label_topic must differ from image_topic')
        if self.storage not in STORAGES:
            raise ConfigError(f'storage must be one of {STORAGES}, got {self.storage!r}')
        if not self.rate_hz > 0:
            raise ConfigError(f'rate_hz must be > 0, got {self.rate_hz}')
        if self.start_ns < 0:
            raise ConfigError(f'start_ns must be >= 0, got {self.start_ns}')
        if self.size is not None:
            size = tuple(int(v) for v in self.size)
            if len(size) != 2 or min(size) < 1:
                raise ConfigError(f'size must be (width, height) >= 1, got {self.size}')
            object.__setattr__(self, 'size', size)
        if not 1 <= int(self.quality) <= 100:
            raise ConfigError(f'quality must be in [1, 100], got {self.quality}')

    def stamp_ns(self, index: int) -> int:
        """Return the deterministic stamp of frame ``index``."""
        return int(self.start_ns + round(index * 1e9 / self.rate_hz))


def resize(image: np.ndarray, size: Optional[tuple]) -> np.ndarray:
    """Resize to (width, height) like a camera driver would scale; None keeps the image."""
    if size is None or (image.shape[1], image.shape[0]) == tuple(size):
        return image
    # Upscaling small dataset images: bilinear looks like an optical image; area for shrinking.
    grow = size[0] * size[1] > image.shape[0] * image.shape[1]
    return cv2.resize(image, tuple(size),
                      interpolation=cv2.INTER_LINEAR if grow else cv2.INTER_AREA)


def make_bag(output, images: Sequence[np.ndarray], labels: Optional[Sequence[int]],
             class_names: Sequence[str], config: MakeBagConfig = MakeBagConfig(),
             sidecar=None, progress: bool = False) -> dict:
    """
    Write ``images`` (with ``labels``) into a new bag at ``output``.

    :param output: path of the bag directory to create (must not exist).
    :param images: arrays in the package convention (RGB ``(H, W, 3)`` or grey ``(H, W)``).
    :param labels: class index per image, or None for an unlabelled bag.
    :param class_names: class names in index order (also recorded in the bag metadata).
    :param config: topics, encoding, storage, stamps and size.
    :param sidecar: optional path of a ``.csv`` or ``.json`` label file to write beside the bag.
    :param progress: show a progress bar.

    :return: A summary dict: path, frames, topics, storage, encoding, first and last stamp.

    :raises BagError: the output exists or a frame cannot be encoded.
    :raises ConfigError: labels and images disagree, or a label is out of range.
    """
    class_names = tuple(str(c) for c in class_names)
    if labels is not None:
        labels = [int(v) for v in labels]
        if len(labels) != len(images):
            raise ConfigError(f'{len(images)} images but {len(labels)} labels')
        bad = [v for v in labels if not 0 <= v < len(class_names)]
        if bad:
            raise ConfigError(f'labels {sorted(set(bad))[:5]} outside [0, {len(class_names)})')
    if len(images) == 0:
        raise ConfigError('no images to write')
    store = make_typestore()
    label_type = LABEL_TYPES[config.label_type] if labels is not None else None
    iterator = range(len(images))
    if progress:
        from tqdm import tqdm
        iterator = tqdm(iterator, desc=f'writing {Path(output).name}', unit='frame')
    with BagWriter(output, config.storage, store) as bag:
        bag.set_classes(class_names)
        msgtype = COMPRESSED_TYPE if config.encoding in COMPRESSED_FORMATS else IMAGE_TYPE
        bag.add_topic(config.image_topic, msgtype)
        if label_type:
            bag.add_topic(config.label_topic, label_type)
        for i in iterator:
            stamp = config.stamp_ns(i)
            image = resize(np.asarray(images[i]), config.size)
            try:
                msg = image_message(store, image, config.encoding, stamp, config.frame_id,
                                    config.quality)
            except GfdeError as exc:
                raise BagError(f'frame {i} cannot be encoded as {config.encoding}: {exc}') from exc
            bag.write(config.image_topic, msg, stamp)
            if label_type == STRING_TYPE:
                bag.write(config.label_topic, store.types[label_type](
                    data=class_names[labels[i]]), stamp)
            elif label_type:
                bag.write(config.label_topic, store.types[label_type](data=labels[i]), stamp)
    if sidecar is not None and labels is not None:
        write_sidecar(sidecar, labels, class_names)
    return {
        'path': str(output), 'frames': len(images), 'storage': config.storage,
        'encoding': config.encoding, 'image_topic': config.image_topic,
        'label_topic': config.label_topic if label_type else None,
        'first_stamp_ns': config.stamp_ns(0), 'last_stamp_ns': config.stamp_ns(len(images) - 1),
        'classes': list(class_names),
    }
