# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""Writing rosbag2 bags (mcap or sqlite3) with ``rosbags``: images, labels, results."""

import json
from pathlib import Path
from typing import Sequence

from gfde_perception import image_codec
from gfde_perception.errors import BagError
from gfde_perception.recording.bag import CLASSES_KEY, STORAGES
from gfde_perception.recording.typestore import COMPRESSED_TYPE, IMAGE_TYPE, make_typestore
from gfde_perception.stamps import ns_to_stamp
import numpy as np


def stamp_to_time(store, stamp_ns: int):
    """Return a ``builtin_interfaces/Time`` for a stamp in nanoseconds."""
    sec, nanosec = ns_to_stamp(stamp_ns)
    return store.types['builtin_interfaces/msg/Time'](sec=sec, nanosec=nanosec)


def make_header(store, stamp_ns: int, frame_id: str = ''):
    """Return a ``std_msgs/Header`` with the given stamp and frame id."""
    Header = store.types['std_msgs/msg/Header']
    return Header(stamp=stamp_to_time(store, stamp_ns), frame_id=frame_id)


def image_message(store, image: np.ndarray, encoding: str, stamp_ns: int, frame_id: str = '',
                  quality: int = 90):
    """
    Build a ``sensor_msgs/Image`` (raw encodings) or ``CompressedImage`` ('jpeg', 'png').

    ``image`` follows the package convention (RGB ``(H, W, 3)`` or grey ``(H, W)``); the pixel
    conversion is :mod:`gfde_perception.image_codec`'s.
    """
    header = make_header(store, stamp_ns, frame_id)
    if encoding in image_codec.COMPRESSED_FORMATS:
        data = image_codec.array_to_compressed(image, encoding, quality)
        return store.types[COMPRESSED_TYPE](
            header=header, format=encoding, data=np.frombuffer(data, dtype=np.uint8))
    step, data, bigendian = image_codec.array_to_raw(image, encoding)
    return store.types[IMAGE_TYPE](
        header=header, height=int(image.shape[0]), width=int(image.shape[1]),
        encoding=encoding, is_bigendian=int(bool(bigendian)), step=int(step),
        data=np.frombuffer(data, dtype=np.uint8))


class BagWriter:
    """
    Write a rosbag2 bag (mcap or sqlite3) with ``rosbags``; use as a context manager.

    Example::

        with BagWriter('out_bag', storage='mcap') as bag:
            bag.add_topic('/camera/image_raw', 'sensor_msgs/msg/Image')
            bag.write('/camera/image_raw', msg, stamp_ns)
    """

    def __init__(self, path, storage: str = 'mcap', store=None):
        from rosbags.rosbag2 import StoragePlugin, Writer

        if storage not in STORAGES:
            raise BagError(f'storage must be one of {STORAGES}, got {storage!r}')
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f'output bag {str(self.path)!r} already exists; choose a new path')
        self.store = store if store is not None else make_typestore()
        plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
        self._writer = Writer(self.path, version=9, storage_plugin=plugin)
        self._conns = {}
        self.count = 0

    def __enter__(self):
        try:
            self._writer.open()
        except Exception as exc:
            raise BagError(f'cannot create bag {str(self.path)!r}: {exc}') from exc
        return self

    def __exit__(self, *exc_info):
        self._writer.close()
        return False

    def add_topic(self, topic: str, msgtype: str) -> None:
        """Declare a topic; its type must be known to the type store."""
        if topic in self._conns:
            raise BagError(f'topic {topic!r} declared twice')
        if msgtype not in self.store.types:
            raise BagError(f'message type {msgtype!r} is unknown to the type store')
        self._conns[topic] = self._writer.add_connection(topic, msgtype, typestore=self.store)

    def set_classes(self, class_names: Sequence[str]) -> None:
        """
        Record the class names (index order) in the bag's metadata ``custom_data``.

        :func:`~gfde_perception.recording.reader.read_labelled_frames` uses them to turn class
        names on a label topic into indices when the caller gives none.
        """
        self._writer.set_custom_data(CLASSES_KEY, json.dumps([str(c) for c in class_names]))

    def write_raw(self, topic: str, data, timestamp_ns: int) -> None:
        """Record already serialised CDR bytes on ``topic`` (copying messages between bags)."""
        conn = self._conns.get(topic)
        if conn is None:
            raise BagError(f'topic {topic!r} was not declared with add_topic')
        self._writer.write(conn, int(timestamp_ns), bytes(data))
        self.count += 1

    def write(self, topic: str, msg, timestamp_ns: int) -> None:
        """Serialise ``msg`` and record it on ``topic`` at ``timestamp_ns``."""
        conn = self._conns.get(topic)
        if conn is None:
            raise BagError(f'topic {topic!r} was not declared with add_topic')
        self._writer.write(conn, int(timestamp_ns), self.store.serialize_cdr(msg, conn.msgtype))
        self.count += 1
