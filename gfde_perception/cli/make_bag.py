# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
r"""
``gfde-make-bag``: build a labelled rosbag2 bag from Fashion-MNIST or an image folder.

The bag is written by :func:`gfde_perception.recording.make_bag` (see there for the topics and
the deterministic stamps); the images come from the training data sources.

Example::

    gfde-make-bag demo_bag --fashion-mnist --split test --count 200 --size 640x480 \\
        --encoding bgr8 --storage mcap
"""

import argparse
import json
from pathlib import Path
import sys

from gfde_perception.errors import ConfigError, GfdeError
from gfde_perception.recording import (DEFAULT_START_NS, ENCODINGS, LABEL_TYPES, make_bag,
                                       MakeBagConfig, STORAGES)
from gfde_perception.training import data
import numpy as np


def _parse_size(text: str) -> tuple:
    try:
        width, height = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'size must be WIDTHxHEIGHT, got {text!r}') from None
    return width, height


def build_parser() -> argparse.ArgumentParser:
    """Return the ``gfde-make-bag`` argument parser."""
    parser = argparse.ArgumentParser(
        prog='gfde-make-bag', description=__doc__.split('\n\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('output', help='bag directory to create (must not exist)')
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--fashion-mnist', action='store_true',
                        help='take frames from the Fashion-MNIST IDX files')
    source.add_argument('--image-folder', type=Path,
                        help='take frames from FOLDER/<class>/<image> (class = sub-folder)')
    parser.add_argument('--fashion-mnist-dir', default=None,
                        help='folder of the Fashion-MNIST IDX files (default: the Debian path)')
    parser.add_argument('--split', choices=('train', 'test'), default='test')
    parser.add_argument('--count', type=int, default=200, help='number of frames (0 = all)')
    parser.add_argument('--offset', type=int, default=0, help='index of the first frame used')
    parser.add_argument('--size', type=_parse_size, default=None,
                        help='resize frames to WIDTHxHEIGHT, e.g. 640x480')
    parser.add_argument('--encoding', choices=ENCODINGS, default='rgb8')
    parser.add_argument('--quality', type=int, default=90, help='JPEG quality')
    parser.add_argument('--storage', choices=STORAGES, default='mcap')
    parser.add_argument('--image-topic', default='/camera/image_raw')
    parser.add_argument('--label-topic', default='/camera/label')
    parser.add_argument('--label-type', choices=tuple(LABEL_TYPES), default='string')
    parser.add_argument('--rate', type=float, default=30.0, help='frame rate for the stamps, Hz')
    parser.add_argument('--start-ns', type=int, default=DEFAULT_START_NS,
                        help='stamp of the first frame, ns')
    parser.add_argument('--frame-id', default='camera')
    parser.add_argument('--sidecar', type=Path, default=None,
                        help='also write labels to this .csv or .json file')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    return parser


def _load_source(args):
    if args.fashion_mnist:
        root = args.fashion_mnist_dir or data.FASHION_MNIST_DIR
        dataset = data.load_fashion_mnist(args.split, root)
    else:
        dataset = data.load_image_folder(args.image_folder)
    if args.offset < 0 or args.offset >= len(dataset):
        raise ConfigError(f'offset {args.offset} outside [0, {len(dataset)})')
    stop = len(dataset) if args.count == 0 else min(len(dataset), args.offset + args.count)
    chosen = dataset.subset(np.arange(args.offset, stop))
    return chosen.images, chosen.labels, chosen.classes


def main(argv=None) -> int:
    """Run ``gfde-make-bag``; returns the process exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.count < 0:
            raise ConfigError(f'--count must be >= 0, got {args.count}')
        config = MakeBagConfig(
            image_topic=args.image_topic, encoding=args.encoding,
            label_topic=args.label_topic if args.label_type != 'none' else '',
            label_type=args.label_type, storage=args.storage, rate_hz=args.rate,
            start_ns=args.start_ns, frame_id=args.frame_id, size=args.size,
            quality=args.quality)
        images, labels, classes = _load_source(args)
        summary = make_bag(args.output, images, labels, classes, config,
                           sidecar=args.sidecar, progress=not args.quiet)
    except GfdeError as exc:
        print(f'gfde-make-bag: error: {exc}', file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
