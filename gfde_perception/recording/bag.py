# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Opening rosbag2 bags (sqlite3 and mcap), listing their topics, and reading raw frames.

Every failure of the storage layer (missing file, corrupt or truncated bag, unreadable message)
becomes a :class:`~gfde_perception.errors.BagError` that names the bag.
"""

from dataclasses import dataclass
import json
from pathlib import Path
from typing import Iterator, Optional

from gfde_perception.errors import BagError, GfdeError
from gfde_perception.recording.typestore import FRAME_TYPES
from gfde_perception.stamps import NS_PER_S
import numpy as np

STORAGES = ('mcap', 'sqlite3')
# Key of the class-name list in rosbag2 metadata custom_data (written by gfde-make-bag).
CLASSES_KEY = 'gfde.classes'


@dataclass(frozen=True)
class TopicInfo:
    """A topic in a bag: name, message type and number of messages."""

    name: str
    msgtype: str
    count: int


class OpenBag:
    """Context manager around ``rosbags.rosbag2.Reader`` that turns its failures into BagError."""

    def __init__(self, bag_path):
        self.path = Path(bag_path)
        self.reader = None

    def __enter__(self):
        from rosbags.rosbag2 import Reader

        if not self.path.exists():
            raise BagError(f'bag {str(self.path)!r} does not exist')
        try:
            self.reader = Reader(self.path)
            self.reader.open()
        except Exception as exc:  # ReaderError, sqlite3/mcap/yaml errors: all mean unreadable
            raise BagError(f'cannot open bag {str(self.path)!r} (corrupt, truncated or not a '
                           f'rosbag2 bag): {type(exc).__name__}: {exc}') from exc
        return self.reader

    def __exit__(self, *exc_info):
        if self.reader is not None:
            try:
                self.reader.close()
            except Exception:  # closing a half-open corrupt bag must not mask the real error
                pass
        return False


def messages(reader, connections, bag_path) -> Iterator[tuple]:
    """Yield (connection, timestamp, rawdata), turning storage failures into BagError."""
    try:
        yield from reader.messages(connections=connections)
    except GfdeError:
        raise
    except Exception as exc:
        raise BagError(f'bag {str(bag_path)!r} is corrupt: reading messages failed with '
                       f'{type(exc).__name__}: {exc}') from exc


def list_topics(bag_path) -> dict:
    """
    Return ``{topic: TopicInfo}`` for every topic in the bag.

    :raises BagError: the bag does not exist or cannot be read.
    """
    with OpenBag(bag_path) as reader:
        return {name: TopicInfo(name, info.msgtype, int(info.msgcount))
                for name, info in reader.topics.items()}


def bag_classes(bag_path) -> Optional[tuple]:
    """Return the class names recorded in the bag's metadata (``custom_data``), or None."""
    import yaml

    path = Path(bag_path)
    meta = path / 'metadata.yaml' if path.is_dir() else path.parent / 'metadata.yaml'
    if not meta.is_file():
        return None
    try:
        info = yaml.safe_load(meta.read_text())['rosbag2_bagfile_information']
        text = (info.get('custom_data') or {}).get(CLASSES_KEY)
        names = json.loads(text) if text else None
    except Exception:  # an unreadable entry is the same as none: the caller asks for names
        return None
    if isinstance(names, list) and all(isinstance(n, str) for n in names):
        return tuple(names)
    return None


def _describe_topics(reader) -> str:
    items = sorted(reader.topics.items())
    if not items:
        return 'the bag has no topics'
    return 'available topics: ' + ', '.join(
        f'{name} [{info.msgtype}, {info.msgcount} msgs]' for name, info in items)


def connections(reader, topic: str, allowed_types, role: str) -> list:
    """
    Return the connections of ``topic``, checking that it exists and has an allowed type.

    :param allowed_types: message types accepted, or None for any.
    :param role: what the topic is for ('image', 'label'), used in the error message.
    :raises BagError: the topic is missing (the error lists those available) or of a wrong type.
    """
    conns = [c for c in reader.connections if c.topic == topic]
    if not conns:
        raise BagError(f'{role} topic {topic!r} is not in the bag; {_describe_topics(reader)}')
    if allowed_types is not None:
        bad = sorted({c.msgtype for c in conns if c.msgtype not in allowed_types})
        if bad:
            raise BagError(f'{role} topic {topic!r} has type {", ".join(bad)}; expected one of '
                           f'{", ".join(allowed_types)}')
    return conns


def header_stamp_ns(rawdata, topic: str, index: int) -> int:
    """
    Read the header stamp of a CDR message whose first field is a std_msgs/Header.

    Frames are scanned twice (stamps first, to match labels before anything is yielded); reading
    the 8 stamp bytes directly avoids deserialising every image in the first pass. CDR layout:
    2-byte encapsulation id (0x0001 little endian, 0x0000 big endian), 2 option bytes, then
    ``int32 sec`` and ``uint32 nanosec``, both aligned at their natural offsets.
    """
    raw = bytes(rawdata[:12])
    if len(raw) < 12:
        raise BagError(f'message {index} on {topic!r} is truncated ({len(rawdata)} bytes)')
    order = '<' if raw[1] & 1 else '>'
    sec = int(np.frombuffer(raw, dtype=order + 'i4', count=1, offset=4)[0])
    nsec = int(np.frombuffer(raw, dtype=order + 'u4', count=1, offset=8)[0])
    return sec * NS_PER_S + nsec


def raw_frames(bag_path, image_topic: str) -> Iterator[tuple]:
    """
    Yield ``(msgtype, record_time_ns, stamp_ns, cdr_bytes)`` for every frame on ``image_topic``.

    The messages stay serialised: for copying frames into another bag or publishing them
    unchanged (live replay, the demo). ``stamp_ns`` is the header stamp (record time when it is
    zero), as in :func:`~gfde_perception.recording.reader.read_labelled_frames`.
    """
    with OpenBag(bag_path) as reader:
        conns = connections(reader, image_topic, FRAME_TYPES, 'image')
        for pos, (conn, logtime, raw) in enumerate(messages(reader, conns, bag_path)):
            stamp = header_stamp_ns(raw, image_topic, pos) or int(logtime)
            yield conn.msgtype, int(logtime), stamp, bytes(raw)
