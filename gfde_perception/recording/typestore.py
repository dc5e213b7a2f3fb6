# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
The message types of recorded data: ROS 2 Kilted's, plus gfde_msgs read from its ``.msg`` files.

``rosbags`` is imported inside the functions: it is needed by the tools that read or write bags,
not by the node.
"""

from pathlib import Path

from gfde_perception.errors import BagError
from gfde_perception.workspace import share_path

IMAGE_TYPE = 'sensor_msgs/msg/Image'
COMPRESSED_TYPE = 'sensor_msgs/msg/CompressedImage'
FRAME_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)
STRING_TYPE = 'std_msgs/msg/String'
INT_TYPES = tuple('std_msgs/msg/' + t for t in (
    'Int8', 'Int16', 'Int32', 'Int64', 'UInt8', 'UInt16', 'UInt32', 'UInt64'))
CLASSIFICATION_TYPE = 'gfde_msgs/msg/Classification'
GFDE_MSG_NAMES = ('ClassScore', 'StageLatency', 'Energy', 'Classification')


def gfde_msg_dir() -> Path:
    """
    Return the folder holding gfde_msgs' ``.msg`` files.

    The installed share folder (``$AMENT_PREFIX_PATH/share/gfde_msgs/msg``) wins over the source
    tree beside this package, so the definitions match the built interface.

    :raises BagError: neither has all the files.
    """
    folder = share_path('gfde_msgs', 'msg')
    if folder is not None and all((folder / f'{name}.msg').is_file()
                                  for name in GFDE_MSG_NAMES):
        return folder
    raise BagError('cannot find the gfde_msgs .msg files: neither an install prefix of '
                   'AMENT_PREFIX_PATH nor the source checkout has share/gfde_msgs/msg')


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


def register_from_bag(store, connection) -> None:
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


def message_from_fields(store, msgtype: str, fields: dict):
    """
    Build a ``msgtype`` message of ``store`` from plain nested data (dicts, lists, numbers).

    Nested messages are given as dicts, sequences of messages as lists of dicts; sequences of
    numbers become the numpy arrays ``rosbags`` serialises. A field missing from ``fields`` is an
    error, so a message cannot be written half-filled by mistake.
    """
    import numpy as np
    from rosbags.typesys.base import Nodetype

    kwargs = {}
    for name, (kind, args) in store.fielddefs[msgtype][1]:
        value = fields[name]
        if kind == Nodetype.NAME:
            kwargs[name] = (value if not isinstance(value, dict)
                            else message_from_fields(store, args, value))
        elif kind in (Nodetype.ARRAY, Nodetype.SEQUENCE):
            (sub_kind, sub_args), _ = args
            if sub_kind == Nodetype.NAME:
                kwargs[name] = [v if not isinstance(v, dict)
                                else message_from_fields(store, sub_args, v) for v in value]
            elif sub_args[0] == 'string':
                kwargs[name] = [str(v) for v in value]
            else:
                kwargs[name] = np.asarray(value, dtype=_NUMPY_TYPES[sub_args[0]])
        else:
            kwargs[name] = value
    return store.types[msgtype](**kwargs)


_NUMPY_TYPES = {'bool': 'bool', 'byte': 'uint8', 'char': 'uint8', 'int8': 'int8',
                'uint8': 'uint8', 'int16': 'int16', 'uint16': 'uint16', 'int32': 'int32',
                'uint32': 'uint32', 'int64': 'int64', 'uint64': 'uint64',
                'float32': 'float32', 'float64': 'float64'}
