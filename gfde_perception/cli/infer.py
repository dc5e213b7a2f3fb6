# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
``gfde-infer [BUNDLE.gfde] IMAGE...``: classify image files and print results with timings.

The first argument is taken as the bundle when it ends in ``.gfde``; otherwise the model
embedded in the package is used. Images are read with OpenCV (any format it reads, 8 or 16 bit),
converted from OpenCV's BGR order to RGB, and preprocessed as the bundle says.
"""

import argparse
import json
import logging
import math
import sys

import cv2
from gfde_perception.bundle import default_bundle_path
from gfde_perception.choices import (BACKENDS, DEFAULT_BACKEND, DEFAULT_PRECISION,
                                     DEFAULT_SCHEDULE, PRECISIONS, SCHEDULES, THREADS, TOP_K,
                                     WARMUP)
from gfde_perception.errors import GfdeError, ImageError, ImageErrorKind
from gfde_perception.runtime import Classifier, RuntimeConfig
from gfde_perception.runtime.policies import DEFAULT_POLICY, parse_policy, POLICY_USAGE
import numpy as np


def read_image(path: str) -> np.ndarray:
    """Read an image file as RGB (H, W, 3) or grey (H, W), keeping 16-bit depth."""
    image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ImageError(f'cannot read an image from {path!r} (missing file or unknown format)',
                         ImageErrorKind.UNREADABLE)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return image


def _fmt(values) -> str:
    return '[' + ' '.join(f'{v:.3f}' for v in values) + ']'


def format_result(path: str, result, median_ms: float = math.nan) -> str:
    """Return a human-readable report of one result."""
    t = result.timings
    if result.energy.measured:
        energy = f'{result.energy.joules:.4f} J ({result.energy.source})'
    else:
        energy = f'not measured ({result.energy.method})'
    top = ', '.join(f'{s.label or s.class_id} {s.score:.3f}' for s in result.top_k)
    lines = [
        f'{path}: {result.label or result.class_id} (class {result.class_id}) '
        f'score {result.score:.3f}',
        f'  exit {result.exit_index}/{result.num_exits - 1} '
        f'(blocks {result.blocks_run}/{result.blocks_total}), policy {result.policy}, '
        f'{result.gate_metric} {_fmt(result.gate_confidence)} vs thresholds '
        f'{_fmt(result.gate_threshold)}, speculative segments {result.speculative_segments}',
        f'  top-{len(result.top_k)}: {top}',
        f'  ms: preprocess {t.preprocess_ms:.3f}, segments {_fmt(t.segment_ms)}, '
        f'exit heads {_fmt(t.exit_head_ms)}, inference {t.inference_ms:.3f}'
        + (f' (median of repeats {median_ms:.3f})' if not math.isnan(median_ms) else ''),
        f'  backend {result.backend}, exits on {result.exit_device}, model {result.model_id}, '
        f'energy {energy}',
    ]
    return '\n'.join(lines)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of gfde-infer."""
    parser = argparse.ArgumentParser(
        prog='gfde-infer', description='Classify image files with a GFDE bundle.')
    parser.add_argument('paths', nargs='+', metavar='[BUNDLE.gfde] IMAGE',
                        help='optional bundle (first, ending in .gfde), then image files')
    parser.add_argument('--backend', choices=BACKENDS, default=DEFAULT_BACKEND)
    parser.add_argument('--precision', choices=PRECISIONS, default=DEFAULT_PRECISION,
                        help='GPU backends only')
    parser.add_argument('--schedule', choices=SCHEDULES, default=DEFAULT_SCHEDULE)
    parser.add_argument('--threads', type=int, default=THREADS.default,
                        help='0 = library default')
    parser.add_argument('--policy', default=DEFAULT_POLICY, help=f'exit policy: {POLICY_USAGE}')
    parser.add_argument('--top-k', type=int, default=TOP_K.default)
    parser.add_argument('--warmup', type=int, default=WARMUP.default)
    parser.add_argument('--repeat', type=int, default=1,
                        help='classify each image this many times; report the median')
    parser.add_argument('--cache-dir', default=None, help='engine and decision cache')
    parser.add_argument('--json', action='store_true', help='one JSON object per line')
    parser.add_argument('--log-level', default='WARNING')
    return parser


def main(argv=None) -> int:
    """Run gfde-infer; returns the exit status (0 ok, 1 some image failed, 2 unusable setup)."""
    # Intermixed: options may stand between the bundle and the images, or after them.
    args = build_parser().parse_intermixed_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format='[%(levelname)s] %(name)s: %(message)s')
    paths = list(args.paths)
    bundle = paths.pop(0) if paths[0].endswith('.gfde') else str(default_bundle_path())
    if not paths:
        print('gfde-infer: no image given', file=sys.stderr)
        return 2
    if args.repeat < 1:
        print('gfde-infer: --repeat must be >= 1', file=sys.stderr)
        return 2
    try:
        config = RuntimeConfig(backend=args.backend, precision=args.precision,
                               schedule=args.schedule, threads=args.threads, top_k=args.top_k,
                               warmup=args.warmup, engine_cache_dir=args.cache_dir)
        policy = parse_policy(args.policy)
        classifier = Classifier(bundle, config, policy)
    except GfdeError as exc:
        print(f'gfde-infer: {type(exc).__name__}: {exc}', file=sys.stderr)
        return 2
    status = 0
    with classifier:
        print(f'# {classifier.model_id}: backend {classifier.backend} '
              f'({classifier.backend_reason}); schedule {classifier.schedule} '
              f'({classifier.schedule_reason}); policy {classifier.policy.describe()}',
              file=sys.stderr)
        for path in paths:
            try:
                image = read_image(path)
                times = []
                for _ in range(args.repeat):
                    result = classifier.classify(image)
                    times.append(result.timings.inference_ms)
            except GfdeError as exc:
                print(f'gfde-infer: {path}: {type(exc).__name__}: {exc}', file=sys.stderr)
                status = 1
                continue
            median = float(np.median(times)) if args.repeat > 1 else math.nan
            if args.json:
                data = result.to_dict()
                data['image'] = path
                if args.repeat > 1:
                    data['median_inference_ms'] = median
                print(json.dumps(data))
            else:
                print(format_result(path, result, median))
    return status


if __name__ == '__main__':
    sys.exit(main())
