# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Named exceptions of the gfde_perception core.

Every error the core raises on bad input derives from :class:`GfdeError`, so an adapter (the ROS
node, a CLI) can catch one type at its boundary, report it with context and carry on.
"""

from enum import Enum


class GfdeError(Exception):
    """Base class of all gfde_perception errors."""


class ConfigError(GfdeError, ValueError):
    """A configuration value is missing, out of range or inconsistent with another."""


class ImageErrorKind(str, Enum):
    """
    Why an image was refused: the one list of kinds, counted by name in the node's diagnostics.

    The values are stable strings (``dropped.bad_input.<value>`` in ``/diagnostics``).
    """

    UNKNOWN_ENCODING = 'unknown_encoding'
    """The encoding or compressed format is not one the codec reads or writes."""
    ZERO_SIZE = 'zero_size'
    """Zero rows or columns, or no data at all."""
    TOO_LARGE = 'too_large'
    """More pixels than any camera streams (``preprocessing.MAX_PIXELS``)."""
    DECODE_BUDGET = 'decode_budget'
    """The header announces more decoded bytes than the decode budget allows."""
    WRONG_STEP = 'wrong_step'
    """The row step is shorter than one row of pixels."""
    TRUNCATED = 'truncated'
    """Fewer bytes than ``step * height``."""
    WRONG_SIZE = 'wrong_size'
    """A size the encoding cannot have (an odd width for 4:2:2 YUV)."""
    CORRUPT_COMPRESSED = 'corrupt_compressed'
    """Compressed data that is damaged, even where a decoder could recover part of it."""
    NON_FINITE = 'non_finite'
    """NaN or infinite float pixels."""
    OUT_OF_RANGE = 'out_of_range'
    """Finite float pixels outside the documented [0, 1]."""
    WRONG_ARRAY = 'wrong_array'
    """An array of a shape or type the operation does not take."""
    WRONG_ARGUMENT = 'wrong_argument'
    """An argument out of its range (e.g. a JPEG quality)."""
    UNREADABLE = 'unreadable'
    """A file that is missing or in no format the reader knows."""
    ENCODE_FAILED = 'encode_failed'
    """The encoder refused an array it was expected to take."""


class ImageError(GfdeError, ValueError):
    """
    An image cannot be decoded or converted (bad encoding, size, step or data).

    :param message: what is wrong, for a person.
    :param kind: why, for a counter: one of :class:`ImageErrorKind`.
    """

    def __init__(self, message: str, kind: ImageErrorKind):
        super().__init__(message)
        self.kind = ImageErrorKind(kind)

    def __reduce__(self):
        # Keep the kind through pickling (errors crossing a process boundary).
        return type(self), (str(self), self.kind)


class BundleError(GfdeError):
    """A model bundle cannot be used; subclasses name the exact problem."""


class BundleNotFoundError(BundleError, FileNotFoundError):
    """The bundle file does not exist."""


class BundleCorruptError(BundleError):
    """The file is not a readable bundle: truncated, not safetensors, or a broken header."""


class BundleVersionError(BundleError):
    """The bundle was written in a format version this code cannot read."""


class BundleChecksumError(BundleError):
    """The stored checksum does not match the content: the file was modified or damaged."""


class BundleManifestError(BundleError):
    """The manifest (architecture, preprocessing, labels, exits) is missing or invalid."""


class BundleMismatchError(BundleError):
    """Weights do not fit the architecture the manifest describes (keys, shapes, dtypes)."""


class BackendError(GfdeError, RuntimeError):
    """An inference backend cannot be loaded or failed while running."""


class DatasetError(GfdeError, ValueError):
    """A dataset or data source is missing, empty or malformed."""


class BagError(GfdeError, ValueError):
    """A rosbag cannot be read or lacks what was asked for (topic, labels, types)."""


class FeatureError(GfdeError, ValueError):
    """A split model's feature packet cannot be decoded (shape, quantisation, bytes, model)."""


class TrainingInterrupted(GfdeError):
    """Training stopped on request (Ctrl-C); a checkpoint was saved and a re-run resumes."""

    def __init__(self, message: str, checkpoint=None):
        super().__init__(message)
        self.checkpoint = checkpoint
