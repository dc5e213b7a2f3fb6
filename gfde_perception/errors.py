# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Named exceptions of the gfde_perception core.

Every error the core raises on bad input derives from :class:`GfdeError`, so an adapter (the ROS
node, a CLI) can catch one type at its boundary, report it with context and carry on.
"""


class GfdeError(Exception):
    """Base class of all gfde_perception errors."""


class ConfigError(GfdeError, ValueError):
    """A configuration value is missing, out of range or inconsistent with another."""


class ImageError(GfdeError, ValueError):
    """An image cannot be decoded or converted (bad encoding, size, step or data)."""


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
