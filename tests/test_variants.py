"""rms_norm, add_layer_norm, add_rms_norm against the float64 oracle."""
import numpy as np
import pytest
from _oracle import assert_close

import numba_ln
from numba_ln import reference as ref


@pytest.mark.parametrize("offset", [0.0, 1e3, 1e5])
@pytest.mark.parametrize("shape", [(3, 768), (64, 1024), (1, 70000)])
def test_rms_norm_accuracy(rng, offset, shape):
    x = (offset + rng.standard_normal(shape)).astype(np.float32)
    w = rng.standard_normal(shape[-1]).astype(np.float32)
    y, rstd = numba_ln.rms_norm(x, w, return_stats=True)
    y_ref, rstd_ref = ref.rms_norm(x, w)
    assert rstd.shape == shape[:-1] + (1,) and rstd.dtype == np.float32
    assert_close(y, y_ref, scale=4)
    assert np.abs(rstd / rstd_ref - 1).max() < 2e-6


@pytest.mark.parametrize("axis", [-1, 0, 1, (1, 2), (0, 2)])
def test_rms_norm_axes_and_layouts(rng, axis):
    x = rng.standard_normal((4, 6, 5))
    for arr in (x, np.asfortranarray(x), x[::-1, :, ::-1]):
        y, rstd = numba_ln.rms_norm(arr, eps=1e-3, axis=axis, return_stats=True)
        y_ref, rstd_ref = ref.rms_norm(arr, eps=1e-3, axis=axis)
        assert_close(y, y_ref)
        assert_close(rstd, rstd_ref)


def test_rms_norm_zero_row_and_nan():
    x = np.zeros((3, 8), np.float32)
    x[1] = 2.0
    x[2, 3] = np.nan
    y = numba_ln.rms_norm(x, np.full(8, 3.0, np.float32), eps=0.0 + 1e-6)
    assert np.array_equal(y[0], np.zeros(8))
    assert_close(y[1], np.full(8, 3.0 * 2 / np.sqrt(4 + 1e-6)))
    assert np.isnan(y[2]).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(5, 64), (300, 128), (2, 80000), (2, 3, 40)])
def test_add_layer_norm(rng, dtype, shape):
    x = (100 + rng.standard_normal(shape)).astype(dtype)
    r = rng.standard_normal(shape).astype(dtype)
    w, b = rng.standard_normal(shape[-1]), rng.standard_normal(shape[-1])
    y, s, mean, rstd = numba_ln.add_layer_norm(x, r, w, b, return_stats=True)
    s_ref = x + r  # in the input dtype: y normalizes the rounded sum, as onnxruntime does
    assert s.dtype == dtype and np.array_equal(s, s_ref)
    y_ref, mean_ref, rstd_ref = ref.layer_norm(s_ref, w, b)
    assert_close(y, y_ref, scale=4)
    assert_close(mean, mean_ref, scale=100)
    assert np.abs(rstd / rstd_ref - 1).max() < 2e-6


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_add_rms_norm(rng, dtype):
    x = rng.standard_normal((40, 96)).astype(dtype)
    r = rng.standard_normal((40, 96)).astype(dtype)
    w = rng.standard_normal(96).astype(dtype)
    y, s, rstd = numba_ln.add_rms_norm(x, r, w, return_stats=True)
    assert np.array_equal(s, x + r)
    y_ref, rstd_ref = ref.rms_norm(x + r, w)
    assert_close(y, y_ref, scale=4)
    assert_close(rstd, rstd_ref, scale=4)


def test_residual_broadcasts_and_updates_in_place(rng):
    x = rng.standard_normal((2, 5, 16)).astype(np.float32)
    bias_like = rng.standard_normal(16).astype(np.float32)
    y, s = numba_ln.add_layer_norm(x, bias_like)
    assert np.array_equal(s, x + bias_like)
    assert_close(y, ref.layer_norm(x + bias_like)[0])
    # the pre-LN residual stream: stream += sublayer, normalized for the next sublayer
    stream = rng.standard_normal((2, 5, 16)).astype(np.float32)
    expected_s = stream + x
    y, s = numba_ln.add_rms_norm(x, stream, residual_out=stream)
    assert s is stream and np.array_equal(stream, expected_s)
    assert_close(y, ref.rms_norm(expected_s)[0])
    # out=x overwrites the input
    x2 = x.copy()
    y, s = numba_ln.add_layer_norm(x2, bias_like, out=x2)
    assert y is x2
    assert_close(x2, ref.layer_norm(x + bias_like)[0])
    assert np.array_equal(s, x + bias_like)


def test_add_variants_over_non_trailing_axes(rng):
    x = rng.standard_normal((2, 8, 3, 3))
    r = rng.standard_normal((2, 8, 3, 3))
    y, s = numba_ln.add_layer_norm(x, r, axis=1)
    assert np.array_equal(s, x + r)
    assert_close(y, ref.layer_norm(x + r, axis=1)[0])
    y, s = numba_ln.add_rms_norm(np.asfortranarray(x), r, axis=(1, 2))
    assert_close(y, ref.rms_norm(x + r, axis=(1, 2))[0])


def test_mixed_dtypes_promote(rng):
    x = rng.standard_normal((4, 8)).astype(np.float32)
    r = rng.standard_normal((4, 8))
    y, s = numba_ln.add_layer_norm(x, r)
    assert y.dtype == s.dtype == np.float64
    assert_close(y, ref.layer_norm(x.astype(np.float64) + r)[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
def test_a_python_number_residual_keeps_x_dtype(dtype):
    """A Python number is NumPy's weak scalar: x + 0.5 keeps x's dtype, and so do s and y
    (it became a float64 array: float64 results for float32 x).  A NumPy float64 scalar
    promotes, as in NumPy."""
    x = (np.arange(32).reshape(4, 8) * 1.3).astype(dtype)
    for number in (0.5, 3, True):
        for fused in (numba_ln.add_layer_norm, numba_ln.add_rms_norm):
            y, s = fused(x, number)
            assert y.dtype == s.dtype == dtype and np.array_equal(s, x + number)
            assert np.array_equal(y, fused(x, np.full(x.shape, number, dtype))[0])
    y, s = numba_ln.add_layer_norm(x, np.float64(0.5))
    assert s.dtype == np.result_type(x, np.float64(0.5))


@pytest.mark.parametrize(
    "kwargs,error,name",
    [
        (dict(residual=np.ones((3, 8))), ValueError, "residual"),
        (dict(residual=np.ones(7)), ValueError, "residual"),
        (dict(residual=np.ones((4, 8), complex)), TypeError, "residual"),
        (dict(residual_out=np.empty((4, 7), np.float32)), ValueError, "residual_out"),
        (dict(residual_out=np.empty((4, 8), np.float64)), TypeError, "residual_out"),
        (dict(residual_out="nope"), TypeError, "residual_out"),
        (dict(out=np.empty((4, 8), np.float32), residual_out="same"), ValueError, "overlap"),
        (dict(axis=3), ValueError, "axis"),
        (dict(eps=-1.0), ValueError, "eps"),
    ],
)
@pytest.mark.parametrize("func", [numba_ln.add_layer_norm, numba_ln.add_rms_norm])
def test_add_variants_bad_input(func, kwargs, error, name):
    x = np.arange(32, dtype=np.float32).reshape(4, 8)
    kwargs = dict(kwargs)
    residual = kwargs.pop("residual", np.ones((4, 8), np.float32))
    if isinstance(kwargs.get("residual_out"), str) and kwargs["residual_out"] == "same":
        kwargs["residual_out"] = kwargs["out"]
    outs = [v for v in kwargs.values() if isinstance(v, np.ndarray)]
    before = [o.copy() for o in outs] + [x.copy(), residual.copy()]
    with pytest.raises(error, match=name):
        func(x, residual, **kwargs)
    for a, b in zip(outs + [x, residual], before):
        assert np.array_equal(a, b, equal_nan=True)


@pytest.mark.parametrize("func", [numba_ln.add_layer_norm, numba_ln.add_rms_norm])
def test_residual_is_required(func):
    with pytest.raises(TypeError, match="residual"):
        func(np.ones((2, 4)), None)


@pytest.mark.parametrize("func,ref_norm", [(numba_ln.add_layer_norm, lambda s: ref.layer_norm(s)[0]),
                                           (numba_ln.add_rms_norm, lambda s: ref.rms_norm(s)[0])])
def test_small_fused_calls_in_place_and_overlapping(rng, func, ref_norm):
    """Token-sized calls take the small-input path; in-place and overlapping outputs must
    behave exactly as on the general path."""
    x = rng.standard_normal((3, 40)).astype(np.float32)
    r = rng.standard_normal((3, 40)).astype(np.float32)
    s_ref = x + r
    for make in (lambda a, b: dict(out=a),                      # out=x
                 lambda a, b: dict(residual_out=b),             # residual_out=residual
                 lambda a, b: dict(out=b, residual_out=a)):     # both, swapped
        a, b = x.copy(), r.copy()
        y, s = func(a, b, **make(a, b))
        assert np.array_equal(s, s_ref)
        assert_close(y, ref_norm(s_ref))
    big = np.zeros((4, 40), np.float32)
    big[:3] = x
    y, s = func(big[:3], r, out=big[1:])  # out overlaps x shifted by a row
    assert np.array_equal(s, s_ref)
    assert_close(big[1:], ref_norm(s_ref))
