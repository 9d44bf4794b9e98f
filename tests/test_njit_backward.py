"""layer_norm_backward / rms_norm_backward called from users' @njit code
(numba_ln/_njit/backward.py).

The compiled path calls the same row kernel with the same argument types as the Python
path, so results are compared bit for bit with the Python call on the same input (and
with the float64 oracle).  Each @njit function costs a compilation: few functions, each
checking several things.
"""
import numpy as np
import pytest
from numba import njit
from numba.core.errors import TypingError

import numba_ln
from numba_ln import layer_norm, layer_norm_backward, rms_norm_backward
from numba_ln import reference as ref


def assert_identical(got, expected):
    """The Python call's results: the same kernels, compiled again inside the @njit
    function, where LLVM may vectorize a sum differently (README, Same bits), so equal to
    a few roundings (almost always to the last bit)."""
    assert isinstance(got, tuple) and len(got) == len(expected)
    for g, e in zip(got, expected):
        if e is None:
            assert g is None
        else:
            assert g.dtype == e.dtype and g.shape == e.shape
            bound = (1e-6 if e.dtype == np.float32 else 1e-14) * max(1.0, np.max(np.abs(e)))
            assert np.max(np.abs(g - e)) <= bound


@njit
def both_backwards(dy, x, w):
    return layer_norm_backward(dy, x, w), rms_norm_backward(dy, x, w)


@njit
def ln_training_step(x, w, b, target, gr):
    """Forward with statistics, the gradient of 0.5 * |y - target|^2, backward in place."""
    y, mean, rstd = layer_norm(x, w, b, return_stats=True)
    dy = y - target
    return layer_norm_backward(dy, x, w, mean=mean, rstd=rstd, grad_residual=gr, out=dy)


@njit
def rms_weighted(dy, x, w):
    return rms_norm_backward(dy, x, w)


@njit
def rms_without_param_grads(dy, x, rstd):
    return rms_norm_backward(dy, x, 2.0, rstd=rstd, eps=1e-5, param_grads=False)


@njit
def rms_into(dy, x, out):
    return rms_norm_backward(dy, x, out=out, param_grads=False)


def data(rng, shape, dtype=np.float32, offset=1e3):
    x = (rng.standard_normal(shape) * 2 + offset).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    w = (rng.standard_normal(shape[-1]) + 1).astype(dtype)
    return dy, x, w


def test_agrees_with_python(rng):
    dy, x, w = data(rng, (3, 13, 96))
    ln, rms = both_backwards(dy, x, w)
    assert_identical(ln, numba_ln.layer_norm_backward(dy, x, w))
    assert_identical(rms, numba_ln.rms_norm_backward(dy, x, w))
    want = ref.layer_norm_backward(dy, x, w)
    for a, b in zip(ln, want):
        assert np.max(np.abs(a - b)) <= 1e-5 * max(1.0, np.max(np.abs(b)))
    # LayerNorm over one element: y does not depend on x, so dx and dweight are exactly 0,
    # as from Python (the same compiled function: the case is a run-time branch)
    dy, x, w = data(rng, (5, 2, 1))
    ln, _ = both_backwards(dy, x, w)
    assert not ln[0].any() and ln[1][0] == 0.0
    assert_identical(ln, numba_ln.layer_norm_backward(dy, x, w))


def test_training_step_with_stats_residual_in_place(rng):
    dy, x, w = data(rng, (17, 64), np.float64)
    b, gr = rng.standard_normal(64), rng.standard_normal((17, 64))
    target = rng.standard_normal((17, 64))
    got = ln_training_step(x, w, b, target, gr)
    y, mean, rstd = numba_ln.layer_norm(x, w, b, return_stats=True)
    dy = y - target
    want = ref.layer_norm_backward(dy, x, w, grad_residual=gr)
    assert_identical(got, numba_ln.layer_norm_backward(dy, x, w, mean=mean, rstd=rstd,
                                                       grad_residual=gr, out=dy))
    for a, b in zip(got, want):
        assert np.max(np.abs(a - b)) <= 1e-10 * max(1.0, np.max(np.abs(b)))
    # one element per row, with the forward's statistics, grad_residual and in place:
    # dx is exactly grad_residual, dweight exactly 0
    one = (slice(None), slice(0, 1))
    got = ln_training_step(x[one].copy(), w[:1], b[:1], target[one].copy(), gr[one].copy())
    assert np.array_equal(got[0], gr[one]) and got[1][0] == 0.0


def test_copied_inputs_scalar_weight_no_param_grads(rng):
    dy, x, _ = data(rng, (9, 80), np.float64)
    xs = np.repeat(x, 2, axis=1)[:, ::2]  # not C-contiguous: copied
    rstd = numba_ln.rms_norm(x, return_stats=True, eps=1e-5)[1].astype(np.float32)
    got = rms_without_param_grads(dy, xs, np.asfortranarray(rstd))
    assert got[1] is None
    want = numba_ln.rms_norm_backward(dy, x, 2.0, rstd=rstd, param_grads=False)
    assert_identical(got[:1], want[:1])


@pytest.mark.parametrize("dy_shape, rstd_shape, message", [
    ((6, 49), (6, 1), "dy must have x's shape"),
    ((6, 50), (6,), None),  # a typing error: another number of dimensions
    ((6, 50), (5, 1), "rstd must have the keepdims shape"),
    ((6, 50), (6, 50), "rstd must have the keepdims shape"),
])
def test_runtime_errors(dy_shape, rstd_shape, message):
    if message is None:
        with pytest.raises(TypingError, match="rstd must be None or a float32/float64 array"):
            rms_without_param_grads(np.ones(dy_shape), np.ones((6, 50)), np.ones(rstd_shape))
        return
    with pytest.raises(ValueError, match=message):
        rms_without_param_grads(np.ones(dy_shape), np.ones((6, 50)),
                                np.ones(rstd_shape, np.float32))


def test_out_written_through_a_copy(rng):
    """An out of 'A' layout is written from a copy: one with a zero stride (a broadcast
    view) is refused, as from Python, before anything is written."""
    dy, x, _ = data(rng, (3, 8), np.float64)
    wide = np.zeros((3, 16))
    zero_stride = np.lib.stride_tricks.as_strided(wide[0, ::2], (3, 8), (0, 16),
                                                  writeable=True)
    for call in (lambda: numba_ln.rms_norm_backward(dy, x, out=zero_stride, param_grads=False),
                 lambda: rms_into(dy, x, zero_stride)):
        with pytest.raises(ValueError, match="out has a zero stride"):
            call()
        assert not wide.any()
    got = rms_into(dy, x, wide[:, ::2])
    assert got[0] is not None and np.shares_memory(got[0], wide)
    assert_identical(got, numba_ln.rms_norm_backward(dy, x, param_grads=False))


def test_weight_broadcast_or_refused(rng):
    dy, x, _ = data(rng, (5, 32), np.float64)
    got = rms_weighted(dy, x, np.full(1, 3.0))
    assert_identical(got, numba_ln.rms_norm_backward(dy, x, np.full(1, 3.0)))
    got = rms_weighted(dy, x, np.array(3.0))  # 0-d (a TypingError)
    assert_identical(got, numba_ln.rms_norm_backward(dy, x, np.array(3.0)))
    with pytest.raises(ValueError, match="weight/bias does not broadcast"):
        rms_weighted(dy, x, np.ones(31))


@pytest.mark.parametrize("call, message", [
    ("layer_norm_backward(x, x, axis=0)", "only the last axis is supported.*got axis=0"),
    ("rms_norm_backward(x, x, param_grads=flag)", "param_grads must be a constant True"),
    # (bools only, as from Python: return_stats and keepdims take 0 and 1 too)
    ("layer_norm_backward(x, x, param_grads=0)", "param_grads must be a constant True or "
                                                 "False .the type"),
    ("layer_norm_backward(x, x, mean=x[..., :1])", "pass mean and rstd together"),
    ("layer_norm_backward(x, x.astype(np.complex64))", "dtype complex64.*supported"),
    ("layer_norm_backward(x[0], x)", "dy must be an array with x's 3 dimension"),
    ("rms_norm_backward(x, x, rstd=x[..., :1].astype(np.int32))", "rstd must be None or a"),
    ("layer_norm_backward(x, x, grad_residual=1.0)", "grad_residual must be an array"),
    ("layer_norm_backward(x, x, out=np.empty((2, 3, 4)))", "out must be a writeable float32"),
    ("rms_norm_backward(x, x, 'a')", "weight must be None, a real number or a real"),
])
def test_typing_errors_say_what_is_supported(call, message):
    namespace = {"np": np, "njit": njit, "layer_norm_backward": layer_norm_backward,
                 "rms_norm_backward": rms_norm_backward}
    exec(f"@njit\ndef f(x, flag):\n    return {call}\n", namespace)
    with pytest.raises(TypingError, match=message):
        namespace["f"](np.ones((2, 3, 4), np.float32), True)
