"""Parameters and statistics inside the array an in-place call overwrites (out=x,
residual_out=residual, out=dy): read as they were, from a copy, as README promises for any
input an output shares memory with.  The small-call kernels checked such inputs against
the output, which is IN_PLACE there and overlapped nothing, and so read rows of the
parameters the call had already rewritten (errors of 3 to 45)."""
import numpy as np
import pytest

import numba_ln

SHAPES = [(4, 8), (3, 4, 6), (64, 1024)]  # small calls; axis tuples; the backward threaded
# float32 at every shape, float64 at the small calls' (its other shapes compiled ~20 s of
# kernel variants no other test needs: the suite is near its 10-minute limit)
CASES = [(shape, np.float32) for shape in SHAPES] + [(SHAPES[0], np.float64)]


def _data(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    return (1.0 + rng.standard_normal(shape)).astype(dtype)


def _same(got, expected):
    got = got if isinstance(got, tuple) else (got,)
    expected = expected if isinstance(expected, tuple) else (expected,)
    for g, e in zip(got, expected):
        assert (g is None and e is None) or np.array_equal(g, e)


@pytest.mark.parametrize("shape, dtype", CASES)
def test_forward_parameters_inside_the_overwritten_input(shape, dtype):
    x0, r0 = _data(shape, dtype, 0), _data(shape, dtype, 1)
    w0, b0 = x0.reshape(-1, shape[-1])[1].copy(), x0.reshape(-1, shape[-1])[2].copy()
    x = x0.copy()
    rows = x.reshape(-1, shape[-1])  # (a view: rows of x itself)
    assert numba_ln.layer_norm(x, rows[1], rows[2], out=x) is x
    _same(x, numba_ln.layer_norm(x0, w0, b0))
    x = x0.copy()
    rows = x.reshape(-1, shape[-1])
    numba_ln.rms_norm(x, rows[1], out=x)
    _same(x, numba_ln.rms_norm(x0, w0))
    # the residual stream updated in place, its rows the parameters
    rw, rb = r0.reshape(-1, shape[-1])[1].copy(), r0.reshape(-1, shape[-1])[2].copy()
    for fused, params, expected_params in (
            (numba_ln.add_layer_norm, 2, (rw, rb)), (numba_ln.add_rms_norm, 1, (rw,))):
        r = r0.copy()
        rows = r.reshape(-1, shape[-1])
        got = fused(x0, r, *[rows[1], rows[2]][:params], residual_out=r)
        assert got[1] is r
        _same(got, fused(x0, r0, *expected_params))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_input_overlapping_the_overwritten_residual(dtype):
    """x a shifted view of the residual stream that residual_out=residual overwrites."""
    buf = _data((5, 8), dtype, 2)
    x0, r0 = buf[1:].copy(), buf[:-1].copy()
    expected = numba_ln.add_layer_norm(x0, r0)
    r = buf[:-1]
    y, s = numba_ln.add_layer_norm(buf[1:], r, residual_out=r)
    assert s is r
    _same((y, s), expected)


@pytest.mark.parametrize("shape, dtype", CASES)
def test_backward_weight_and_statistics_inside_the_overwritten_dy(shape, dtype):
    x, dy0 = _data(shape, dtype, 3), _data(shape, dtype, 4)
    cols = shape[-1]
    w0 = dy0.reshape(-1, cols)[1].copy()
    for backward in (numba_ln.layer_norm_backward, numba_ln.rms_norm_backward):
        for param_grads in (True, False):
            dy = dy0.copy()
            got = backward(dy, x, dy.reshape(-1, cols)[1], out=dy, param_grads=param_grads)
            assert got[0] is dy
            _same(got, backward(dy0, x, w0, param_grads=param_grads))
    # the forward's statistics as columns of dy
    _, mean, rstd = numba_ln.layer_norm(x, w0, return_stats=True)
    dy = dy0.copy()
    dy[..., :1], dy[..., 1:2] = mean, rstd
    dy_before = dy.copy()
    got = numba_ln.layer_norm_backward(dy, x, w0, mean=dy[..., :1], rstd=dy[..., 1:2],
                                       out=dy)
    _same(got, numba_ln.layer_norm_backward(dy_before, x, w0, mean=mean, rstd=rstd))
