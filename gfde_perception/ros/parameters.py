# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
The classifier node's parameters: one table, used to declare them and to check launch files.

:data:`PARAMETERS` is plain data (no rclpy at import time), so the launch-file test and the docs
read the same names, types, defaults and ranges that :func:`declare_parameters` gives the node.
Parameters are deployment knobs only; preprocessing travels with the model bundle. Parameters
marked ``reload`` are read when the model and the subscriptions are made: the plain node
declares them read-only (set them at launch), the lifecycle node accepts them while
unconfigured and applies them at the next configure. The others change at run time through the
parameter services and are validated first (:func:`check_update`), the exit policy against the
loaded model too.
"""

from dataclasses import dataclass
import math
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from gfde_perception.bundle import default_bundle_path
from gfde_perception.choices import (
    BACKENDS, DEFAULT_BACKEND, DEFAULT_ENERGY, DEFAULT_PRECISION, DEFAULT_SCHEDULE,
    ENERGY_SOURCES, EXIT_WORKERS, PRECISIONS, SCHEDULES, THREADS, TOP_K, WARMUP)
from gfde_perception.errors import ConfigError
from gfde_perception.image_codec import DEFAULT_MAX_DECODE_BYTES, MAX_DECODE_BYTES_RANGE
from gfde_perception.runtime import Classifier, RuntimeConfig
from gfde_perception.runtime.policies import (BudgetBounds, DEFAULT_POLICY, parse_policy,
                                              POLICY_USAGE)
from gfde_perception.stats import HealthBounds

RELIABILITIES = ('best_effort', 'reliable')
# The runtime is built with the largest top-k the parameter allows, so top_k can change at run
# time: the node only truncates the list it publishes.
MAX_TOP_K = TOP_K.high


@dataclass(frozen=True)
class ParamSpec:
    """
    One node parameter.

    :ivar name: parameter name (dots group them in YAML).
    :ivar kind: 'string', 'int', 'double' or 'string_array'.
    :ivar default: default value.
    :ivar description: what it does, shown by ``ros2 param describe``.
    :ivar reload: True when a change needs the model or the subscriptions made again: set it at
        launch (plain node) or while unconfigured (lifecycle node, applied at configure).
    :ivar low: lowest allowed number (for 'int' and 'double').
    :ivar high: highest allowed number.
    :ivar choices: allowed strings for 'string' parameters.
    :ivar parse: for values with a grammar of their own: a function that raises
        :class:`ConfigError` for a malformed value.
    :ivar syntax: that grammar in words (the descriptor's additional_constraints).
    """

    name: str
    kind: str
    default: Any
    description: str
    reload: bool = False
    low: Optional[float] = None
    high: Optional[float] = None
    choices: Tuple[str, ...] = ()
    parse: Optional[Callable[[Any], Any]] = None
    syntax: str = ''

    @property
    def constraints(self) -> str:
        """Return the allowed values in words (the descriptor's additional_constraints)."""
        parts = [self.syntax] if self.syntax else []
        if self.choices:
            parts.append('one of: ' + ', '.join(self.choices))
        if self.low is not None:
            parts.append(f'in [{self.low:g}, {self.high:g}]')
        return '; '.join(parts)


PARAMETERS = (
    # --- model (read at start; the lifecycle node re-reads them at configure) -------------
    ParamSpec('model.bundle', 'string', '',
              'Path of the .gfde model bundle; empty = the embedded default model.',
              reload=True),
    ParamSpec('model.backend', 'string', DEFAULT_BACKEND,
              "Backbone backend: 'auto' measures the available ones and keeps the fastest.",
              reload=True, choices=BACKENDS),
    ParamSpec('model.precision', 'string', DEFAULT_PRECISION,
              'Precision of GPU backends (CPU backends always run fp32).',
              reload=True, choices=PRECISIONS),
    ParamSpec('model.schedule', 'string', DEFAULT_SCHEDULE,
              'Segment schedule: speculative overlaps segment k+1 with exit k; auto measures '
              '(once per bundle, backend and host: the decision is cached).',
              reload=True, choices=SCHEDULES),
    ParamSpec('model.exit_workers', 'int', EXIT_WORKERS.default,
              'CPU worker threads that run the exit heads and gates; 0 runs them inline.',
              reload=True, low=EXIT_WORKERS.low, high=EXIT_WORKERS.high),
    ParamSpec('model.threads', 'int', THREADS.default,
              'Intra-op threads of torch / onnxruntime; 0 keeps the library default.',
              reload=True, low=THREADS.low, high=THREADS.high),
    ParamSpec('model.warmup', 'int', WARMUP.default,
              'Frames run at load before the first real one (0 disables).',
              reload=True, low=WARMUP.low, high=WARMUP.high),
    ParamSpec('model.energy', 'string', DEFAULT_ENERGY,
              "Energy counter: 'auto' takes the first found; 'none' disables measuring.",
              reload=True, choices=ENERGY_SOURCES),
    ParamSpec('model.engine_cache_dir', 'string', '',
              'Cache of TensorRT engines and auto decisions; empty = $GFDE_CACHE_DIR or '
              '~/.cache/gfde_perception.', reload=True),
    # --- exits (change at run time) ---------------------------------------------------------
    ParamSpec('exit.policy', 'string', DEFAULT_POLICY,
              'Exit policy, in the grammar every gfde tool uses (gfde_perception.runtime.'
              "policies); e.g. 'calibrated', 'threshold=0.8', 'force=0', 'budget=5ms'.",
              parse=parse_policy, syntax=POLICY_USAGE),
    ParamSpec('exit.budget_low', 'double', 0.0,
              "Lowest threshold a 'budget' policy may use (most aggressive).",
              low=0.0, high=1.0),
    ParamSpec('exit.budget_high', 'double', 1.0,
              "Highest threshold a 'budget' policy may use (most accurate).",
              low=0.0, high=1.0),
    ParamSpec('top_k', 'int', TOP_K.default,
              'Length of the top-k list in each result (clipped to the number of classes).',
              low=TOP_K.low, high=MAX_TOP_K),
    # --- topics and QoS (need new subscriptions: reload) ----------------------------------------
    ParamSpec('topics', 'string_array', ['image'],
              'Camera topics (relative names remap from launch). A name ending in /compressed '
              'is read as sensor_msgs/CompressedImage, any other as sensor_msgs/Image.',
              reload=True),
    ParamSpec('qos.reliability', 'string', 'best_effort',
              'Reliability of the camera subscriptions (sensor-data default: best_effort).',
              reload=True, choices=RELIABILITIES),
    ParamSpec('qos.depth', 'int', 1,
              'History depth of the camera subscriptions (the node keeps only the newest '
              'frame anyway; frames overwritten here are counted as lost_before_callback).',
              reload=True, low=1, high=1000),
    ParamSpec('output.reliability', 'string', 'reliable',
              'Reliability of the classification publisher.',
              reload=True, choices=RELIABILITIES),
    ParamSpec('output.depth', 'int', 10,
              'History depth of the classification publisher.', reload=True,
              low=1, high=1000),
    # --- diagnostics --------------------------------------------------------------------------
    ParamSpec('diagnostics.period_s', 'double', 1.0,
              'Period of the /diagnostics message in seconds.', reload=True,
              low=0.05, high=60.0),
    ParamSpec('diagnostics.window_s', 'double', 5.0,
              'Sliding window of the rates and latency percentiles, in seconds.',
              low=0.5, high=600.0),
    ParamSpec('diagnostics.min_rate_hz', 'double', 0.0,
              'WARN when results come out slower than this (0 disables).',
              low=0.0, high=100000.0),
    ParamSpec('diagnostics.max_latency_ms', 'double', 0.0,
              'WARN when the p90 end-to-end latency exceeds this, ERROR above twice it '
              '(0 disables).', low=0.0, high=100000.0),
    ParamSpec('diagnostics.max_bad_input_ratio', 'double', 0.5,
              'WARN when more than this share of received frames in the window was bad input.',
              low=0.0, high=1.0),
    ParamSpec('bad_input_warn_period_s', 'double', 5.0,
              'At most one bad-input warning per this many seconds (all are counted).',
              low=0.0, high=3600.0),
    # --- input ------------------------------------------------------------------------------
    ParamSpec('decode.max_bytes', 'int', DEFAULT_MAX_DECODE_BYTES,
              'Decode budget: a frame whose header announces more than this many decoded bytes '
              '(width x height x channels x bytes per channel) is refused before decoding.',
              low=MAX_DECODE_BYTES_RANGE[0], high=MAX_DECODE_BYTES_RANGE[1]),
)
PARAMETER_NAMES = tuple(p.name for p in PARAMETERS)
BY_NAME = {p.name: p for p in PARAMETERS}
DEFAULTS = {p.name: p.default for p in PARAMETERS}


def check_value(spec: ParamSpec, value) -> Optional[str]:
    """Return why ``value`` is not allowed for ``spec`` (None when it is)."""
    if value is None:
        return f'{spec.name} cannot be unset'
    if spec.kind == 'string':
        if not isinstance(value, str):
            return f'{spec.name} must be a string, got {value!r}'
        if spec.choices and value not in spec.choices:
            return f'{spec.name} must be one of {spec.choices}, got {value!r}'
        if spec.parse is not None:
            try:
                spec.parse(value)
            except ConfigError as exc:
                return f'{spec.name}: {exc}'
        return None
    if spec.kind in ('int', 'double'):
        numbers = [value]
    elif spec.kind == 'string_array':
        if not all(isinstance(v, str) and v for v in value):
            return f'{spec.name} must be a list of non-empty strings, got {list(value)!r}'
        return None if len(value) else f'{spec.name} needs at least one entry'
    else:
        return None
    for number in numbers:
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            return f'{spec.name} must be numeric, got {number!r}'
        if not math.isfinite(number):
            return f'{spec.name} must be finite, got {number!r}'
        if spec.low is not None and not spec.low <= number <= spec.high:
            return f'{spec.name} must be in [{spec.low:g}, {spec.high:g}], got {number!r}'
    return None


def build_policy(values: Mapping[str, Any]):
    """
    Build the runtime exit policy the ``exit.*`` values describe.

    :param values: parameter name -> value (all ``exit.*`` names present).
    :return: a :mod:`gfde_perception.runtime.policies` policy, not yet bound to a model.
    :raises ConfigError: the values do not describe a usable policy (the reason says why).
    """
    low, high = values['exit.budget_low'], values['exit.budget_high']
    if low > high:
        raise ConfigError(f'exit.budget_low {low} is above exit.budget_high {high}')
    return parse_policy(values['exit.policy'], BudgetBounds(low, high))


def health_bounds(values: Mapping[str, Any]) -> HealthBounds:
    """Return the diagnostic bounds the ``diagnostics.*`` values describe."""
    return HealthBounds(min_output_rate_hz=values['diagnostics.min_rate_hz'],
                        max_latency_ms=values['diagnostics.max_latency_ms'],
                        max_bad_input_ratio=values['diagnostics.max_bad_input_ratio'],
                        window_s=values['diagnostics.window_s'])


def runtime_config(values: Mapping[str, Any]) -> RuntimeConfig:
    """Return the :class:`~gfde_perception.runtime.RuntimeConfig` of the ``model.*`` values."""
    return RuntimeConfig(backend=values['model.backend'], precision=values['model.precision'],
                         schedule=values['model.schedule'],
                         exit_workers=values['model.exit_workers'], top_k=MAX_TOP_K,
                         warmup=values['model.warmup'],
                         engine_cache_dir=values['model.engine_cache_dir'] or None,
                         threads=values['model.threads'], energy=values['model.energy'])


def bundle_path(values: Mapping[str, Any]) -> str:
    """Return the bundle ``model.bundle`` names, or the embedded default model's path."""
    return str(values['model.bundle'] or default_bundle_path())


def build_classifier(values: Mapping[str, Any]) -> Classifier:
    """Load the bundle named by ``model.bundle`` (or the embedded default) into a Classifier."""
    return Classifier(bundle_path(values), runtime_config(values), policy=build_policy(values))


def check_update(current: Mapping[str, Any], changes: Mapping[str, Any],
                 classifier=None) -> Tuple[Dict, Any]:
    """
    Validate a run-time change of parameters and build what it implies.

    :param current: the values in force.
    :param changes: parameter name -> new value.
    :param classifier: the loaded model, or None while none is (then ``reload`` parameters may
        change); a new exit policy is bound to it, which checks it against the model.
    :return: ``(merged values, new policy or None)``; the policy is bound only to ``classifier``.
    :raises ConfigError: a ``reload`` parameter changes while a model is loaded, a value is
        invalid, or the change leaves an unusable policy (or one the model refuses).
    """
    refusal = reload_refusal(changes, loaded=classifier is not None)
    if refusal:
        raise ConfigError(refusal)
    for name, value in changes.items():
        spec = BY_NAME.get(name)
        if spec is None:
            continue  # a parameter some other part of the node declared
        reason = check_value(spec, value)
        if reason:
            raise ConfigError(reason)
    merged = dict(current)
    merged.update(changes)
    policy = None
    if any(name.startswith('exit.') for name in changes):
        policy = build_policy(merged)
    if any(name.startswith('diagnostics.') for name in changes):
        health_bounds(merged)
    if policy is not None and classifier is not None:
        classifier.set_policy(policy)  # binding validates it (exit count, force index)
    return merged, policy


def reload_refusal(changes: Mapping[str, Any], loaded: bool) -> Optional[str]:
    """
    Return why ``changes`` cannot apply now (None when they can).

    :param changes: parameter name -> new value.
    :param loaded: True while a model is loaded (the lifecycle node is configured).
    """
    needing = sorted(name for name in changes if name in BY_NAME and BY_NAME[name].reload)
    if needing and loaded:
        return (f'{", ".join(needing)} take(s) effect when the model and subscriptions are '
                'made: change while unconfigured (deactivate, cleanup, set, configure)')
    return None


def qos_profile(values: Mapping[str, Any], prefix: str):
    """Return the keep-last, volatile QoS of ``<prefix>.reliability`` and ``<prefix>.depth``."""
    # rclpy here, not at the top: the table above is read without ROS (launch test, docs).
    from rclpy.qos import (QoSDurabilityPolicy, QoSHistoryPolicy, QoSProfile,
                           QoSReliabilityPolicy)
    return QoSProfile(
        history=QoSHistoryPolicy.KEEP_LAST, depth=int(values[f'{prefix}.depth']),
        reliability=(QoSReliabilityPolicy.RELIABLE
                     if values[f'{prefix}.reliability'] == 'reliable'
                     else QoSReliabilityPolicy.BEST_EFFORT),
        durability=QoSDurabilityPolicy.VOLATILE)


def declare_parameters(node, table=PARAMETERS,
                       reload_read_only: bool = True) -> Dict[str, Any]:
    """
    Declare every parameter of ``table`` (default :data:`PARAMETERS`) on ``node``.

    :param node: an rclpy Node or LifecycleNode.
    :param table: the node's :class:`ParamSpec` entries.
    :param reload_read_only: declare the ``reload`` parameters read-only (the plain node, which
        loads once); False lets them change while unconfigured (the lifecycle node).
    :return: parameter name -> value after overrides (launch, YAML, command line).
    :raises ConfigError: an override is out of range or of the wrong kind.
    """
    # rclpy here, not at the top: the table above is read without ROS (launch test, docs).
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

    values = {}
    for spec in table:
        descriptor = ParameterDescriptor(description=spec.description,
                                         additional_constraints=spec.constraints,
                                         read_only=spec.reload and reload_read_only)
        if spec.kind == 'int' and spec.low is not None:
            descriptor.integer_range = [IntegerRange(from_value=int(spec.low),
                                                     to_value=int(spec.high), step=1)]
        elif spec.kind == 'double' and spec.low is not None:
            descriptor.floating_point_range = [FloatingPointRange(
                from_value=float(spec.low), to_value=float(spec.high), step=0.0)]
        try:
            param = node.declare_parameter(spec.name, spec.default, descriptor)
        except Exception as exc:  # rclpy raises several types for a bad override
            raise ConfigError(f'parameter {spec.name}: {exc}') from exc
        value = param.value
        if spec.kind == 'string_array' and value is not None:
            value = list(value)
        reason = check_value(spec, value)
        if reason:
            raise ConfigError(reason)
        values[spec.name] = value
    return values
