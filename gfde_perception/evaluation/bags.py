# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Read and write rosbag2 bags (sqlite3 and mcap) without a ROS installation.

Bags are handled by the pure-Python ``rosbags`` library; images are decoded by
:mod:`gfde_perception.image_codec`, the same code the node uses, so a replayed frame is the array
the node would have classified.

Labels for the frames come from one of:

* a **label topic** in the bag: ``std_msgs/String`` (class name or index as text),
  ``std_msgs/Int32`` (or any std_msgs integer), or a *stamped* label: any message with a
  ``header`` and a ``class_id``, ``label`` or ``data`` field (``gfde_msgs/Classification`` is one).
  Stamped labels are matched to frames by the image's header stamp; unstamped ones by the time
  the message was recorded, which must equal the image's record time (``gfde-make-bag`` writes
  them so) or lie within ``tolerance_ns`` of it;
* a **sidecar** file, CSV or JSON, mapping frame indices (order in the bag) or header stamps in
  nanoseconds to classes (see :func:`load_sidecar`);
* nothing: every frame's label is ``None``.
"""

import bisect
import csv
from dataclasses import dataclass
import json
import os
from pathlib import Path
from typing import Iterator, NamedTuple, Optional, Sequence

from gfde_perception.errors import BagError, GfdeError, ImageError
import numpy as np

IMAGE_TYPE = 'sensor_msgs/msg/Image'
COMPRESSED_TYPE = 'sensor_msgs/msg/CompressedImage'
FRAME_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)
STRING_TYPE = 'std_msgs/msg/String'
INT_TYPES = tuple('std_msgs/msg/' + t for t in (
    'Int8', 'Int16', 'Int32', 'Int64', 'UInt8', 'UInt16', 'UInt32', 'UInt64'))
CLASSIFICATION_TYPE = 'gfde_msgs/msg/Classification'
STORAGES = ('mcap', 'sqlite3')
SIDECAR_KEYS = ('index', 'stamp_ns')
# How to treat frames without a label / labels without a frame.
UNLABELLED_POLICIES = ('error', 'skip', 'keep')
ORPHAN_POLICIES = ('error', 'ignore')
# Only a few offending stamps are quoted in an error: enough to find them, short enough to read.
_QUOTE = 5
# Key of the class-name list in rosbag2 metadata custom_data (written by gfde-make-bag).
CLASSES_KEY = 'gfde.classes'
GFDE_MSG_NAMES = ('ClassScore', 'StageLatency', 'Energy', 'Classification')


class LabelledFrame(NamedTuple):
    """One decoded frame: RGB (H, W, 3) or grey (H, W) array, class index or None, stamp."""

    image: np.ndarray
    label: Optional[int]
    stamp_ns: int


@dataclass(frozen=True)
class TopicInfo:
    """A topic in a bag: name, message type and number of messages."""

    name: str
    msgtype: str
    count: int


@dataclass(frozen=True)
class Sidecar:
    """
    Labels from a file beside the bag.

    :ivar key: 'index' (position of the frame in the bag, from 0) or 'stamp_ns' (header stamp).
    :ivar labels: mapping key -> class index (int) or class name (str).
    :ivar classes: class names declared by the file, or None.
    """

    key: str
    labels: dict
    classes: Optional[tuple] = None

    def __post_init__(self):
        if self.key not in SIDECAR_KEYS:
            raise BagError(f'sidecar key must be one of {SIDECAR_KEYS}, got {self.key!r}')


# --------------------------------------------------------------------------------------------
# Type store (sensor_msgs, std_msgs from ROS 2 Kilted, plus gfde_msgs from its .msg files)
# --------------------------------------------------------------------------------------------

def gfde_msg_dir() -> Path:
    """
    Return the folder holding gfde_msgs' ``.msg`` files.

    The installed share folder (``$AMENT_PREFIX_PATH/share/gfde_msgs/msg``) wins over the source
    tree beside this package, so the definitions match the built interface.
    """
    candidates = []
    for prefix in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep):
        if prefix:
            candidates.append(Path(prefix) / 'share' / 'gfde_msgs' / 'msg')
    candidates.append(Path(__file__).resolve().parents[2] / 'gfde_msgs' / 'msg')
    for folder in candidates:
        if all((folder / f'{name}.msg').is_file() for name in GFDE_MSG_NAMES):
            return folder
    raise BagError('cannot find the gfde_msgs .msg files; looked in: '
                   + ', '.join(str(c) for c in candidates))


def make_typestore():
    """
    Return a rosbags type store with ROS 2 Kilted's types and gfde_msgs registered.

    The gfde_msgs definitions are read from their ``.msg`` files, so writing
    ``gfde_msgs/msg/Classification`` into a bag needs no ROS build.
    """
    from rosbags.typesys import get_types_from_msg, get_typestore, Stores

    store = get_typestore(Stores.ROS2_KILTED)
    if CLASSIFICATION_TYPE not in store.types:
        folder = gfde_msg_dir()
        types = {}
        for name in GFDE_MSG_NAMES:
            text = (folder / f'{name}.msg').read_text()
            types.update(get_types_from_msg(text, f'gfde_msgs/msg/{name}'))
        store.register(types)
    return store


def _register_from_bag(store, connection) -> None:
    """Register a message type unknown to ``store`` from the definition recorded in the bag."""
    from rosbags.typesys import get_types_from_msg

    if connection.msgtype in store.types:
        return
    msgdef = getattr(connection, 'msgdef', None)
    text = getattr(msgdef, 'data', '') if msgdef is not None else ''
    if not text:
        raise BagError(f'topic {connection.topic!r} has type {connection.msgtype!r}, which is not '
                       'a ROS 2 Kilted type and the bag does not carry its definition')
    try:
        store.register(get_types_from_msg(text, connection.msgtype))
    except Exception as exc:  # rosbags raises several parser errors
        raise BagError(f'cannot parse the definition of {connection.msgtype!r} recorded for '
                       f'topic {connection.topic!r}: {exc}') from exc


# --------------------------------------------------------------------------------------------
# Opening bags
# --------------------------------------------------------------------------------------------

class _OpenBag:
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


def _messages(reader, connections, bag_path):
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
    with _OpenBag(bag_path) as reader:
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


def _connections(reader, topic: str, allowed_types, role: str):
    conns = [c for c in reader.connections if c.topic == topic]
    if not conns:
        raise BagError(f'{role} topic {topic!r} is not in the bag; {_describe_topics(reader)}')
    if allowed_types is not None:
        bad = sorted({c.msgtype for c in conns if c.msgtype not in allowed_types})
        if bad:
            raise BagError(f'{role} topic {topic!r} has type {", ".join(bad)}; expected one of '
                           f'{", ".join(allowed_types)}')
    return conns


def _header_stamp_ns(rawdata, topic: str, index: int) -> int:
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
    return sec * 1_000_000_000 + nsec


def raw_frames(bag_path, image_topic: str) -> Iterator[tuple]:
    """
    Yield ``(msgtype, record_time_ns, stamp_ns, cdr_bytes)`` for every frame on ``image_topic``.

    The messages stay serialised: for copying frames into another bag or publishing them
    unchanged (live replay). ``stamp_ns`` is the header stamp (record time when it is zero), as
    in :func:`read_labelled_frames`.
    """
    with _OpenBag(bag_path) as reader:
        conns = _connections(reader, image_topic, FRAME_TYPES, 'image')
        for pos, (conn, logtime, raw) in enumerate(_messages(reader, conns, bag_path)):
            stamp = _header_stamp_ns(raw, image_topic, pos) or int(logtime)
            yield conn.msgtype, int(logtime), stamp, bytes(raw)


# --------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------

def load_sidecar(path) -> Sidecar:
    """
    Read a sidecar label file (CSV or JSON).

    CSV: a header row naming a key column (``index`` or ``stamp_ns``) and a class column
    (``label``, ``class``, ``class_id`` or ``class_name``); class values are indices or names.

    JSON: either a list (entry i labels frame i), or an object
    ``{"key": "index" | "stamp_ns", "labels": {key: class} | [class, ...], "classes": [...]}``
    (``classes`` optional: the class names, in index order).

    :raises BagError: the file is missing or malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise BagError(f'sidecar {str(path)!r} does not exist')
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise BagError(f'cannot read sidecar {str(path)!r}: {exc}') from exc
    if path.suffix.lower() == '.json':
        return _sidecar_from_json(text, path)
    if path.suffix.lower() in ('.csv', '.tsv', '.txt'):
        return _sidecar_from_csv(text, path)
    raise BagError(f'sidecar {str(path)!r}: unknown format (use .csv or .json)')


def _class_value(value, where: str):
    """Normalise a class value from a file: ints stay ints, digit strings become ints."""
    if isinstance(value, bool):
        raise BagError(f'{where}: class {value!r} is neither an index nor a name')
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip():
        text = value.strip()
        return int(text) if text.lstrip('-').isdigit() else text
    raise BagError(f'{where}: class {value!r} is neither an index nor a name')


def _int_key(value, where: str) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        raise BagError(f'{where}: key {value!r} is not an integer') from None


def _sidecar_from_json(text: str, path: Path) -> Sidecar:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BagError(f'sidecar {str(path)!r} is not valid JSON: {exc}') from exc
    classes = None
    key = 'index'
    if isinstance(data, dict):
        if 'labels' not in data:
            raise BagError(f'sidecar {str(path)!r}: JSON object needs a "labels" entry')
        key = data.get('key', 'index')
        classes = data.get('classes')
        if classes is not None:
            if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
                raise BagError(f'sidecar {str(path)!r}: "classes" must be a list of names')
            classes = tuple(classes)
        data = data['labels']
    if key not in SIDECAR_KEYS:
        raise BagError(f'sidecar {str(path)!r}: "key" must be one of {SIDECAR_KEYS}, got {key!r}')
    where = f'sidecar {str(path)!r}'
    if isinstance(data, list):
        if key != 'index':
            raise BagError(f'{where}: a list of labels can only be keyed by index')
        labels = {i: _class_value(v, f'{where} entry {i}') for i, v in enumerate(data)}
    elif isinstance(data, dict):
        labels = {_int_key(k, where): _class_value(v, f'{where} entry {k}')
                  for k, v in data.items()}
    else:
        raise BagError(f'{where}: labels must be a list or an object')
    return Sidecar(key, labels, classes)


def _sidecar_from_csv(text: str, path: Path) -> Sidecar:
    where = f'sidecar {str(path)!r}'
    dialect = 'excel-tab' if path.suffix.lower() == '.tsv' else 'excel'
    rows = list(csv.DictReader(text.splitlines(), dialect=dialect))
    if not rows:
        raise BagError(f'{where}: no rows (a header row and one row per frame are expected)')
    fields = [f.strip() for f in rows[0].keys() if f is not None]
    key = next((k for k in SIDECAR_KEYS if k in fields), None)
    if key is None and 'frame' in fields:
        key = 'index'
    column = next((c for c in ('label', 'class', 'class_id', 'class_name') if c in fields), None)
    if key is None or column is None:
        raise BagError(f'{where}: header must name a key column (index or stamp_ns) and a class '
                       f'column (label, class, class_id or class_name); found {fields}')
    key_column = 'frame' if key == 'index' and 'index' not in fields else key
    labels = {}
    for line, row in enumerate(rows, start=2):
        row = {(k or '').strip(): v for k, v in row.items()}
        k = _int_key(row.get(key_column), f'{where} line {line}')
        v = _class_value(row.get(column), f'{where} line {line}')
        if k in labels and labels[k] != v:
            raise BagError(f'{where} line {line}: {key} {k} labelled twice ({labels[k]!r} and '
                           f'{v!r})')
        labels[k] = v
    return Sidecar(key, labels, None)


def _label_from_message(msg, msgtype: str, topic: str):
    """Return (stamped, stamp_ns or None, raw class value) of a decoded label message."""
    header = getattr(msg, 'header', None)
    stamp = None
    if header is not None:
        stamp = int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)
    for field in ('class_id', 'data', 'label'):
        if hasattr(msg, field):
            value = getattr(msg, field)
            if isinstance(value, (int, np.integer)):
                return stamp, int(value)
            if isinstance(value, str):
                return stamp, value
    raise BagError(f'label topic {topic!r} has type {msgtype!r}, which carries no class field '
                   '(expected std_msgs/String, a std_msgs integer, or a message with a header '
                   'and a class_id, label or data field)')


def _resolve_class(value, class_names, unknown: set):
    """Map a raw class value to an index; unknown names/indices are collected, not raised."""
    if isinstance(value, str):
        text = value.strip()
        if class_names is not None and text in class_names:
            return class_names.index(text)
        if text.lstrip('-').isdigit():
            value = int(text)
        else:
            unknown.add(text)
            return None
    if value < 0 or (class_names is not None and value >= len(class_names)):
        unknown.add(value)
        return None
    return int(value)


def _quote(stamps) -> str:
    stamps = sorted(stamps)
    text = ', '.join(str(s) for s in stamps[:_QUOTE])
    return text + (', ...' if len(stamps) > _QUOTE else '')


# --------------------------------------------------------------------------------------------
# Reading labelled frames
# --------------------------------------------------------------------------------------------

class FrameReader:
    """
    Iterator of :class:`LabelledFrame` over one image topic; ``len()`` gives the frame count.

    Everything that can be checked without decoding images (the bag opens, the topics exist,
    every frame has a label and every label a frame, class names are known) is checked when the
    reader is built, so a mistake fails before any work is done. Decoding happens while
    iterating; an undecodable frame raises :class:`BagError` naming it.
    """

    def __init__(self, bag_path, image_topic: str, labels: Optional[dict],
                 class_names: Optional[tuple], frames: list):
        self.bag_path = Path(bag_path)
        self.image_topic = image_topic
        self.class_names = class_names
        # (position in the bag, stamp_ns, label) for each frame that will be yielded.
        self._frames = frames
        self._labels = labels
        self._iter = None

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def labelled(self) -> bool:
        """Whether frames carry labels (from a topic or a sidecar)."""
        return self._labels is not None

    @property
    def stamps_ns(self) -> list:
        """Header stamps of the frames that will be yielded, in order."""
        return [stamp for _, stamp, _ in self._frames]

    @property
    def labels(self) -> list:
        """Labels of the frames that will be yielded, in order (None where unlabelled)."""
        return [label for _, _, label in self._frames]

    def __iter__(self):
        return self._generate()

    def __next__(self):
        if self._iter is None:
            self._iter = self._generate()
        return next(self._iter)

    def _generate(self) -> Iterator[LabelledFrame]:
        from gfde_perception import image_codec

        wanted = {pos: (stamp, label) for pos, stamp, label in self._frames}
        store = make_typestore()
        with _OpenBag(self.bag_path) as reader:
            conns = _connections(reader, self.image_topic, FRAME_TYPES, 'image')
            for pos, (conn, _, raw) in enumerate(_messages(reader, conns, self.bag_path)):
                if pos not in wanted:
                    continue
                stamp, label = wanted[pos]
                where = f'frame {pos} (stamp {stamp}) on {self.image_topic!r}'
                try:
                    msg = store.deserialize_cdr(raw, conn.msgtype)
                except Exception as exc:
                    raise BagError(f'{where} cannot be deserialised (corrupt message): '
                                   f'{exc}') from exc
                try:
                    if conn.msgtype == IMAGE_TYPE:
                        image = image_codec.raw_to_array(
                            msg.encoding, msg.height, msg.width, msg.step,
                            msg.is_bigendian, msg.data)
                    else:
                        image = image_codec.compressed_to_array(msg.format, msg.data)
                except ImageError as exc:
                    raise BagError(f'{where} cannot be decoded: {exc}') from exc
                yield LabelledFrame(image, label, stamp)


def read_labelled_frames(bag_path, image_topic: str, label_topic: Optional[str] = None,
                         sidecar=None, *, class_names: Optional[Sequence[str]] = None,
                         on_unlabelled: str = 'error', on_orphan_labels: str = 'error',
                         tolerance_ns: int = 0, limit: Optional[int] = None) -> FrameReader:
    """
    Return an iterator of ``(image, label, stamp_ns)`` for the frames on ``image_topic``.

    :param bag_path: rosbag2 bag: a directory with ``metadata.yaml``, or a ``.mcap`` or ``.db3``
        file.
    :param image_topic: topic of ``sensor_msgs/Image`` or ``sensor_msgs/CompressedImage``.
    :param label_topic: optional topic with the labels (see the module docstring).
    :param sidecar: optional path of a CSV/JSON label file, or a :class:`Sidecar`.
    :param class_names: class names in index order (normally the bundle's labels), used to turn
        names into indices; by default those the sidecar declares, else those recorded in the
        bag's metadata by ``gfde-make-bag``, else only numeric labels are accepted.
    :param on_unlabelled: frames without a label: 'error' (default), 'skip' them, or 'keep' them
        with label None.
    :param on_orphan_labels: labels that match no frame: 'error' (default) or 'ignore'.
    :param tolerance_ns: largest distance between a label's stamp and a frame's for them to match
        (0 = exact); the nearest label wins.
    :param limit: yield at most this many frames (the first ones).

    :return: A :class:`FrameReader`: iterate it for :class:`LabelledFrame` tuples; ``len()`` is the
    :return: number of frames it yields and ``.class_names`` the names used.

    :raises BagError: the bag is missing or corrupt, a topic is missing (the error lists those
        available) or of the wrong type, or labels do not match frames (unlabelled frames,
        labels with no frame, unknown class names, two labels for one frame).
    """
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
    if isinstance(sidecar, (str, os.PathLike)):
        sidecar = load_sidecar(sidecar)
    if class_names is not None:
        class_names = tuple(str(c) for c in class_names)
    elif sidecar is not None and sidecar.classes is not None:
        class_names = sidecar.classes
    else:
        class_names = bag_classes(bag_path)

    bag_path = Path(bag_path)
    store = make_typestore()
    # Per frame: (position, header stamp, record time).
    frames = []
    raw_labels = None  # list of (stamped, stamp, value, topic position)
    with _OpenBag(bag_path) as reader:
        image_conns = _connections(reader, image_topic, FRAME_TYPES, 'image')
        label_conns = _connections(reader, label_topic, None, 'label') if label_topic else []
        for conn in label_conns:
            _register_from_bag(store, conn)
        for pos, (_, logtime, raw) in enumerate(_messages(reader, image_conns, bag_path)):
            stamp = _header_stamp_ns(raw, image_topic, pos)
            # Cameras that leave the header empty are matched by record time instead.
            frames.append((pos, stamp or int(logtime), int(logtime)))
        if label_conns:
            raw_labels = []
            for i, (conn, logtime, raw) in enumerate(_messages(reader, label_conns, bag_path)):
                try:
                    msg = store.deserialize_cdr(raw, conn.msgtype)
                except Exception as exc:
                    raise BagError(f'label message {i} on {label_topic!r} cannot be deserialised '
                                   f'(corrupt message): {exc}') from exc
                stamp, value = _label_from_message(msg, conn.msgtype, label_topic)
                raw_labels.append((stamp is not None, stamp if stamp else int(logtime), value))
    if not frames:
        raise BagError(f'image topic {image_topic!r} in {str(bag_path)!r} has no messages')

    labels = None
    orphans = []
    where = f'label topic {label_topic!r}' if label_topic else 'the sidecar'
    if raw_labels is not None:
        labels, orphans = _match_topic_labels(frames, raw_labels, tolerance_ns, where)
    elif sidecar is not None:
        labels, orphans = _match_sidecar(frames, sidecar, tolerance_ns)

    result = []
    if labels is not None:
        unknown = set()
        resolved = {pos: _resolve_class(v, class_names, unknown) for pos, v in labels.items()}
        if unknown:
            known = (f'known classes: {", ".join(class_names)}' if class_names is not None else
                     'pass class_names (e.g. the bundle labels) to map names to indices')
            raise BagError(f'{where} has unknown classes: '
                           f'{", ".join(repr(u) for u in sorted(unknown, key=str))}; {known}')
        if orphans and on_orphan_labels == 'error':
            raise BagError(f'{len(orphans)} label(s) in {where} match no frame on '
                           f'{image_topic!r} (stamps/keys: {_quote(orphans)}); pass '
                           "on_orphan_labels='ignore' to accept")
        missing = [stamp for pos, stamp, _ in frames if pos not in resolved]
        if missing and on_unlabelled == 'error':
            raise BagError(f'{len(missing)} of {len(frames)} frame(s) on {image_topic!r} have '
                           f'no label in {where} (frame stamps: {_quote(missing)}); pass '
                           "on_unlabelled='skip' or 'keep' to accept")
        for pos, stamp, _ in frames:
            if pos in resolved:
                result.append((pos, stamp, resolved[pos]))
            elif on_unlabelled == 'keep':
                result.append((pos, stamp, None))
    else:
        result = [(pos, stamp, None) for pos, stamp, _ in frames]
    if limit is not None:
        result = result[:limit]
    return FrameReader(bag_path, image_topic, labels, class_names, result)


def _nearest(keys: list, value: int, tolerance_ns: int):
    """Index into sorted ``keys`` of the entry nearest ``value`` within tolerance, or None."""
    i = bisect.bisect_left(keys, value)
    best = None
    for j in (i - 1, i):
        if 0 <= j < len(keys) and abs(keys[j] - value) <= tolerance_ns:
            if best is None or abs(keys[j] - value) < abs(keys[best] - value):
                best = j
    return best


def _match(frame_keys: list, label_items: list, tolerance_ns: int, where: str):
    """
    Match (key, value) labels to frames keyed by ``frame_keys[position]``.

    Returns ({position: value}, [unmatched label keys]). Two different labels for one frame raise.
    """
    by_key = {}
    for pos, key in enumerate(frame_keys):
        by_key.setdefault(key, []).append(pos)
    sorted_keys = sorted(by_key)
    labels, orphans = {}, []
    for key, value in label_items:
        if key in by_key:
            target = key
        elif tolerance_ns:
            j = _nearest(sorted_keys, key, tolerance_ns)
            target = None if j is None else sorted_keys[j]
        else:
            target = None
        if target is None:
            orphans.append(key)
            continue
        for pos in by_key[target]:
            if pos in labels and labels[pos] != value:
                raise BagError(f'frame {pos} (stamp {target}) has two different labels in '
                               f'{where}: {labels[pos]!r} and {value!r}')
            labels[pos] = value
    return labels, orphans


def _match_topic_labels(frames, raw_labels, tolerance_ns, where):
    stamped = [(s, v) for is_stamped, s, v in raw_labels if is_stamped]
    unstamped = [(s, v) for is_stamped, s, v in raw_labels if not is_stamped]
    labels, orphans = {}, []
    if stamped:
        got, lost = _match([f[1] for f in frames], stamped, tolerance_ns, where)
        labels.update(got)
        orphans += lost
    if unstamped:
        got, lost = _match([f[2] for f in frames], unstamped, tolerance_ns, where)
        for pos, value in got.items():
            if pos in labels and labels[pos] != value:
                raise BagError(f'frame {pos} has two different labels in {where}: '
                               f'{labels[pos]!r} and {value!r}')
            labels[pos] = value
        orphans += lost
    return labels, orphans


def _match_sidecar(frames, sidecar: Sidecar, tolerance_ns):
    items = list(sidecar.labels.items())
    if sidecar.key == 'index':
        return _match([f[0] for f in frames], items, 0, 'the sidecar')
    return _match([f[1] for f in frames], items, tolerance_ns, 'the sidecar')


# --------------------------------------------------------------------------------------------
# Writing bags
# --------------------------------------------------------------------------------------------

def stamp_to_time(store, stamp_ns: int):
    """Return a ``builtin_interfaces/Time`` for a stamp in nanoseconds."""
    Time = store.types['builtin_interfaces/msg/Time']
    return Time(sec=int(stamp_ns // 1_000_000_000), nanosec=int(stamp_ns % 1_000_000_000))


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
    from gfde_perception import image_codec

    header = make_header(store, stamp_ns, frame_id)
    if encoding in ('jpeg', 'png'):
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

        :func:`read_labelled_frames` uses them to turn class names on a label topic into indices
        when the caller gives none.
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
