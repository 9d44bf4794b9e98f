"""Property tests: random shapes, axes, layouts, dtypes, parameters and out= against the
float64 oracle.  They run in CI (a fixed example budget, no deadline: a first call may
compile)."""
import numpy as np
from _oracle import assert_close
from hypothesis import given, settings
from hypothesis import strategies as st

import numba_ln
from numba_ln import reference as ref

DTYPES = [np.float32, np.float64, np.int32, np.bool_]


@st.composite
def cases(draw):
    ndim = draw(st.integers(1, 4))
    shape = tuple(draw(st.lists(st.sampled_from([1, 2, 3, 5, 8, 17]), min_size=ndim, max_size=ndim)))
    axes = draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True))
    dtype = draw(st.sampled_from(DTYPES))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    offset = draw(st.sampled_from([0.0, 10.0, 1e4]))
    base = offset + rng.standard_normal(shape) * 3
    x = base.astype(dtype)
    # layout: a permutation of a contiguous array, then slicing with steps and reversals
    perm = draw(st.permutations(range(ndim)))
    x = np.ascontiguousarray(np.transpose(x, perm)).transpose(np.argsort(perm))
    if draw(st.booleans()):
        index = tuple(slice(None, None, draw(st.sampled_from([1, -1, 2]))) for _ in range(ndim))
        x = x[index]
    axis = axes[0] - ndim if len(axes) == 1 and draw(st.booleans()) else tuple(axes)
    norm_shape = tuple(x.shape[a] for a in sorted(axes))
    weight = rng.standard_normal(norm_shape) if draw(st.booleans()) else None
    bias = rng.standard_normal(norm_shape) if draw(st.booleans()) else None
    out_mode = draw(st.sampled_from(["none", "fresh", "in-place", "fortran"]))
    return x, axis, weight, bias, out_mode


def _result_dtype(x):
    return np.float32 if x.dtype == np.float32 else np.float64


def _conditioning(x, rstd_ref, dtype):
    """Error scale of a float64 result: the inputs carry rounding of eps*|x|, which the
    normalization multiplies by rstd (at offset 1e4 even the float64 oracle is only good to
    ~1e-12 * |x| * rstd).  float32 results are computed in float64: no such allowance."""
    if dtype != np.float64:
        return 1.0
    return max(1.0, float(np.abs(np.asarray(x, np.float64)).max() * np.nanmax(rstd_ref)))


def _out_for(x, mode):
    dtype = _result_dtype(x)
    if mode == "fresh":
        return np.full(x.shape, np.nan, dtype)
    if mode == "fortran":
        return np.asfortranarray(np.full(x.shape, np.nan, dtype))
    if mode == "in-place" and x.dtype == dtype and x.flags.writeable:
        return x
    return None


@settings(max_examples=80, deadline=None)  # each new type combination compiles (CI time)
@given(cases())
def test_layer_norm_matches_oracle(case):
    x, axis, weight, bias, out_mode = case
    y_ref, mean_ref, rstd_ref = ref.layer_norm(x, weight, bias, axis=axis)
    out = _out_for(x, out_mode)
    y, mean, rstd = numba_ln.layer_norm(x, weight, bias, axis=axis, out=out, return_stats=True)
    if out is not None:
        assert y is out
    assert y.dtype == mean.dtype == rstd.dtype == _result_dtype(x if out is None else y)
    scale = 4 * (1 if weight is None else 1 + np.abs(weight).max()) + (0 if bias is None else np.abs(bias).max())
    scale *= _conditioning(x, rstd_ref, y.dtype)
    assert_close(y, y_ref, scale=scale)
    assert_close(mean, mean_ref, scale=1e4)
    assert_close(rstd, rstd_ref, scale=np.abs(rstd_ref).max())


@settings(max_examples=50, deadline=None)
@given(cases())
def test_rms_and_add_variants_match_oracle(case):
    x, axis, weight, _, _ = case
    y_ref, rstd_ref = ref.rms_norm(x, weight, axis=axis)
    scale = 4 * (1 if weight is None else 1 + np.abs(weight).max())
    assert_close(numba_ln.rms_norm(x, weight, axis=axis), y_ref, scale=scale)
    residual = np.ones(x.shape, _result_dtype(x))
    y, s = numba_ln.add_layer_norm(x, residual, weight, axis=axis)
    assert np.array_equal(s, x.astype(s.dtype) + residual)
    y_ref, _, rstd_ref = ref.layer_norm(s, weight, axis=axis)
    assert_close(y, y_ref, scale=scale * _conditioning(s, rstd_ref, y.dtype))


@settings(max_examples=40, deadline=None)
@given(cases())
def test_moments_match_oracle(case):
    x, axis, _, _, _ = case
    mean, var = numba_ln.moments(x, axis=axis)
    mean_ref, var_ref = ref.moments(x, axis=axis)
    assert_close(mean, mean_ref, scale=1e4)
    assert_close(var, var_ref, scale=max(1.0, np.abs(var_ref).max()))
