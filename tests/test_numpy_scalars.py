"""NumPy scalars where the small-call gates take Python ones (np.True_ flags, an np.int64
axis, a 0-d float eps, NumPy float/int weights) take the small call through the retry in
_canonical.py, with the general path's bits, types and dtypes; what the retry cannot
take goes to the general path, whose errors are unchanged."""
import numpy as np
import pytest
from _oracle import general_axes

import numba_ln


def _same(got, want):
    if isinstance(want, tuple):
        return (isinstance(got, tuple) and len(got) == len(want)
                and all(_same(g, w) for g, w in zip(got, want)))
    if want is None:
        return got is None
    return (type(got) is type(want) and got.dtype == want.dtype and got.shape == want.shape
            and np.array_equal(got, want, equal_nan=True))


def _forms(x, dy, g, b):
    """name -> (the call with NumPy scalars, the same call on the general path)."""
    ax = general_axes(x.ndim - 1)[0]
    ln, rms, add = numba_ln.layer_norm, numba_ln.rms_norm, numba_ln.add_layer_norm
    moments, ln_bwd = numba_ln.moments, numba_ln.layer_norm_backward
    rms_bwd = numba_ln.rms_norm_backward
    return {
        "return_stats": (lambda: ln(x, g, b, return_stats=np.True_),
                         lambda: ln(x, g, b, axis=ax, return_stats=True)),
        "axis": (lambda: ln(x, g, b, axis=np.int64(-1)), lambda: ln(x, g, b, axis=ax)),
        "axis ndim-1": (lambda: ln(x, g, b, axis=np.intp(x.ndim - 1)),
                        lambda: ln(x, g, b, axis=ax)),
        "axis tuple": (lambda: ln(x, g, b, axis=(np.int32(-1),)),
                       lambda: ln(x, g, b, axis=(ax,))),
        "eps 0-d": (lambda: ln(x, g, b, eps=np.array(1e-3)),
                    lambda: ln(x, g, b, eps=1e-3, axis=ax)),
        "float32 weights": (lambda: ln(x, np.float32(2.0), np.float32(0.5)),
                            lambda: ln(x, 2.0, 0.5, axis=ax)),
        "float64 and int weights": (lambda: ln(x, np.float64(0.1), np.int64(3)),
                                    lambda: ln(x, 0.1, 3, axis=ax)),
        "float16 weight": (lambda: rms(x, np.float16(1.5), return_stats=np.True_),
                           lambda: rms(x, 1.5, axis=ax, return_stats=True)),
        "fused": (lambda: add(x, dy, g, b, return_stats=np.True_, axis=np.int64(-1)),
                  lambda: add(x, dy, g, b, return_stats=True, axis=ax)),
        "keepdims": (lambda: moments(x, keepdims=np.True_), lambda: moments(x, ax, keepdims=True)),
        "moments axis": (lambda: moments(x, np.int64(-1)), lambda: moments(x, ax)),
        "param_grads": (lambda: ln_bwd(dy, x, g, param_grads=np.True_),
                        lambda: ln_bwd(dy, x, g, param_grads=True, axis=ax)),
        "param_grads off": (lambda: ln_bwd(dy, x, g, param_grads=np.False_),
                            lambda: ln_bwd(dy, x, g, param_grads=False, axis=ax)),
        "backward axis": (lambda: ln_bwd(dy, x, g, axis=np.int64(-1)),
                          lambda: ln_bwd(dy, x, g, axis=ax)),
        "rms backward eps": (lambda: rms_bwd(dy, x, g, eps=np.array(1e-6, np.float32)),
                             lambda: rms_bwd(dy, x, g, eps=float(np.float32(1e-6)), axis=ax)),
    }


@pytest.mark.parametrize("shape", [(3, 40), (40,)])
def test_numpy_scalars_take_the_small_call_with_the_general_paths_bits(rng, small_ran, shape):
    x = (rng.standard_normal(shape) * 3 + 50).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    g, b = (1.0 + rng.standard_normal((2, 40))).astype(np.float32)
    for name, (numpy_scalars, general) in _forms(x, dy, g, b).items():
        if len(shape) == 1 and name == "fused":
            continue  # (a fused 1-D call is the general path's: _small_front)
        small_ran.clear()
        got = numpy_scalars()
        assert small_ran and small_ran[0].startswith("small"), name
        small_ran.clear()
        assert _same(got, general()), name
        assert small_ran == [], name  # (the comparison's call was the general path's)


def test_what_the_retry_cannot_take_keeps_the_general_paths_errors(rng, small_ran):
    x = rng.standard_normal((3, 8)).astype(np.float32)
    before = x.copy()
    with pytest.raises(TypeError, match="return_stats"):
        numba_ln.layer_norm(x, return_stats=np.array(True))
    with pytest.raises(TypeError, match="keepdims"):
        numba_ln.moments(x, keepdims=np.int64(1) + 0.5)
    with pytest.raises((TypeError, ValueError), match="axis"):
        numba_ln.layer_norm(x, axis=np.float64(1.0))
    with pytest.raises(ValueError, match="axis"):
        numba_ln.layer_norm(x, axis=np.int64(2))
    with pytest.raises(ValueError, match="eps"):
        numba_ln.layer_norm(x, eps=np.array(-1.0))
    with pytest.raises(ValueError, match="eps"):
        numba_ln.rms_norm_backward(x, x, eps=np.array(np.nan))
    with pytest.raises(TypeError, match="param_grads"):
        numba_ln.layer_norm_backward(x, x, param_grads=np.array([True]))
    assert np.array_equal(x, before) and small_ran == []
    # a NumPy integer weight past float64's exact integers: the general path's value
    big = np.uint64(2**63 + 1)
    assert _same(numba_ln.layer_norm(x, big), numba_ln.layer_norm(x, big, axis=general_axes(1)))


def test_arrays_above_the_gates_bound_go_straight_to_the_general_path(rng, monkeypatch,
                                                                     small_ran):
    # (the forward gates decline them for their size, recast or not: the retry is skipped,
    # and the NumPy scalars still give the general path's results; the backward's gate
    # takes any size, so its retry is made, and takes the call)
    from numba_ln import _canonical
    retried = []
    recast_all = _canonical._recast_all
    monkeypatch.setattr(_canonical, "_recast_all",
                        lambda arrays: retried.append(1) or recast_all(arrays))
    x = rng.standard_normal((160, 1024)).astype(np.float32)  # (above 131072 elements)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    assert _same(numba_ln.layer_norm(x, return_stats=np.True_),
                 numba_ln.layer_norm(x, return_stats=True))
    fused = x[:96]  # (above the fused gate's bound, half the others')
    assert _same(numba_ln.add_layer_norm(fused, dy[:96], return_stats=np.True_),
                 numba_ln.add_layer_norm(fused, dy[:96], return_stats=True))
    assert retried == []
    small_ran.clear()
    assert _same(numba_ln.layer_norm_backward(dy, x, param_grads=np.False_),
                 numba_ln.layer_norm_backward(dy, x, param_grads=False))
    assert retried == [1] and small_ran == ["small_backward in threads"] * 2
    retried.clear()
    small = x[:2]  # (a small call is still retried)
    assert _same(numba_ln.layer_norm(small, return_stats=np.True_),
                 numba_ln.layer_norm(small, return_stats=True))
    assert retried
