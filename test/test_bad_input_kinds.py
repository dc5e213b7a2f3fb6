# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
Unit tier: every refused image carries its kind, float pixels follow one rule, counters use kinds.

ROS-free. The kind of an :class:`~gfde_perception.errors.ImageError` is what the node counts a
bad frame under (``dropped.bad_input.<kind>``), so it is set where the error is raised, never
guessed from the message text.
"""

import ast
from pathlib import Path
import pickle
import warnings

from gfde_perception.errors import ImageError, ImageErrorKind as Kind
from gfde_perception.preprocessing import preprocess, PreprocessSpec
from gfde_perception.stats import bad_input_kind, DROP_BAD_INPUT, PipelineStats
import numpy as np
import pytest

PACKAGE = Path(__file__).resolve().parents[1] / 'gfde_perception'
SPEC = PreprocessSpec(input_size=(8, 8))


def _image_error_calls(tree):
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id == 'ImageError'):
            yield node


def test_every_image_error_in_the_package_is_raised_with_its_kind():
    sites, missing = 0, []
    for path in sorted(PACKAGE.rglob('*.py')):
        for call in _image_error_calls(ast.parse(path.read_text(), str(path))):
            sites += 1
            given = len(call.args) + len(call.keywords)
            if given < 2:
                missing.append(f'{path.relative_to(PACKAGE)}:{call.lineno}')
    assert sites >= 30, f'only {sites} raise sites found: is the scan still looking?'
    assert not missing, f'ImageError raised without a kind at {missing}'


def test_the_scan_sees_a_raise_without_a_kind():
    # Negative control of the test above.
    tree = ast.parse("raise ImageError('no kind')\nraise ImageError('x', Kind.TRUNCATED)\n")
    assert [len(c.args) for c in _image_error_calls(tree)] == [1, 2]


def test_kind_is_required_and_survives_pickling():
    with pytest.raises(TypeError):
        ImageError('no kind given')
    error = ImageError('bad', Kind.TRUNCATED)
    again = pickle.loads(pickle.dumps(error))
    assert again.kind is Kind.TRUNCATED and str(again) == 'bad'
    assert ImageError('by value', 'truncated').kind is Kind.TRUNCATED


def test_counter_name_comes_from_the_kind_not_the_message():
    # This message names the step, is truncated and looks corrupt: only the kind decides.
    error = ImageError('truncated data, step 12, corrupt, contains NaN', Kind.WRONG_SIZE)
    assert bad_input_kind(error) == 'wrong_size'
    stats = PipelineStats()
    stats.frame_dropped(DROP_BAD_INPUT, bad_input_kind(ImageError('?', Kind.DECODE_BUDGET)))
    assert stats.snapshot().bad_input == {'decode_budget': 1}


def test_kind_names_are_stable_counter_names():
    names = [kind.value for kind in Kind]
    assert len(set(names)) == len(names)
    assert all(name.isidentifier() and name == name.lower() for name in names)
    # The names the node counted before kinds existed keep their spelling.
    for old in ('wrong_step', 'truncated', 'unknown_encoding', 'zero_size', 'too_large',
                'wrong_size', 'corrupt_compressed', 'non_finite'):
        assert Kind(old).value == old


@pytest.mark.parametrize('dtype', [np.float32, np.float64, np.float16])
@pytest.mark.parametrize('value,kind', [
    (3e38, Kind.OUT_OF_RANGE),   # issue 11 item 6: overflowed into an inference_error
    (255.0, Kind.OUT_OF_RANGE),  # 0-255 floats: were classified silently
    (-0.5, Kind.OUT_OF_RANGE),
    (np.nan, Kind.NON_FINITE),
    (np.inf, Kind.NON_FINITE),
])
def test_float_pixels_outside_zero_one_are_refused_by_kind_without_a_warning(dtype, value,
                                                                             kind):
    if dtype is np.float16 and value == 3e38:
        value = 6e4  # the largest finite half-precision values
    image = np.full((48, 64), 0.5, np.float32)
    image[10, 20] = value  # one bad pixel is enough
    image = image.astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # e.g. numpy's 'overflow encountered in multiply'
        with pytest.raises(ImageError) as caught:
            preprocess(image, SPEC)
    assert caught.value.kind is kind


def test_float_pixels_inside_zero_one_are_taken_as_they_are():
    image = np.linspace(0.0, 1.0, 48 * 64, dtype=np.float32).reshape(48, 64)
    as_uint8 = np.rint(image * 255).astype(np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        out = preprocess(image, SPEC)
    assert np.isfinite(out).all()
    # The same picture in uint8 gives the same input, to rounding.
    assert np.abs(out - preprocess(as_uint8, SPEC)).max() < 0.05
