"""Parameters of other types take the small calls with the general path's bits: a Python
number as weight or bias (``layer_norm(x, 2.0)``: broadcastable to the normalized shape),
as a row of it in the work dtype (numba_ln/_small_values._number_row), and a 16-bit,
integer or bool weight of the backward on float32/float64 data, cast as a float64 one is
(_small_values._same_dtype).  They took the general rules before: 12-31x the array form's
time at (1, 768)."""
import ml_dtypes
import numpy as np
import pytest
from _oracle import general_axes
from _oracle import same_bits as same

import numba_ln


def _general(x):
    return general_axes(x.ndim - 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_numbers_as_parameters_give_the_general_paths_bits(rng, small_ran, dtype):
    x = (rng.standard_normal((3, 40)) * 2.0 + 5.0).astype(dtype)
    forms = {
        "float weight, zero bias": lambda axis: numba_ln.layer_norm(x, 2.5, 0.0, axis=axis),
        "int weight, negative-zero bias": lambda axis: numba_ln.layer_norm(x, 3, -0.0,
                                                                            axis=axis),
        "array weight, float bias": lambda axis: numba_ln.layer_norm(
            x, np.full(40, 0.5, np.float32), 1.0 / 3.0, axis=axis),
        "float weight, statistics": lambda axis: numba_ln.layer_norm(
            x, 0.1, axis=axis, return_stats=True),
        "rms": lambda axis: numba_ln.rms_norm(x, 2.0**-30, axis=axis),
    }
    for name, form in forms.items():
        small = form(-1)
        assert small_ran == ["small_norm"], name
        assert same(small, form(_general(x))), name
        small_ran.clear()


def test_numbers_in_the_backward_give_the_general_paths_bits(rng, small_ran):
    x = rng.standard_normal((6, 32)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    for weight in (2.0, -3, 1e-3):
        for function in (numba_ln.layer_norm_backward, numba_ln.rms_norm_backward):
            small = function(dy, x, weight)
            assert small_ran == ["small_backward"], (function, weight)
            assert same(small, function(dy, x, weight, axis=_general(x)))
            assert same(small, function(dy, x, np.full(32, weight, np.float32)))
            small_ran.clear()


def test_numbers_the_small_call_does_not_take(rng, small_ran):
    """bool, an int float64 cannot hold exactly, NaN: the general path's rules (the same
    values: NaN stays in every row)."""
    x = rng.standard_normal((2, 8)).astype(np.float32)
    assert same(numba_ln.layer_norm(x, True), numba_ln.layer_norm(x, np.ones(8, np.float32)))
    assert small_ran == ["small_norm"]  # (the array form)
    small_ran.clear()
    big = 2**60 + 1
    assert same(numba_ln.layer_norm(x, big), numba_ln.layer_norm(x, np.full(8, np.float32(big))))
    assert small_ran == ["small_norm"]
    assert np.isnan(numba_ln.layer_norm(x, None, float("nan"))).all()


@pytest.mark.parametrize("wdtype", [np.float16, ml_dtypes.bfloat16, np.int8, np.bool_])
def test_backward_weights_of_other_dtypes_give_the_general_paths_bits(rng, small_ran, wdtype):
    x = rng.standard_normal((6, 32)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    w = (rng.standard_normal(32) * 3).astype(wdtype)
    for function in (numba_ln.layer_norm_backward, numba_ln.rms_norm_backward):
        small = function(dy, x, w)
        assert small_ran == ["small_backward"], function
        assert same(small, function(dy, x, w, axis=_general(x)))
        assert same(small, function(dy, x, w.astype(np.float32)))
        small_ran.clear()


def test_values_past_float32s_range_round_to_inf_silently_on_every_path(small_ran):
    """A float64 weight/bias of 1e300 on float32 data, and a variance past float32's
    range: the small calls round them in compiled code, silently; the general path's
    NumPy casts warned "overflow encountered in cast" for the same values, so one call
    warned or not by x's layout (C or Fortran order).  Now neither warns."""
    import warnings

    x = np.array([[3e38, -3e38, -3e38, 3e38], [1.0, 2.0, 3.0, 4.0]], np.float32)
    w = np.array([1e300, 1.0, -1e300, 2.0])
    forms = {
        "layer_norm": lambda axis: numba_ln.layer_norm(x, w, -w, axis=axis),
        "rms_norm stats": lambda axis: numba_ln.rms_norm(x, w, axis=axis, return_stats=True),
        "moments": lambda axis: numba_ln.moments(x, axis=axis),
    }
    for name, form in forms.items():
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            small_ran.clear()
            fast = form(-1)
            assert small_ran, name
            same(form(_general(x)), fast)
    assert np.isposinf(numba_ln.moments(x)[1][0])


def test_numbers_and_dask_parameters_past_float32s_range_are_silent_too():
    """A Python float weight of 1e300 (the small calls' row of it) and a float64 dask
    weight (cast lazily) warned where the arrays above did not; a user's own overflow
    while the weight is read still warns (only the cast is silent)."""
    import warnings

    x = np.array([[1.0, 2.0, 3.0, 4.0]], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        small = numba_ln.layer_norm(x, 1e300, -1e300)
        same(numba_ln.layer_norm(x, 1e300, -1e300, axis=_general(x)), small)
        assert not np.isfinite(small).any()
    da = pytest.importorskip("dask.array")
    w = np.full(4, 1e300)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lazy = numba_ln.layer_norm(da.from_array(x), da.from_array(w, chunks=2))
        same(lazy.compute(scheduler="sync"), numba_ln.layer_norm(x, w))
    computed = da.from_array(np.full(4, 1e200), chunks=2) * 1e200  # (overflows when read)
    with pytest.warns(RuntimeWarning, match="overflow"):
        numba_ln.layer_norm(x, computed)


def test_the_backward_rounds_float64_weights_silently_on_every_path(small_ran):
    """The backward's cast of a float64 weight to float32 work warned "overflow encountered
    in cast" for 1e300 (an error under -W error) and raised under np.seterr(all="raise")
    for 1e-50, on both paths, where the forward rounds the same weights silently."""
    import warnings

    x = np.array([[1.0, 2.0, 3.0, 4.5], [4.0, -1.0, 0.5, 2.0]], np.float32)
    dy = x[::-1].copy()
    for w in (np.array([1.0, 1e-50, 2.0, 0.5]), np.array([1e300, 1.0, -1e300, 2.0])):
        with np.errstate(all="ignore"):
            expected = {f: f(dy, x, w.astype(np.float32))
                        for f in (numba_ln.layer_norm_backward, numba_ln.rms_norm_backward)}
        for function, want in expected.items():
            with warnings.catch_warnings(), np.errstate(all="raise" if w[1] < 1 else "warn"):
                warnings.simplefilter("error")
                small_ran.clear()
                same(function(dy, x, w), want)
                assert small_ran == ["small_backward"]
                same(function(dy, x, w, axis=_general(x)), want)
                same(function(dy.T, x.T, w, axis=0), tuple(
                    a.T if a is not None and a.ndim == 2 else a for a in want))


@pytest.mark.parametrize("setting", ["raise", "warn"])
def test_statistics_past_float32s_range_are_silent_whatever_numpys_settings(setting):
    """Under np.seterr(all="raise") (or "warn" with warnings as errors), valid data whose
    statistics underflow float32 (a subnormal rstd of data spread past 8e37, a variance of
    data spread under 1e-19) raised from the general path's and dask's casts, not the
    small calls'; and dask's partials of float64 rows whose squares pass float64's range
    warned "overflow" where the NumPy path gives rstd 0 silently."""
    import warnings

    row = np.array([[3.4e38, -3.4e38, -3.4e38]], np.float32)
    tiny = (np.random.default_rng(5).standard_normal((4, 64)) * 1e-25).astype(np.float32)
    with warnings.catch_warnings(), np.errstate(all=setting):
        warnings.simplefilter("error")
        small = numba_ln.layer_norm(row, return_stats=True)
        general = numba_ln.layer_norm(np.asfortranarray(np.repeat(row, 3, 0)),
                                      return_stats=True)
        assert 0 < small[2][0] < np.finfo(np.float32).tiny  # (subnormal)
        same(general[2], np.repeat(small[2], 3))
        same(numba_ln.moments(tiny.T.copy(), axis=0), numba_ln.moments(tiny))
    da = pytest.importorskip("dask.array")
    spread = np.random.default_rng(6).standard_normal((8, 64)) * 1e-160
    huge = np.array([[1.2e154, 1.2e154, -1.2e154, 1.0]] * 2)
    with warnings.catch_warnings(), np.errstate(all=setting):
        warnings.simplefilter("error")
        lazy = numba_ln.moments(da.from_array(spread, chunks=(4, 16)))  # (split rows)
        mean, var = (a.compute(scheduler="sync") for a in lazy)
        want = numba_ln.rms_norm(huge, return_stats=True)
        got = numba_ln.rms_norm(da.from_array(huge, chunks=(2, 1)), return_stats=True)
        for g, w in zip(got, want):
            same(g.compute(scheduler="sync"), w)
    np.testing.assert_allclose(var, spread.var(axis=-1), rtol=1e-6, atol=1e-320)
