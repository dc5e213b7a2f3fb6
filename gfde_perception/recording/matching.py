# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Matching labels to frames: by header stamp, by record time, or by position in the bag.

A frame is described by ``(position, header stamp, record time)``; labels arrive as
``(key, class value)``. Stamped label messages match header stamps, unstamped ones record
times (``gfde-make-bag`` writes a label at its image's record time), sidecars positions or
stamps. Within ``tolerance_ns`` the nearest key wins; two different labels for one frame are an
error, labels that match no frame are returned as orphans for the caller's policy.
"""

import bisect

from gfde_perception.errors import BagError
from gfde_perception.recording.labels import Sidecar

# Only a few offending stamps are quoted in an error: enough to find them, short enough to read.
_QUOTE = 5


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


def match_topic_labels(frames, raw_labels, tolerance_ns: int, where: str) -> tuple:
    """
    Match label-topic messages to ``frames``.

    :param frames: ``(position, header stamp, record time)`` per frame.
    :param raw_labels: ``(stamped, stamp or record time, class value)`` per label message.
    :return: ``({position: class value}, [keys of labels that match no frame]``).
    """
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


def match_sidecar(frames, sidecar: Sidecar, tolerance_ns: int) -> tuple:
    """Match a sidecar's labels to ``frames``; returns as :func:`match_topic_labels`."""
    items = list(sidecar.labels.items())
    if sidecar.key == 'index':
        return _match([f[0] for f in frames], items, 0, 'the sidecar')
    return _match([f[1] for f in frames], items, tolerance_ns, 'the sidecar')


def quote(stamps) -> str:
    """Return the first few of ``stamps`` (sorted) as text, for an error message."""
    stamps = sorted(stamps)
    text = ', '.join(str(s) for s in stamps[:_QUOTE])
    return text + (', ...' if len(stamps) > _QUOTE else '')
