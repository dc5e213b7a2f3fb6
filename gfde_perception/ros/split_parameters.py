# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Parameters of the split nodes (robot side and server side), in the classifier node's table form.

Plain data, no rclpy at import: declared by :func:`gfde_perception.ros.parameters.
declare_parameters`, read by the launch-file test and docs/SPLIT.md.
"""

from gfde_perception.ros.parameters import MAX_TOP_K, ParamSpec, RELIABILITIES
from gfde_perception.split_bundle import default_split_bundle_path

_BUNDLE = ParamSpec('model.bundle', 'string', '',
                    'Path of the split bundle (.gfde, family gfde-split); empty = the embedded '
                    'one. Robot and server must load the same file.', reload=True)
_THREADS = ParamSpec('model.threads', 'int', 0,
                     'Intra-op torch threads; 0 keeps the library default.',
                     reload=True, low=0, high=256)
_TOP_K = ParamSpec('top_k', 'int', 5, 'Length of the top-k list in each result.',
                   reload=True, low=1, high=MAX_TOP_K)
_FEATURES_QOS = ParamSpec('features.reliability', 'string', 'reliable',
                          'Reliability of the split/features and split/result topics (both '
                          'sides must agree).', reload=True, choices=RELIABILITIES)
_FEATURES_DEPTH = ParamSpec('features.depth', 'int', 10,
                            'History depth of the split/features and split/result topics.',
                            reload=True, low=1, high=1000)
_DIAGNOSTICS = ParamSpec('diagnostics.period_s', 'double', 1.0,
                         'Period of the /diagnostics message in seconds.', reload=True,
                         low=0.05, high=60.0)

ROBOT_PARAMETERS = (
    _BUNDLE, _THREADS, _TOP_K, _FEATURES_QOS, _FEATURES_DEPTH, _DIAGNOSTICS,
    ParamSpec('exits.enabled', 'bool', True,
              "true: the robot's early exits answer confident frames; false: every frame is "
              'offloaded (split without exits).', reload=True),
    ParamSpec('deadline_ms', 'double', 250.0,
              'Time the server has to answer an offloaded frame; after it the robot publishes '
              'its best local result (counted as a fallback).', reload=True,
              low=1.0, high=600000.0),
    ParamSpec('qos.reliability', 'string', 'best_effort',
              'Reliability of the camera subscription.', reload=True, choices=RELIABILITIES),
    ParamSpec('qos.depth', 'int', 1,
              'History depth of the camera subscription (the node keeps only the newest frame).',
              reload=True, low=1, high=1000),
    ParamSpec('compressed', 'bool', False,
              'true: the camera input is sensor_msgs/CompressedImage (jpeg, png); false: '
              'sensor_msgs/Image.', reload=True),
)

SERVER_PARAMETERS = (_BUNDLE, _THREADS, _TOP_K, _FEATURES_QOS, _FEATURES_DEPTH, _DIAGNOSTICS)


def bundle_path(values: dict) -> str:
    """Return the split bundle the ``model.bundle`` value names (empty = the embedded one)."""
    return values['model.bundle'] or str(default_split_bundle_path())
