# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
The classifier node's parameters: one table, used to declare them and to check launch files.

:data:`PARAMETERS` is plain data (no rclpy at import time), so the launch-file test and the docs
read the same names, types, defaults and ranges that :func:`declare_parameters` gives the node.
Parameters are deployment knobs only; preprocessing travels with the model bundle. Read-only
parameters need a reload of the model or of a subscription; the others change at run time
through the parameter services and are validated first (:func:`check_update`).
"""

from dataclasses import dataclass
import math
from typing import Any, Dict, Mapping, Optional, Tuple

from gfde_perception.errors import ConfigError
from gfde_perception.image_codec import DEFAULT_MAX_DECODE_BYTES, MAX_DECODE_BYTES_RANGE
from gfde_perception.stats import HealthBounds

BACKENDS = ('auto', 'tensorrt', 'cuda', 'torch', 'torch-compile', 'onnxruntime')
POLICIES = ('calibrated', 'threshold', 'final', 'force', 'budget')
RELIABILITIES = ('best_effort', 'reliable')
# The runtime is built with the largest top-k the parameter allows, so top_k can change at run
# time: the node only truncates the list it publishes.
MAX_TOP_K = 100
UNSET = None  # default of a parameter declared by type only (no value until one is given)


@dataclass(frozen=True)
class ParamSpec:
    """
    One node parameter.

    :ivar name: parameter name (dots group them in YAML).
    :ivar kind: 'string', 'int', 'double', 'bool', 'string_array' or 'double_array'.
    :ivar default: default value; ``UNSET`` declares the parameter by type with no value.
    :ivar description: what it does, shown by ``ros2 param describe``.
    :ivar read_only: True when a change needs a reload (set it at launch).
    :ivar low: lowest allowed number (for 'int' and 'double'; per element for arrays).
    :ivar high: highest allowed number.
    :ivar choices: allowed strings for 'string' parameters.
    """

    name: str
    kind: str
    default: Any
    description: str
    read_only: bool = False
    low: Optional[float] = None
    high: Optional[float] = None
    choices: Tuple[str, ...] = ()

    @property
    def constraints(self) -> str:
        """Return the allowed values in words (the descriptor's additional_constraints)."""
        parts = []
        if self.choices:
            parts.append('one of: ' + ', '.join(self.choices))
        if self.low is not None:
            each = 'each ' if self.kind.endswith('_array') else ''
            parts.append(f'{each}in [{self.low:g}, {self.high:g}]')
        return '; '.join(parts)


PARAMETERS = (
    # --- model (read at start; the lifecycle node re-reads them at configure) -------------
    ParamSpec('model.bundle', 'string', '',
              'Path of the .gfde model bundle; empty = the embedded default model.',
              read_only=True),
    ParamSpec('model.backend', 'string', 'auto',
              "Backbone backend: 'auto' measures the available ones and keeps the fastest.",
              read_only=True, choices=BACKENDS),
    ParamSpec('model.precision', 'string', 'fp16',
              'Precision of GPU backends (CPU backends always run fp32).',
              read_only=True, choices=('fp16', 'fp32')),
    ParamSpec('model.schedule', 'string', 'auto',
              'Segment schedule: speculative overlaps segment k+1 with exit k; auto measures.',
              read_only=True, choices=('auto', 'speculative', 'sequential')),
    ParamSpec('model.exit_workers', 'int', 1,
              'CPU worker threads that run the exit heads and gates.',
              read_only=True, low=1, high=16),
    ParamSpec('model.threads', 'int', 0,
              'Intra-op threads of torch / onnxruntime; 0 keeps the library default.',
              read_only=True, low=0, high=256),
    ParamSpec('model.warmup', 'int', 10,
              'Frames run at load before the first real one (0 disables).',
              read_only=True, low=0, high=1000),
    ParamSpec('model.energy', 'string', 'auto',
              "Energy counter: 'auto' takes the first found; 'none' disables measuring.",
              read_only=True, choices=('auto', 'none', 'nvml', 'rapl', 'ina3221')),
    ParamSpec('model.engine_cache_dir', 'string', '',
              'Cache of TensorRT engines and auto decisions; empty = $GFDE_CACHE_DIR or '
              '~/.cache/gfde_perception.', read_only=True),
    # --- exits (change at run time) ---------------------------------------------------------
    ParamSpec('exit.policy', 'string', 'calibrated',
              "Exit policy: 'calibrated' (the bundle's thresholds), 'threshold' (exit.thresholds),"
              " 'final' (never exit early), 'force' (always exit.force_index), 'budget' (hold "
              'exit.latency_budget_ms or exit.energy_budget_j).', choices=POLICIES),
    ParamSpec('exit.thresholds', 'double_array', UNSET,
              "Confidence threshold per early exit for the 'threshold' policy (num_exits - 1 "
              "values; <= 0 always exits, >= 1 never exits early). Unset = the bundle's.",
              low=0.0, high=1.0),
    ParamSpec('exit.force_index', 'int', 0,
              "Exit taken on every frame by the 'force' policy (must be < num_exits).",
              low=0, high=255),
    ParamSpec('exit.latency_budget_ms', 'double', 0.0,
              "Mean inference latency the 'budget' policy holds (0 = no latency target).",
              low=0.0, high=100000.0),
    ParamSpec('exit.energy_budget_j', 'double', 0.0,
              "Mean energy per frame the 'budget' policy holds; needs a measured counter "
              '(0 = no energy target).', low=0.0, high=1000.0),
    ParamSpec('exit.budget_low', 'double', 0.0,
              "Lowest threshold the 'budget' policy may use (most aggressive).",
              low=0.0, high=1.0),
    ParamSpec('exit.budget_high', 'double', 1.0,
              "Highest threshold the 'budget' policy may use (most accurate).",
              low=0.0, high=1.0),
    ParamSpec('top_k', 'int', 5,
              'Length of the top-k list in each result (clipped to the number of classes).',
              low=1, high=MAX_TOP_K),
    # --- topics and QoS (need new subscriptions: read-only) ------------------------------------
    ParamSpec('topics', 'string_array', ['image'],
              'Camera topics (relative names remap from launch). A name ending in /compressed '
              'is read as sensor_msgs/CompressedImage, any other as sensor_msgs/Image.',
              read_only=True),
    ParamSpec('qos.reliability', 'string', 'best_effort',
              'Reliability of the camera subscriptions (sensor-data default: best_effort).',
              read_only=True, choices=RELIABILITIES),
    ParamSpec('qos.depth', 'int', 1,
              'History depth of the camera subscriptions (the node keeps only the newest '
              'frame anyway).', read_only=True, low=1, high=1000),
    ParamSpec('output.reliability', 'string', 'reliable',
              'Reliability of the classification publisher.',
              read_only=True, choices=RELIABILITIES),
    ParamSpec('output.depth', 'int', 10,
              'History depth of the classification publisher.', read_only=True,
              low=1, high=1000),
    # --- diagnostics --------------------------------------------------------------------------
    ParamSpec('diagnostics.period_s', 'double', 1.0,
              'Period of the /diagnostics message in seconds.', read_only=True,
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
    if value is UNSET:
        return None if spec.default is UNSET else f'{spec.name} cannot be unset'
    if spec.kind == 'string':
        if not isinstance(value, str):
            return f'{spec.name} must be a string, got {value!r}'
        if spec.choices and value not in spec.choices:
            return f'{spec.name} must be one of {spec.choices}, got {value!r}'
        return None
    if spec.kind in ('int', 'double'):
        numbers = [value]
    elif spec.kind == 'double_array':
        numbers = list(value)
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
    from gfde_perception.runtime import policies

    name = values['exit.policy']
    if name == 'calibrated':
        return policies.ThresholdPolicy()
    if name == 'threshold':
        thresholds = values['exit.thresholds']
        if thresholds is UNSET:
            raise ConfigError("exit.policy 'threshold' needs exit.thresholds (one per early "
                              "exit); use 'calibrated' for the bundle's own")
        return policies.ThresholdPolicy(tuple(thresholds))
    if name == 'final':
        return policies.FinalExitPolicy()
    if name == 'force':
        return policies.ForceExitPolicy(int(values['exit.force_index']))
    if name == 'budget':
        latency, energy = values['exit.latency_budget_ms'], values['exit.energy_budget_j']
        if (latency > 0) == (energy > 0):
            raise ConfigError("exit.policy 'budget' needs exactly one of "
                              'exit.latency_budget_ms and exit.energy_budget_j > 0')
        low, high = values['exit.budget_low'], values['exit.budget_high']
        if low > high:
            raise ConfigError(f'exit.budget_low {low} is above exit.budget_high {high}')
        bounds = policies.BudgetBounds(low, high)
        if latency > 0:
            return policies.BudgetPolicy(target_latency_ms=latency, bounds=bounds)
        return policies.BudgetPolicy(target_energy_j=energy, bounds=bounds)
    raise ConfigError(f'exit.policy must be one of {POLICIES}, got {name!r}')


def health_bounds(values: Mapping[str, Any]) -> HealthBounds:
    """Return the diagnostic bounds the ``diagnostics.*`` values describe."""
    return HealthBounds(min_output_rate_hz=values['diagnostics.min_rate_hz'],
                        max_latency_ms=values['diagnostics.max_latency_ms'],
                        max_bad_input_ratio=values['diagnostics.max_bad_input_ratio'],
                        window_s=values['diagnostics.window_s'])


def runtime_config(values: Mapping[str, Any]):
    """Return the :class:`~gfde_perception.runtime.RuntimeConfig` of the ``model.*`` values."""
    from gfde_perception.runtime.config import RuntimeConfig

    return RuntimeConfig(backend=values['model.backend'], precision=values['model.precision'],
                         schedule=values['model.schedule'],
                         exit_workers=values['model.exit_workers'], top_k=MAX_TOP_K,
                         warmup=values['model.warmup'],
                         engine_cache_dir=values['model.engine_cache_dir'] or None,
                         threads=values['model.threads'], energy=values['model.energy'])


def build_classifier(values: Mapping[str, Any]):
    """Load the bundle named by ``model.bundle`` (or the embedded default) into a Classifier."""
    from gfde_perception.runtime import Classifier

    bundle = values['model.bundle']
    if not bundle:
        from gfde_perception.bundle import default_bundle_path
        bundle = default_bundle_path()
    return Classifier(bundle, runtime_config(values), policy=build_policy(values))


def check_update(current: Mapping[str, Any], changes: Mapping[str, Any]) -> Tuple[Dict, Any]:
    """
    Validate a run-time change of parameters and build what it implies.

    :param current: the values in force.
    :param changes: parameter name -> new value.
    :return: ``(merged values, new policy or None)``; the policy is not yet bound.
    :raises ConfigError: a value is invalid, or the change leaves an unusable policy.
    """
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
    return merged, policy


def declare_parameters(node, table=PARAMETERS) -> Dict[str, Any]:
    """
    Declare every parameter of ``table`` (default :data:`PARAMETERS`) on ``node``.

    :param node: an rclpy Node or LifecycleNode.
    :param table: the node's :class:`ParamSpec` entries.
    :return: parameter name -> value after overrides (launch, YAML, command line).
    :raises ConfigError: an override is out of range or of the wrong kind.
    """
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
    from rclpy.parameter import Parameter

    types = {'string': Parameter.Type.STRING, 'int': Parameter.Type.INTEGER,
             'double': Parameter.Type.DOUBLE, 'bool': Parameter.Type.BOOL,
             'string_array': Parameter.Type.STRING_ARRAY,
             'double_array': Parameter.Type.DOUBLE_ARRAY}
    values = {}
    for spec in table:
        descriptor = ParameterDescriptor(description=spec.description,
                                         additional_constraints=spec.constraints,
                                         read_only=spec.read_only)
        # ROS enforces ranges only on scalars; array elements are checked in check_value.
        if spec.kind == 'int' and spec.low is not None:
            descriptor.integer_range = [IntegerRange(from_value=int(spec.low),
                                                     to_value=int(spec.high), step=1)]
        elif spec.kind == 'double' and spec.low is not None:
            descriptor.floating_point_range = [FloatingPointRange(
                from_value=float(spec.low), to_value=float(spec.high), step=0.0)]
        default = types[spec.kind] if spec.default is UNSET else spec.default
        try:
            param = node.declare_parameter(spec.name, default, descriptor)
        except Exception as exc:  # rclpy raises several types for a bad override
            raise ConfigError(f'parameter {spec.name}: {exc}') from exc
        value = param.value
        if spec.kind.endswith('_array') and value is not None:
            value = list(value)
        reason = check_value(spec, value)
        if reason:
            raise ConfigError(reason)
        values[spec.name] = value
    return values
