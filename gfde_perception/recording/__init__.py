# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Recorded data: rosbag2 bags (sqlite3 and mcap), sidecar label files and label topics.

The formats layer under training and evaluation: both read bags through
:func:`read_labelled_frames`, the one bag reader, and tools write them through
:class:`BagWriter`. No ROS installation is needed: bags are read and written with the
pure-Python ``rosbags`` library (imported inside the functions), gfde_msgs' types come from its
``.msg`` files, and images are decoded by :mod:`gfde_perception.image_codec`, the node's code.

One module per job:

* :mod:`.typestore`: the message types (ROS 2 Kilted's plus gfde_msgs);
* :mod:`.bag`: opening bags, listing topics, raw (still serialised) frames;
* :mod:`.labels`: sidecar files (read and written) and label messages as class values;
* :mod:`.matching`: labels matched to frames by stamp, record time or position;
* :mod:`.reader`: :func:`read_labelled_frames` and its re-iterable :class:`FrameReader`;
* :mod:`.writer`: :class:`BagWriter` and message builders;
* :mod:`.labelled_bag`: :func:`make_bag`, a labelled bag from images (``gfde-make-bag``).

Labels for the frames come from one of: a **label topic** (``std_msgs/String`` with a class name
or index, a std_msgs integer, or a *stamped* message with a ``header`` and a ``class_id``,
``label`` or ``data`` field, such as ``gfde_msgs/Classification``; stamped labels match the
image's header stamp, unstamped ones its record time, within ``tolerance_ns``); a **sidecar**
CSV or JSON file mapping frame indices or header stamps to classes; or nothing (labels None).
"""

from gfde_perception.recording.bag import (bag_classes, CLASSES_KEY, list_topics, raw_frames,
                                           STORAGES, TopicInfo)
from gfde_perception.recording.labelled_bag import (DEFAULT_START_NS, ENCODINGS, LABEL_TYPES,
                                                    make_bag, MakeBagConfig)
from gfde_perception.recording.labels import load_sidecar, Sidecar, SIDECAR_KEYS, write_sidecar
from gfde_perception.recording.reader import (FrameReader, LabelledFrame, ORPHAN_POLICIES,
                                              read_labelled_frames, UNLABELLED_POLICIES)
from gfde_perception.recording.typestore import (CLASSIFICATION_TYPE, COMPRESSED_TYPE,
                                                 FRAME_TYPES, IMAGE_TYPE, make_typestore,
                                                 message_from_fields)
from gfde_perception.recording.writer import BagWriter, image_message, make_header

__all__ = [
    'BagWriter', 'CLASSES_KEY', 'CLASSIFICATION_TYPE', 'COMPRESSED_TYPE', 'DEFAULT_START_NS',
    'ENCODINGS', 'FRAME_TYPES', 'FrameReader', 'IMAGE_TYPE', 'LABEL_TYPES', 'LabelledFrame',
    'MakeBagConfig', 'ORPHAN_POLICIES', 'SIDECAR_KEYS', 'STORAGES', 'Sidecar', 'TopicInfo',
    'UNLABELLED_POLICIES', 'bag_classes', 'image_message', 'list_topics', 'load_sidecar',
    'make_bag', 'make_header', 'make_typestore', 'message_from_fields', 'raw_frames',
    'read_labelled_frames', 'write_sidecar',
]
