# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Reading labelled frames from a bag: :func:`read_labelled_frames` and its :class:`FrameReader`.

Images are decoded by :mod:`gfde_perception.image_codec`, the code the node uses, so a replayed
frame is the array the node would have classified. Labels come from a label topic, a sidecar
file (see :mod:`~gfde_perception.recording.labels` and
:mod:`~gfde_perception.recording.matching`) or nowhere (every label is None).
"""

import os
from pathlib import Path
from typing import Iterator, NamedTuple, Optional, Sequence

from gfde_perception import image_codec
from gfde_perception.errors import BagError, ImageError
from gfde_perception.recording.bag import (bag_classes, connections, header_stamp_ns, messages,
                                           OpenBag)
from gfde_perception.recording.labels import label_from_message, load_sidecar, resolve_class
from gfde_perception.recording.matching import match_sidecar, match_topic_labels, quote
from gfde_perception.recording.typestore import (FRAME_TYPES, IMAGE_TYPE, make_typestore,
                                                 register_from_bag)
import numpy as np

# How to treat frames without a label / labels without a frame.
UNLABELLED_POLICIES = ('error', 'skip', 'keep')
ORPHAN_POLICIES = ('error', 'ignore')


class LabelledFrame(NamedTuple):
    """One decoded frame: RGB (H, W, 3) or grey (H, W) array, class index or None, stamp."""

    image: np.ndarray
    label: Optional[int]
    stamp_ns: int


class FrameReader:
    """
    The labelled frames of one image topic: a re-iterable collection with a length.

    Each ``for`` loop (each call of ``iter()``) reads the bag again from the first selected
    frame, so the same reader can feed a warm-up pass, then the timed pass, then a threshold
    sweep; the reader itself is not an iterator (``next(reader)`` is a TypeError).

    Everything that can be checked without decoding images (the bag opens, the topics exist,
    every frame has a label and every label a frame, class names are known) is checked when the
    reader is built by :func:`read_labelled_frames`, so a mistake fails before any work is done.
    Decoding happens while iterating; an undecodable frame raises :class:`BagError` naming it.

    :ivar bag_path: the bag.
    :ivar image_topic: the topic read.
    :ivar class_names: class names used to map label names to indices, or None.
    """

    def __init__(self, bag_path, image_topic: str, labelled: bool,
                 class_names: Optional[tuple], frames: list):
        self.bag_path = Path(bag_path)
        self.image_topic = image_topic
        self.class_names = class_names
        self._labelled = labelled
        # (position in the bag, stamp_ns, label) for each frame that will be yielded.
        self._frames = frames

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def labelled(self) -> bool:
        """Whether frames carry labels (from a topic or a sidecar)."""
        return self._labelled

    @property
    def stamps_ns(self) -> list:
        """Header stamps of the frames that will be yielded, in order."""
        return [stamp for _, stamp, _ in self._frames]

    @property
    def labels(self) -> list:
        """Labels of the frames that will be yielded, in order (None where unlabelled)."""
        return [label for _, _, label in self._frames]

    def __iter__(self) -> Iterator[LabelledFrame]:
        """Decode the selected frames, from the first, as :class:`LabelledFrame` tuples."""
        wanted = {pos: (stamp, label) for pos, stamp, label in self._frames}
        store = make_typestore()
        with OpenBag(self.bag_path) as reader:
            conns = connections(reader, self.image_topic, FRAME_TYPES, 'image')
            for pos, (conn, _, raw) in enumerate(messages(reader, conns, self.bag_path)):
                if pos not in wanted:
                    continue
                stamp, label = wanted[pos]
                yield LabelledFrame(self._decode(store, conn.msgtype, raw, pos, stamp), label,
                                    stamp)

    def _decode(self, store, msgtype: str, raw, pos: int, stamp: int) -> np.ndarray:
        where = f'frame {pos} (stamp {stamp}) on {self.image_topic!r}'
        try:
            msg = store.deserialize_cdr(raw, msgtype)
        except Exception as exc:
            raise BagError(f'{where} cannot be deserialised (corrupt message): {exc}') from exc
        try:
            if msgtype == IMAGE_TYPE:
                return image_codec.raw_to_array(msg.encoding, msg.height, msg.width, msg.step,
                                                msg.is_bigendian, msg.data)
            return image_codec.compressed_to_array(msg.format, msg.data)
        except ImageError as exc:
            raise BagError(f'{where} cannot be decoded: {exc}') from exc


def read_labelled_frames(bag_path, image_topic: str, label_topic: Optional[str] = None,
                         sidecar=None, *, class_names: Optional[Sequence[str]] = None,
                         on_unlabelled: str = 'error', on_orphan_labels: str = 'error',
                         tolerance_ns: int = 0, limit: Optional[int] = None) -> FrameReader:
    """
    Check the labels of the frames on ``image_topic`` and return a reader of those frames.

    :param bag_path: rosbag2 bag: a directory with ``metadata.yaml``, or a ``.mcap`` or ``.db3``
        file.
    :param image_topic: topic of ``sensor_msgs/Image`` or ``sensor_msgs/CompressedImage``.
    :param label_topic: optional topic with the labels (see
        :mod:`~gfde_perception.recording.labels`).
    :param sidecar: optional path of a CSV/JSON label file, or a
        :class:`~gfde_perception.recording.labels.Sidecar`.
    :param class_names: class names in index order (normally the bundle's labels), used to turn
        names into indices; by default those the sidecar declares, else those recorded in the
        bag's metadata by ``gfde-make-bag``, else only numeric labels are accepted.
    :param on_unlabelled: frames without a label: 'error' (default), 'skip' them, or 'keep' them
        with label None.
    :param on_orphan_labels: labels that match no frame: 'error' (default) or 'ignore'.
    :param tolerance_ns: largest distance between a label's stamp and a frame's for them to match
        (0 = exact); the nearest label wins.
    :param limit: keep at most this many frames (the first ones).

    :return: A :class:`FrameReader`: iterate it (as often as needed) for
        :class:`LabelledFrame` ``(image, label, stamp_ns)`` tuples; ``len()`` is the number of
        frames it yields and ``.class_names`` the names used.

    :raises BagError: the bag is missing or corrupt, a topic is missing (the error lists those
        available) or of the wrong type, or labels do not match frames (unlabelled frames,
        labels with no frame, unknown class names, two labels for one frame).
    """
    _check_options(label_topic, sidecar, on_unlabelled, on_orphan_labels, tolerance_ns, limit)
    if isinstance(sidecar, (str, os.PathLike)):
        sidecar = load_sidecar(sidecar)
    if class_names is not None:
        class_names = tuple(str(c) for c in class_names)
    elif sidecar is not None and sidecar.classes is not None:
        class_names = sidecar.classes
    else:
        class_names = bag_classes(bag_path)
    bag_path = Path(bag_path)
    frames, raw_labels = _scan(bag_path, image_topic, label_topic)
    where = f'label topic {label_topic!r}' if label_topic else 'the sidecar'
    if raw_labels is not None:
        labels, orphans = match_topic_labels(frames, raw_labels, tolerance_ns, where)
    elif sidecar is not None:
        labels, orphans = match_sidecar(frames, sidecar, tolerance_ns)
    else:
        selected = [(pos, stamp, None) for pos, stamp, _ in frames]
        return FrameReader(bag_path, image_topic, False, class_names, selected[:limit])
    resolved = _resolve(labels, class_names, where)
    if orphans and on_orphan_labels == 'error':
        raise BagError(f'{len(orphans)} label(s) in {where} match no frame on '
                       f'{image_topic!r} (stamps/keys: {quote(orphans)}); pass '
                       "on_orphan_labels='ignore' to accept")
    missing = [stamp for pos, stamp, _ in frames if pos not in resolved]
    if missing and on_unlabelled == 'error':
        raise BagError(f'{len(missing)} of {len(frames)} frame(s) on {image_topic!r} have '
                       f'no label in {where} (frame stamps: {quote(missing)}); pass '
                       "on_unlabelled='skip' or 'keep' to accept")
    selected = [(pos, stamp, resolved.get(pos)) for pos, stamp, _ in frames
                if pos in resolved or on_unlabelled == 'keep']
    return FrameReader(bag_path, image_topic, True, class_names, selected[:limit])


def _check_options(label_topic, sidecar, on_unlabelled, on_orphan_labels, tolerance_ns, limit):
    if on_unlabelled not in UNLABELLED_POLICIES:
        raise BagError(f'on_unlabelled must be one of {UNLABELLED_POLICIES}, got '
                       f'{on_unlabelled!r}')
    if on_orphan_labels not in ORPHAN_POLICIES:
        raise BagError(f'on_orphan_labels must be one of {ORPHAN_POLICIES}, got '
                       f'{on_orphan_labels!r}')
    if tolerance_ns < 0:
        raise BagError(f'tolerance_ns must be >= 0, got {tolerance_ns}')
    if limit is not None and limit < 1:
        raise BagError(f'limit must be >= 1, got {limit}')
    if label_topic and sidecar is not None:
        raise BagError('give labels either as a label topic or as a sidecar file, not both')


def _scan(bag_path: Path, image_topic: str, label_topic: Optional[str]) -> tuple:
    """
    Read frame stamps (without decoding images) and label messages.

    :return: ``(frames, raw_labels)``: ``(position, header stamp, record time)`` per frame, and
        ``(stamped, stamp or record time, class value)`` per label message (None without a
        label topic).
    """
    store = make_typestore()
    frames = []
    raw_labels = None
    with OpenBag(bag_path) as reader:
        image_conns = connections(reader, image_topic, FRAME_TYPES, 'image')
        label_conns = connections(reader, label_topic, None, 'label') if label_topic else []
        for conn in label_conns:
            register_from_bag(store, conn)
        for pos, (_, logtime, raw) in enumerate(messages(reader, image_conns, bag_path)):
            stamp = header_stamp_ns(raw, image_topic, pos)
            # Cameras that leave the header empty are matched by record time instead.
            frames.append((pos, stamp or int(logtime), int(logtime)))
        if label_conns:
            raw_labels = []
            for i, (conn, logtime, raw) in enumerate(messages(reader, label_conns, bag_path)):
                try:
                    msg = store.deserialize_cdr(raw, conn.msgtype)
                except Exception as exc:
                    raise BagError(f'label message {i} on {label_topic!r} cannot be deserialised '
                                   f'(corrupt message): {exc}') from exc
                stamp, value = label_from_message(msg, conn.msgtype, label_topic)
                raw_labels.append((stamp is not None, stamp if stamp else int(logtime), value))
    if not frames:
        raise BagError(f'image topic {image_topic!r} in {str(bag_path)!r} has no messages')
    return frames, raw_labels


def _resolve(labels: dict, class_names: Optional[tuple], where: str) -> dict:
    """Map every matched label to a class index; unknown classes raise, all named at once."""
    unknown = set()
    resolved = {pos: resolve_class(v, class_names, unknown) for pos, v in labels.items()}
    if unknown:
        known = (f'known classes: {", ".join(class_names)}' if class_names is not None else
                 'pass class_names (e.g. the bundle labels) to map names to indices')
        raise BagError(f'{where} has unknown classes: '
                       f'{", ".join(repr(u) for u in sorted(unknown, key=str))}; {known}')
    return resolved
