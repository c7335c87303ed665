"""Flow quantisation (denseflow's uint8 mapping) and LRCN's 3-channel flow image."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vidrec.flow import DEFAULT_BOUND, dequantize, max_quantization_error, quantize, to_lrcn_image

BOUNDS = [0.25, 1.0, 7.3, DEFAULT_BOUND, 40.0, 1000.0]
CODES = np.arange(256, dtype=np.uint8)


def _eps(bound: float) -> float:
    return 1e-5 * bound  # float32 arithmetic inside quantize/dequantize


@pytest.mark.parametrize("bound", BOUNDS)
def test_codes_survive_dequantize_then_quantize(bound):
    values = dequantize(CODES, bound)
    assert values.dtype == np.float32
    assert values[0] == pytest.approx(-bound) and values[-1] == pytest.approx(bound)
    assert np.all(np.diff(values) > 0)
    back = quantize(values, bound)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, CODES)


@pytest.mark.parametrize("bound", BOUNDS)
def test_error_inside_the_bound_is_at_most_half_a_step_and_that_is_tight(bound):
    v = np.linspace(-bound, bound, 200_001)
    err = np.abs(dequantize(quantize(v, bound), bound).astype(np.float64) - v)
    assert max_quantization_error(bound) == pytest.approx(bound / 255)
    assert err.max() <= max_quantization_error(bound) + _eps(bound)
    assert err.max() >= 0.99 * max_quantization_error(bound)  # the documented bound is not loose


@settings(max_examples=300, deadline=None)
@given(
    bound=st.floats(min_value=0.01, max_value=1e4, allow_nan=False),
    frac=st.floats(min_value=-1.0, max_value=1.0, allow_nan=False),
)
def test_error_inside_the_bound_property(bound, frac):
    v = np.float64(frac * bound)
    q = quantize(np.array([v]), bound)
    assert abs(float(dequantize(q, bound)[0]) - v) <= max_quantization_error(bound) + _eps(bound)


@pytest.mark.parametrize("bound", [1.0, DEFAULT_BOUND])
def test_values_beyond_the_bound_saturate(bound):
    low = np.array([-bound - 1e-3, -2 * bound, -1e9, -np.inf])
    high = np.array([bound + 1e-3, 2 * bound, 1e9, np.inf])
    np.testing.assert_array_equal(quantize(low, bound), 0)
    np.testing.assert_array_equal(quantize(high, bound), 255)
    # beyond the bound the error is the clipped excess
    assert dequantize(quantize(np.array([3 * bound]), bound), bound)[0] == pytest.approx(bound)


def test_mapping_is_denseflows_formula():
    v = np.array([-20.0, -10.0, -0.1, 0.0, 0.1, 5.0, 19.9, 20.0])
    expected = np.rint(255.0 * (v + 20.0) / 40.0)  # CAST(v, -20, 20) of yjxiong/dense_flow
    np.testing.assert_array_equal(quantize(v, 20.0), expected.astype(np.uint8))
    assert quantize(np.zeros(1), 20.0)[0] == 128  # 127.5 rounds to even: zero flow is code 128
    assert abs(dequantize(np.array([128], np.uint8))[0]) <= max_quantization_error(20.0) + _eps(20.0)


def test_shape_is_kept():
    flow = np.random.default_rng(0).normal(0, 5, (3, 5, 7, 2)).astype(np.float32)
    q = quantize(flow)
    assert q.shape == flow.shape and q.dtype == np.uint8
    assert dequantize(q).shape == flow.shape


@pytest.mark.parametrize("bound", [0, 0.0, -1.0, -20, float("nan")])
def test_bad_bound_raises_value_error(bound):
    codes = np.zeros(4, np.uint8)
    with pytest.raises(ValueError, match="bound"):
        quantize(np.zeros(4), bound)
    with pytest.raises(ValueError, match="bound"):
        dequantize(codes, bound)
    with pytest.raises(ValueError, match="bound"):
        max_quantization_error(bound)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int64, np.uint16, np.float32, np.float64])
def test_dequantize_rejects_non_uint8(dtype):
    with pytest.raises(TypeError, match="uint8"):
        dequantize(np.zeros(4, dtype))


# -- LRCN flow image --------------------------------------------------------------------------------------
def _lrcn(u: float, v: float) -> tuple[int, int, int]:
    return tuple(int(c) for c in to_lrcn_image(np.array([[[u, v]]], np.float32))[0, 0])


def test_lrcn_image_of_simple_flows():
    assert _lrcn(0, 0) == (128, 128, 128)
    assert _lrcn(1, 0) == (144, 128, 144)
    assert _lrcn(-1, 0) == (112, 128, 144)
    assert _lrcn(0, 2) == (128, 160, 160)
    assert _lrcn(3, 4) == (176, 192, 208)  # |f| = 5
    assert _lrcn(7.9375, 0) == (255, 128, 255)  # 16 * 7.9375 + 128 = 255 exactly
    assert _lrcn(7.9, 0)[0] == 254
    assert _lrcn(-8, 0)[0] == 0


@pytest.mark.parametrize("u", [7.9375, 8.0, 10.0, 100.0, np.inf])
def test_lrcn_image_saturates(u):
    assert _lrcn(u, 0) == (255, 128, 255)
    assert _lrcn(-u - 0.0625, -u - 0.0625) == (0, 0, 255)  # 16 * -8 + 128 = 0


def test_lrcn_image_matches_its_formula_and_keeps_batch_shape():
    flow = np.random.default_rng(1).normal(0, 6, (2, 3, 9, 11, 2)).astype(np.float32)
    img = to_lrcn_image(flow)
    assert img.shape == (2, 3, 9, 11, 3) and img.dtype == np.uint8
    u, v = flow[..., 0], flow[..., 1]
    np.testing.assert_array_equal(img[..., 0], np.clip(np.rint(16 * u + 128), 0, 255))
    np.testing.assert_array_equal(img[..., 1], np.clip(np.rint(16 * v + 128), 0, 255))
    mag = np.sqrt(u.astype(np.float64) ** 2 + v**2)
    assert np.abs(img[..., 2].astype(np.float64) - np.minimum(16 * mag + 128, 255)).max() <= 0.5 + 1e-3
    assert img[..., 2].min() >= 128


def test_lrcn_image_decodes_back_within_a_sixteenth_of_a_pixel():
    u = np.linspace(-7.9, 7.9, 20_001, dtype=np.float32)
    flow = np.stack([u, -u], axis=-1)[None]  # (1, N, 2)
    img = to_lrcn_image(flow)[0].astype(np.float64)
    for ch, expected in ((0, u), (1, -u)):
        err = np.abs((img[:, ch] - 128) / 16 - expected)
        assert err.max() <= 1 / 32 + 1e-6  # rounding to the nearest code: half of 1/16 px


def test_lrcn_image_rejects_a_bad_last_axis():
    with pytest.raises(ValueError, match="2 channels"):
        to_lrcn_image(np.zeros((4, 4, 3), np.float32))
