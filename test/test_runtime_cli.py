# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""gfde-infer on image files written by OpenCV."""

import json

import cv2
from gfde_perception.cli.infer import main, read_image
import numpy as np
import pytest
from runtime_fixtures import make_tiny_bundle


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp('cli')
    bundle = make_tiny_bundle(folder)
    rng = np.random.default_rng(0)
    images = []
    for i, ext in enumerate(('png', 'jpg')):
        bgr = rng.integers(0, 256, (20 + i, 30, 3), dtype=np.uint8)
        path = folder / f'image{i}.{ext}'
        cv2.imwrite(str(path), bgr)
        images.append(str(path))
    return folder, bundle, images


def test_read_image_converts_bgr_to_rgb(tmp_path):
    bgr = np.zeros((4, 5, 3), np.uint8)
    bgr[..., 0] = 255  # blue in OpenCV's order
    cv2.imwrite(str(tmp_path / 'blue.png'), bgr)
    rgb = read_image(str(tmp_path / 'blue.png'))
    assert rgb.shape == (4, 5, 3) and rgb[0, 0].tolist() == [0, 0, 255]
    grey16 = (np.arange(20, dtype=np.uint16) * 3000).reshape(4, 5)
    cv2.imwrite(str(tmp_path / 'g16.png'), grey16)
    assert read_image(str(tmp_path / 'g16.png')).dtype == np.uint16


def test_json_output_per_image(files, capsys):
    folder, bundle, images = files
    bundle_path = str(folder / 'tiny.gfde')
    status = main([bundle_path, *images, '--json', '--backend', 'torch', '--warmup', '1',
                   '--threads', '1', '--cache-dir', str(folder), '--policy', 'force=1',
                   '--repeat', '3'])
    out, err = capsys.readouterr()
    assert status == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r['image'] for r in rows] == images
    for row in rows:
        assert row['exit_index'] == 1 and row['policy'] == 'force'
        assert row['model_id'] == f'tiny@{bundle.checksum[:12]}'
        assert row['median_inference_ms'] > 0 and len(row['timings']['segment_ms']) >= 2
        assert row['energy']['measured'] is False and row['energy']['joules'] is None
    assert 'backend torch-cpu (forced by configuration)' in err


def test_text_output_and_errors_do_not_crash(files, capsys):
    folder, _, images = files
    status = main([str(folder / 'tiny.gfde'), images[0], str(folder / 'missing.png'),
                   '--backend', 'torch', '--warmup', '0', '--cache-dir', str(folder)])
    out, err = capsys.readouterr()
    assert status == 1
    assert images[0] in out and 'exit ' in out and 'ms: preprocess' in out
    assert 'energy not measured' in out
    assert 'missing.png: ImageError' in err


def test_unusable_bundle_or_policy_exit_with_status_2(files, capsys, tmp_path):
    folder, _, images = files
    assert main([str(tmp_path / 'absent.gfde'), images[0]]) == 2
    assert 'BundleNotFoundError' in capsys.readouterr().err
    assert main([str(folder / 'tiny.gfde'), images[0], '--policy', 'force=9', '--backend',
                 'torch', '--warmup', '0', '--cache-dir', str(folder)]) == 2
    assert 'cannot force exit 9' in capsys.readouterr().err


def test_options_may_stand_between_the_bundle_and_the_images(files, capsys):
    # argparse's default parser took only the bundle as a path here and refused the images.
    folder, _, images = files
    status = main([str(folder / 'tiny.gfde'), '--threads', '1', *images, '--backend', 'torch',
                   '--warmup', '0', '--cache-dir', str(folder), '--json'])
    assert status == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r['image'] for r in rows] == images and rows[0]['policy'] == 'calibrated'


def test_policy_option_takes_the_one_grammar(files, capsys):
    folder, _, images = files
    assert main([str(folder / 'tiny.gfde'), images[0], '--policy', 'threshold=0', '--backend',
                 'torch', '--warmup', '0', '--cache-dir', str(folder), '--json']) == 0
    row = json.loads(capsys.readouterr().out)
    assert row['exit_index'] == 0 and row['policy'] == 'threshold'
    assert main([str(folder / 'tiny.gfde'), images[0], '--policy', 'force:1']) == 2
    assert 'force=K' in capsys.readouterr().err
