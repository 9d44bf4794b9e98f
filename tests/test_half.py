"""16-bit storage (bfloat16, float16) on the CPU: results within 1 ulp of the float64
oracle rounded once to the dtype, float32 statistics, fused sums as float32 sums rounded
once, NumPy's special values, and the paths that refuse 16-bit arrays.

Compile time is the cost here (each dtype x kernel variant is a compile, 1-6 s): the
tests share a few specializations -- rows and channels kernels with weight and bias in x's
dtype and return_stats=True; rows with other parameter dtypes; RMSNorm with a 16-bit
weight; the fused rows kernel; moments -- and stay below the parallel threshold (one
serial kernel per variant).  Code that only the storage format changes (cpu/_storage.py)
is tested for both dtypes; variants whose kernel code is the same for both (fused
LayerNorm / RMSNorm) for one dtype each.
"""
import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import numba_ln
from numba_ln import reference as ref
from numba_ln.reference import round_to, ulp_distance

BF16, F16, F32 = np.dtype(ml_dtypes.bfloat16), np.dtype(np.float16), np.dtype(np.float32)
HALF = [BF16, F16]
IDS = ["bfloat16", "float16"]

# name -> (shape, axis, layout): rows, several trailing axes, channels (a normalized axis
# that is not innermost), Fortran order, a strided view (copied into rows), a reversed
# column axis.
LAYOUTS = {
    "rows": ((7, 33), -1, "C"),
    "axes": ((3, 5, 6), (1, 2), "C"),
    "channels": ((4, 6, 9), 1, "C"),
    "fortran": ((12, 40), -1, "F"),
    "strided": ((6, 64), -1, "step"),
    "reversed": ((5, 20), -1, "flip"),
}


def _data(rng, shape, dtype, kind):
    """x of `dtype`: far from zero (100 + N(0, 1)), N(0, 1), or tiny (float16
    subnormals)."""
    z = rng.standard_normal(shape)
    x = {"far": 100.0 + z, "normal": z, "tiny": z * 2e-6}[kind]
    return x.astype(dtype)


def _layout(x, layout):
    if layout == "F":
        return np.asfortranarray(x)
    if layout == "step":
        return np.repeat(x, 2, axis=-1)[..., ::2]
    if layout == "flip":
        return x[..., ::-1]
    return x


# Parameters "other" than x's dtype (bfloat16 data only: the loads of a weight do not
# depend on x's dtype): the other 16-bit dtype and float32.
OTHER = {BF16: (F16, F32)}


def _params(rng, norm_shape, dtype, kind="half", tiny=False):
    scale = 1e-5 if tiny else 1.0  # tiny: y lands among float16's subnormals
    w = (1.0 + 0.5 * rng.standard_normal(norm_shape)) * scale
    b = 0.5 * rng.standard_normal(norm_shape) * scale
    wdt, bdt = (dtype, dtype) if kind == "half" else OTHER[dtype]
    return w.astype(wdt), b.astype(bdt)


def assert_ulp(y, expected, dtype, bias=None, bound=1):
    """y (of dtype) within `bound` ulp of the float64 `expected` rounded once to dtype --
    or, where a bias cancels most of xhat * w (y much smaller than xhat * w), within
    float32's rounding of xhat * w (docs/half.md, Accuracy)."""
    assert y.dtype == dtype
    d = ulp_distance(y, round_to(expected, dtype))
    if bias is not None:
        with np.errstate(invalid="ignore"):
            before_bias = np.abs(expected - np.asarray(bias, dtype=np.float64))
            err = np.abs(y.astype(np.float64) - expected)
            d = np.where(err <= 4e-7 * before_bias, 0, d)
    worst = int(d.max()) if d.size else 0
    assert worst <= bound, f"{worst} ulp at {np.unravel_index(np.argmax(d), d.shape)}"
    return worst


def _broadcast_bias(x, b, axis):
    return ref._affine(np.zeros(x.shape), x, None, b, ref._axes(axis, x.ndim))


def _norm_shape(x, axis):
    axes = (axis,) if np.isscalar(axis) else axis
    return tuple(x.shape[a] for a in axes)


_CASES = [(BF16, "rows", "other"), (BF16, "strided", "other")] + [
    (dtype, layout, "half") for dtype in HALF for layout in LAYOUTS]


@pytest.mark.parametrize("dtype, layout, params", _CASES)
@settings(max_examples=3, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), kind=st.sampled_from(["far", "normal", "tiny"]))
def test_layer_norm_within_one_ulp(dtype, layout, params, seed, kind):
    shape, axis, order = LAYOUTS[layout]
    rng = np.random.default_rng(seed)
    x = _layout(_data(rng, shape, dtype, kind), order)
    w, b = _params(rng, _norm_shape(x, axis), dtype, params, tiny=kind == "tiny")
    y, mean, rstd = numba_ln.layer_norm(x, w, b, axis=axis, return_stats=True)
    y64, mean64, rstd64 = ref.layer_norm(x, w, b, axis=axis)
    assert_ulp(y, y64, dtype, bias=_broadcast_bias(x, b, axis))
    assert mean.dtype == rstd.dtype == F32
    # float32 rounding of the mean, and the summing error relative to the data's spread
    np.testing.assert_allclose(mean, mean64, rtol=2e-7, atol=1e-6 * np.std(x.astype(float)))
    np.testing.assert_allclose(rstd, rstd64, rtol=2e-6)


@pytest.mark.parametrize("dtype", HALF, ids=IDS)
@pytest.mark.parametrize("layout", ["rows", "channels"])  # the small-call and general paths
def test_16_bit_parameters_are_their_float32_values(dtype, layout, rng):
    """16-bit weight and bias are widened to float32 before the rows are normalized
    (_spec.check_param, cpu/small_params.work_params): exactly, so the results are bit for bit
    those of the float32 parameters."""
    shape, axis, _ = LAYOUTS[layout]
    x = _data(rng, shape, dtype, "normal")
    w, b = _params(rng, _norm_shape(x, axis), dtype)
    got = numba_ln.layer_norm(x, w, b, axis=axis, return_stats=True)
    wide = numba_ln.layer_norm(x, w.astype(F32), b.astype(F32), axis=axis, return_stats=True)
    for a, e in zip(got, wide):
        np.testing.assert_array_equal(a.view(np.uint8), e.view(np.uint8))


@pytest.mark.parametrize("dtype", HALF, ids=IDS)
def test_float64_parameters_are_their_float32_values(dtype, rng):
    """float64 weight and bias of 16-bit data (a checkpoint's) are rounded to float32 once
    per call, as float32 data's are: the bits of the float32 parameters, and a row alone
    gives its bits in a batch (read as float64, their kernel variant summed a batch's rows
    in other vector lanes than a row alone: rstd differed in the last bit in a fifth of
    the rows)."""
    for rows, cols in ((40, 64), (600, 512)):  # the small-call kernel; the threaded path
        x = _data(rng, (rows, cols), dtype, "normal")
        w, b = rng.standard_normal((2, cols)) + 1
        got = numba_ln.layer_norm(x, w, b, return_stats=True)
        as32 = numba_ln.layer_norm(x, w.astype(F32), b.astype(F32), return_stats=True)
        for i in range(rows):
            alone = numba_ln.layer_norm(x[i:i + 1], w, b, return_stats=True)
            for a, e, one in zip(got, as32, alone):
                np.testing.assert_array_equal(a[i:i + 1].view(np.uint8), one.view(np.uint8))
        for a, e in zip(got, as32):
            np.testing.assert_array_equal(a.view(np.uint8), e.view(np.uint8))


@pytest.mark.parametrize("dtype, layout", [(BF16, "rows")])  # F16: the fused test
@settings(max_examples=3, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), kind=st.sampled_from(["far", "normal", "tiny"]))
def test_rms_norm_within_one_ulp(dtype, layout, seed, kind):
    shape, axis, order = LAYOUTS[layout]
    rng = np.random.default_rng(seed)
    x = _layout(_data(rng, shape, dtype, kind), order)
    w = _params(rng, _norm_shape(x, axis), dtype, "half")[0]
    y, rstd = numba_ln.rms_norm(x, w, axis=axis, return_stats=True)
    y64, rstd64 = ref.rms_norm(x, w, axis=axis)
    assert_ulp(y, y64, dtype)
    assert rstd.dtype == F32
    np.testing.assert_allclose(rstd, rstd64, rtol=2e-6)


# bfloat16 only: the fused kernels' code is the same for both dtypes but for the loads and
# stores that every other test checks for both (a float16 compile would cost ~9 s); the
# fused float16 sum is checked in test_fused_channels.
@pytest.mark.parametrize("dtype, centered", [(BF16, True), (BF16, False)])
@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), kind=st.sampled_from(["far", "normal"]))
def test_fused_sum_is_one_rounding_and_y_normalizes_it(dtype, centered, seed, kind):
    rng = np.random.default_rng(seed)
    x = _data(rng, (9, 48), dtype, kind)
    r = _data(rng, (9, 48), dtype, "normal")
    w, b = _params(rng, (48,), dtype, "half")
    if centered:
        y, s, mean, rstd = numba_ln.add_layer_norm(x, r, w, b, return_stats=True)
        y64 = ref.layer_norm(s, w, b)[0]
    else:
        y, s, rstd = numba_ln.add_rms_norm(x, r, w, return_stats=True)
        y64 = ref.rms_norm(s, w)[0]
    want = (x.astype(F32) + r.astype(F32)).astype(dtype)
    assert s.dtype == dtype and s.tobytes() == want.tobytes()
    assert_ulp(y, y64, dtype, bias=b if centered else None)
    assert rstd.dtype == F32


@pytest.mark.parametrize("dtype", HALF, ids=IDS)
def test_fused_channels(dtype, rng):
    x, r = _data(rng, (3, 8, 5), dtype, "far"), _data(rng, (3, 8, 5), dtype, "normal")
    w, b = _params(rng, (8,), dtype, "half")
    y, s, _, _ = numba_ln.add_layer_norm(x, r, w, b, axis=1, return_stats=True)
    assert s.tobytes() == (x.astype(F32) + r.astype(F32)).astype(dtype).tobytes()
    assert_ulp(y, ref.layer_norm(s, w, b, axis=1)[0], dtype, bias=b[:, None])


def test_mixed_dtypes_follow_numpy(rng):
    from numba_ln import _engine, _spec, _variants
    x, r = _data(rng, (4, 16), BF16, "normal"), rng.standard_normal((4, 16)).astype(F32)
    for residual in (r, r.astype(np.int8), r.astype(F16)):
        args = (_variants.ADD_LAYER_NORM, _engine.NUMPY, x, residual, None, None, -1, 1e-5,
                None, None, False)
        try:  # bfloat16 with float16: no common dtype before ml_dtypes 0.7, float32 since
            want = np.result_type(x, residual)
        except TypeError:
            with pytest.raises(TypeError, match="residual"):
                _spec.build(*args)
            with pytest.raises(TypeError, match="residual"):
                numba_ln.add_layer_norm(x, residual)
            continue
        # (the float32 kernels are tested elsewhere: no compile here)
        assert _spec.build(*args).dtype == want


@pytest.mark.parametrize("dtype", HALF, ids=IDS)
def test_moments_are_float32(dtype, rng):
    x = _data(rng, (5, 40), dtype, "far")
    mean, var = numba_ln.moments(x)
    assert mean.dtype == var.dtype == F32
    mean64, var64 = ref.moments(x)
    np.testing.assert_allclose(mean, mean64, rtol=2e-7)
    np.testing.assert_allclose(var, var64, rtol=2e-6)


@pytest.mark.parametrize("dtype", HALF, ids=IDS)
def test_special_values_stay_in_their_row(dtype, rng):
    x = _data(rng, (6, 24), dtype, "normal")
    x[1, 3], x[2, 0], x[3, 5] = np.nan, np.inf, -np.inf
    x[4] = 3.0  # constant row
    w, b = _params(rng, (24,), dtype, "half")
    y, mean, rstd = numba_ln.layer_norm(x, w, b, return_stats=True)
    assert np.isnan(y[1:4].astype(F32)).all()
    assert y[4].tobytes() == b.tobytes()  # exactly 0, plus bias
    rows = [0, 5]
    assert_ulp(y[rows], ref.layer_norm(x[rows], w, b)[0], dtype, bias=b)
    assert np.isfinite(mean[rows]).all() and mean[4] == 3.0
    assert rstd[4] == np.float32(1 / np.sqrt(1e-5))


def test_float16_overflow_gives_inf(rng):
    x = _data(rng, (4, 24), F16, "normal")
    w = np.full(24, 60000.0, F16)
    b = np.zeros(24, F16)
    y = numba_ln.layer_norm(x, w, b, return_stats=True)[0]
    y64 = ref.layer_norm(x, w, b)[0]
    assert np.isinf(y.astype(F32)).any()
    assert_ulp(y, y64, F16)  # inf exactly where the rounded oracle overflows


@pytest.mark.parametrize("dtype", HALF, ids=IDS)
def test_out_of_the_same_dtype(dtype, rng):
    x = _data(rng, (7, 33), dtype, "far")
    w, b = _params(rng, (33,), dtype, "half")
    out = np.empty_like(x)
    got = numba_ln.layer_norm(x, w, b, out=out, return_stats=True)[0]
    assert got is out
    assert out.tobytes() == numba_ln.layer_norm(x, w, b, return_stats=True)[0].tobytes()
    for other in (F32, HALF[dtype == BF16]):
        with pytest.raises(TypeError, match="out has dtype"):
            numba_ln.layer_norm(x, w, b, out=np.empty(x.shape, other))


@pytest.mark.parametrize("dtype", HALF, ids=IDS)
def test_modules_with_dtype(dtype, rng):
    ln = numba_ln.LayerNorm(33, dtype=dtype)
    assert ln.weight.dtype == ln.bias.dtype == dtype and "dtype=" in repr(ln)
    ln.weight = rng.standard_normal(33).astype(F32)  # a float32 checkpoint
    assert ln.weight.dtype == dtype
    x = _data(rng, (7, 33), dtype, "far")
    y, mean, rstd = ln(x, return_stats=True)
    assert_ulp(y, ref.layer_norm(x, ln.weight, ln.bias)[0], dtype, bias=ln.bias)
    rms = numba_ln.RMSNorm((6,), dtype=BF16)  # (one dtype: its kernel is compiled once)
    x = _data(rng, (7, 6), BF16, "normal")
    assert_ulp(rms(x, return_stats=True)[0], ref.rms_norm(x, rms.weight)[0], BF16)
    with pytest.raises(TypeError, match="bfloat16"):
        numba_ln.LayerNorm(4, dtype=np.int8)


def test_njit_refuses_16_bit_clearly():
    from numba import njit
    from numba.core.errors import TypingError

    @njit
    def f(x):
        return numba_ln.layer_norm(x)

    with pytest.raises(TypingError, match="16-bit arrays .* from Python"):
        f(np.ones((2, 4), F16))


@pytest.mark.parametrize("dtype", HALF, ids=IDS)
def test_bad_input(dtype):
    x = np.ones((3, 4), dtype)
    # (argument forms whose kernels other tests compile: the small-call kernel compiles
    # for a call's types before it declines bad values)
    out = np.full((3, 4), 7.0, dtype)
    with pytest.raises(ValueError, match="weight"):
        numba_ln.layer_norm(x, np.ones(5, dtype), np.ones(5, dtype), out=out)
    assert (out == 7.0).all() and (x == 1.0).all()  # (nothing written)
    with pytest.raises(ValueError, match="eps"):
        numba_ln.layer_norm(x, eps=-1.0)
    with pytest.raises(ValueError, match="axis"):
        numba_ln.rms_norm(x, axis=2)
    with pytest.raises(TypeError, match="out"):
        numba_ln.add_layer_norm(x, x, out=np.empty((3, 4), F32))
    with pytest.raises(ValueError, match="residual"):
        numba_ln.add_rms_norm(x, np.ones((2, 4), dtype), return_stats=True)
    with pytest.raises(ValueError, match="weight"):  # (the backward takes 16-bit data too)
        numba_ln.layer_norm_backward(x, x, np.ones(5, dtype))


def test_gpu_table_refuses_bfloat16():
    from numba_ln._dtypes import result_dtype
    assert result_dtype(F16, backend="cuda") == F16
    with pytest.raises(TypeError, match="on the GPU"):
        result_dtype(BF16, backend="cuda")
    with pytest.raises(TypeError, match="bfloat16"):
        result_dtype(np.dtype("V2"), backend="cuda")


@pytest.mark.parametrize("chunks", [(3, 33), (3, 11)], ids=["whole", "split"])
def test_dask_arrays(chunks, rng):
    da = pytest.importorskip("dask.array")
    import dask
    x = _data(rng, (7, 33), BF16, "far")
    w, b = _params(rng, (33,), BF16)
    y, mean, rstd = numba_ln.layer_norm(da.from_array(x, chunks=chunks), w, b,
                                        return_stats=True)
    assert y.dtype == BF16 and mean.dtype == rstd.dtype == F32
    y, mean, rstd = dask.compute(y, mean, rstd, scheduler="synchronous")
    assert mean.dtype == rstd.dtype == F32
    assert_ulp(y, ref.layer_norm(x, w, b)[0], BF16, bias=b)


def test_import_does_not_import_ml_dtypes():
    """ml_dtypes costs ~0.5 s to import: numba_ln takes bfloat16 in only once its owner
    has imported it."""
    import subprocess
    import sys
    code = "import sys, numba_ln; assert 'ml_dtypes' not in sys.modules, 'imported'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
