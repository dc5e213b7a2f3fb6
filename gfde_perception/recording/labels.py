# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Labels of recorded frames: sidecar files (read and written) and label messages, as classes.

A *sidecar* is a CSV or JSON file beside the bag mapping frame indices (order in the bag) or
header stamps in nanoseconds to classes (see :func:`load_sidecar`). A *label message* is a
``std_msgs/String`` (class name or index as text), a std_msgs integer, or any message with a
``header`` and a ``class_id``, ``label`` or ``data`` field (see :func:`label_from_message`).
Class values are kept raw (index or name) until :func:`resolve_class` maps them with the class
names of the model.
"""

import csv
from dataclasses import dataclass
import json
from pathlib import Path
from typing import Optional, Sequence

from gfde_perception.errors import BagError, ConfigError
from gfde_perception.stamps import stamp_to_ns
import numpy as np

SIDECAR_KEYS = ('index', 'stamp_ns')


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


def label_from_message(msg, msgtype: str, topic: str) -> tuple:
    """
    Return ``(stamp_ns, class value)`` of a decoded label message.

    ``stamp_ns`` is the header stamp, or None for a message without a header (it is then
    matched by record time); the class value is an int or a name, as the message carries it.

    :raises BagError: the message has no class field.
    """
    header = getattr(msg, 'header', None)
    stamp = None if header is None else stamp_to_ns(header.stamp)
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


def resolve_class(value, class_names, unknown: set):
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


def write_sidecar(path, labels: Sequence[int], class_names: Sequence[str]) -> None:
    """
    Write a frame-index sidecar: ``.json`` (class names and the list of labels) or ``.csv``.

    :raises ConfigError: the file name ends in neither.
    """
    path = Path(path)
    if path.suffix.lower() == '.json':
        path.write_text(json.dumps({'key': 'index', 'classes': list(class_names),
                                    'labels': [class_names[v] for v in labels]}, indent=1))
    elif path.suffix.lower() == '.csv':
        lines = ['index,label'] + [f'{i},{int(v)}' for i, v in enumerate(labels)]
        path.write_text('\n'.join(lines) + '\n')
    else:
        raise ConfigError(f'sidecar must end in .json or .csv, got {path.name}')
