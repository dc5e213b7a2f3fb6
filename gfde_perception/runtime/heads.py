# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Exit heads for the CPU worker: the same maths in numpy or in torch.

An exit head maps one pooled feature (C,) to logits (K,). For the light heads GFDE uses (a
linear layer, a Linear-GELU-Linear MLP, the final class + distillation heads averaged) a
(1, C) @ (C, K) product costs microseconds, so the per-call overhead of torch dispatch can
dominate; :func:`choose_head_runner` measures both on this machine and keeps the faster.
"""

import logging
import math
import time
from typing import Callable, Optional

import numpy as np
import torch
from torch import nn

LOG = logging.getLogger(__name__)

_erf = np.frompyfunc(math.erf, 1, 1)


def _gelu(x: np.ndarray) -> np.ndarray:
    # Exact (erf) GELU, as torch.nn.GELU() computes it; the tanh form could flip a close call.
    return (0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float32))).astype(np.float32)


def _linear_params(module: nn.Linear) -> tuple:
    weight = module.weight.detach().to('cpu', torch.float32).numpy().T.copy()  # (C, K)
    bias = (module.bias.detach().to('cpu', torch.float32).numpy().copy()
            if module.bias is not None else np.zeros(weight.shape[1], np.float32))
    return weight, bias


def _numpy_layers(module: nn.Module) -> Optional[list]:
    """Flatten a head into numpy steps; None when a layer is not supported."""
    if isinstance(module, nn.Linear):
        return [('linear',) + _linear_params(module)]
    if isinstance(module, (nn.Identity, nn.Dropout)):
        return []
    if isinstance(module, nn.GELU) and module.approximate == 'none':
        return [('gelu',)]
    if isinstance(module, nn.ReLU):
        return [('relu',)]
    if isinstance(module, nn.Sequential):
        steps = []
        for child in module:
            sub = _numpy_layers(child)
            if sub is None:
                return None
            steps.extend(sub)
        return steps
    head = getattr(module, 'head', None)
    if isinstance(head, nn.Linear) and hasattr(module, 'head_dist') and \
            set(dict(module.named_children())) <= {'head', 'head_dist'}:
        # GFDE's final head: mean of class and distillation heads, folded into one product.
        w, b = _linear_params(head)
        if module.head_dist is None:
            return [('linear', w, b)]
        if not isinstance(module.head_dist, nn.Linear):
            return None
        w2, b2 = _linear_params(module.head_dist)
        return [('linear', ((w + w2) * 0.5).astype(np.float32),
                 ((b + b2) * 0.5).astype(np.float32))]
    return None


def numpy_head(module: nn.Module) -> Optional[Callable]:
    """Return ``f(pooled (C,) float32) -> logits (K,)`` in numpy, or None if unsupported."""
    steps = _numpy_layers(module)
    if steps is None or not steps:
        return None

    def run(pooled: np.ndarray) -> np.ndarray:
        x = pooled
        for step in steps:
            if step[0] == 'linear':
                x = x @ step[1] + step[2]
            elif step[0] == 'gelu':
                x = _gelu(x)
            else:
                x = np.maximum(x, 0.0)
        return x

    return run


def torch_head(module: nn.Module) -> Callable:
    """Return ``f(pooled (C,) float32 ndarray) -> logits (K,) float32`` running the module."""
    module = module.to('cpu', torch.float32).eval()

    def run(pooled: np.ndarray) -> np.ndarray:
        # inference_mode is thread-local: enter it on the worker thread that runs the head.
        with torch.inference_mode():
            return module(torch.from_numpy(pooled)[None])[0].numpy()

    return run


def _time_us(fn: Callable, x: np.ndarray, iters: int) -> float:
    fn(x)
    samples = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn(x)
        samples.append(time.perf_counter() - t0)
    return float(np.median(samples)) * 1e6


def choose_head_runner(module: nn.Module, dim: int, impl: str = 'auto',
                       iters: int = 50) -> tuple:
    """
    Build the runner of one exit head.

    :param module: the head (``GFDE.exit_heads[k]``).
    :param dim: width of its pooled input.
    :param impl: 'numpy', 'torch' or 'auto' (time both on a random input, keep the faster).
    :param iters: timed calls per candidate for 'auto'.
    :returns: (runner, name, reason).
    """
    as_numpy = numpy_head(module)
    as_torch = torch_head(module)
    if impl == 'torch' or as_numpy is None:
        why = 'forced' if impl == 'torch' else 'a layer has no numpy form'
        return as_torch, 'torch', why
    if impl == 'numpy':
        return as_numpy, 'numpy', 'forced'
    x = np.random.default_rng(0).standard_normal(dim).astype(np.float32)
    t_np, t_torch = _time_us(as_numpy, x, iters), _time_us(as_torch, x, iters)
    if t_np <= t_torch:
        return as_numpy, 'numpy', f'numpy {t_np:.1f} us vs torch {t_torch:.1f} us per call'
    return as_torch, 'torch', f'torch {t_torch:.1f} us vs numpy {t_np:.1f} us per call'
