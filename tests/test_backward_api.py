"""numba_ln.layer_norm_backward / rms_norm_backward from Python: against the float64 NumPy
formula (numba_ln.reference) and torch autograd when installed, on every axis choice and
layout, with given statistics, grad_residual, out= (in place too), param_grads=False,
1 and 2 threads, and bad arguments.

Bar (issue 12): float32 dx, dweight, dbias within 1e-5 * max(1, max|ref|) of the float64
reference (also at offset 1e4 with recomputed statistics), float64 within 1e-10.

Shapes are small and mostly share kernel specializations (float32 or float64, with a
weight, recomputed statistics) with tests/test_backward_kernels.py: each other combination
of argument types compiles a kernel variant of its own.
"""
import numba
import numpy as np
import pytest

import numba_ln
from numba_ln import reference as ref

TOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-10}


def error(actual, expected):
    """max |actual - expected| / max(1, max |expected|)."""
    expected = np.asarray(expected, np.float64)
    return float(np.max(np.abs(np.asarray(actual, np.float64) - expected), initial=0.0)
                 / max(1.0, np.max(np.abs(expected), initial=0.0)))


def data(rng, shape, dtype=np.float32, offset=0.0, norm_shape=None):
    norm_shape = shape[-1:] if norm_shape is None else norm_shape
    x = (rng.standard_normal(shape) * 2.0 + offset).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    w = (rng.standard_normal(norm_shape) + 1.0).astype(dtype)
    return dy, x, w


def ours(centered, dy, x, w=None, **kw):
    """(dx, dweight, dbias or None) from the public function."""
    if centered:
        return numba_ln.layer_norm_backward(dy, x, w, **kw)
    if "mean" in kw:
        del kw["mean"]
    return (*numba_ln.rms_norm_backward(dy, x, w, **kw), None)


def oracle(centered, dy, x, w=None, **kw):
    if centered:
        return ref.layer_norm_backward(dy, x, w, **kw)
    kw.pop("mean", None)
    return (*ref.rms_norm_backward(dy, x, w, **kw), None)


def assert_matches(got, want, dtype, tol=None):
    tol = TOL[np.dtype(dtype)] if tol is None else tol
    for name, a, b in zip(("dx", "dweight", "dbias"), got, want):
        if b is None:
            assert a is None, name
            continue
        assert a.dtype == dtype and a.shape == b.shape, (name, a.dtype, a.shape)
        assert error(a, b) <= tol, (name, error(a, b))


EPS = {True: 1e-5, False: 1e-6}
CENTERED = pytest.mark.parametrize("centered", [True, False], ids=["layer", "rms"])


# --- accuracy -----------------------------------------------------------------------------

@pytest.mark.parametrize("offset", [0.0, 1e3, 1e4])
@CENTERED
def test_float32_matches_reference_far_from_zero(rng, centered, offset):
    dy, x, w = data(rng, (37, 300), np.float32, offset)
    got = ours(centered, dy, x, w, eps=EPS[centered])
    assert_matches(got, oracle(centered, dy, x, w, eps=EPS[centered]), np.float32)


@CENTERED
def test_float64_matches_reference(rng, centered):
    dy, x, w = data(rng, (29, 130), np.float64, 1e4)
    got = ours(centered, dy, x, w, eps=EPS[centered])
    assert_matches(got, oracle(centered, dy, x, w, eps=EPS[centered]), np.float64)


@CENTERED
def test_without_weight(rng, centered):
    dy, x, _ = data(rng, (16, 200), np.float32, 1e3)
    assert_matches(ours(centered, dy, x), oracle(centered, dy, x, eps=EPS[centered]),
                   np.float32)


def _layouts():
    """(name, x's shape, axis, how x and dy are laid out): float64 data."""
    c = np.ascontiguousarray
    return [
        ("axes-tuple", (6, 5, 40), (1, 2), c),
        ("axes-first-last", (6, 5, 40), (0, 2), c),       # not a view: copied into rows
        ("axis-0", (50, 12), 0, c),                         # channels plan: copied
        ("channels-first", (3, 8, 5, 5), 1, c),
        ("fortran", (20, 30), -1, np.asfortranarray),
        ("sliced-rows", (20, 30), -1, lambda a: np.pad(a, ((0, 0), (0, 7)))[:, :30]),
        ("strided-cols", (20, 30), -1, lambda a: np.repeat(a, 2, axis=1)[:, ::2]),
        ("reversed-cols", (20, 30), -1, lambda a: c(a[:, ::-1])[:, ::-1]),
        ("reversed-rows", (20, 30), -1, lambda a: c(a[::-1])[::-1]),
    ]


@pytest.mark.parametrize("name, shape, axis, layout", _layouts(), ids=[t[0] for t in _layouts()])
def test_any_axes_and_layout(rng, name, shape, axis, layout):
    axes = (axis,) if isinstance(axis, int) else axis
    norm_shape = tuple(shape[a] for a in axes)
    dy, x, w = data(rng, shape, np.float64, 100.0, norm_shape)
    lx, ldy = layout(x), layout(dy)
    assert np.array_equal(lx, x) and np.array_equal(ldy, dy)
    got = numba_ln.layer_norm_backward(ldy, lx, w, axis=axis)
    assert_matches(got, ref.layer_norm_backward(dy, x, w, axis=axis), np.float64)
    got = numba_ln.rms_norm_backward(ldy, lx, w, axis=axis)
    assert_matches(got, ref.rms_norm_backward(dy, x, w, axis=axis), np.float64)


def test_dy_laid_out_unlike_x(rng):
    dy, x, w = data(rng, (20, 30), np.float32, 1e3)
    got = numba_ln.layer_norm_backward(np.asfortranarray(dy), x[:, ::-1].copy()[:, ::-1], w)
    assert_matches(got, ref.layer_norm_backward(dy, x, w), np.float32)


def test_result_dtypes(rng):
    x = rng.integers(-5, 5, (8, 16))
    dy = rng.standard_normal((8, 16)).astype(np.float32)
    w = np.arange(16)  # converted to the work dtype
    for got in (numba_ln.layer_norm_backward(dy, x, w), numba_ln.rms_norm_backward(dy, x, w)):
        assert all(a.dtype == np.float64 for a in got)  # ints: float64; dy promoted
    assert_matches(numba_ln.layer_norm_backward(dy, x, w), ref.layer_norm_backward(dy, x, w),
                   np.float64)
    dx, dw, db = numba_ln.layer_norm_backward(dy, x > 0, np.ones(16, np.float32))
    assert dx.dtype == dw.dtype == db.dtype == np.float64


# --- given statistics ---------------------------------------------------------------------

@pytest.mark.parametrize("axis", [-1, (0, 2)])
@CENTERED
def test_stats_from_the_forward(rng, centered, axis):
    shape = (16, 4, 64) if axis == -1 else (4, 16, 32)
    norm_shape = (64,) if axis == -1 else (4, 32)
    dy, x, w = data(rng, shape, np.float32, 1e3, norm_shape)
    if centered:
        _, mean, rstd = numba_ln.layer_norm(x, w, axis=axis, return_stats=True)
        stats = {"mean": mean, "rstd": rstd}
    else:
        _, rstd = numba_ln.rms_norm(x, w, axis=axis, return_stats=True)
        stats = {"rstd": rstd}
    assert stats["rstd"].dtype == np.float32
    got = ours(centered, dy, x, w, axis=axis, **stats)
    assert_matches(got, oracle(centered, dy, x, w, axis=axis, **stats), np.float32)
    # The float32 statistics are used as rounded (a mean of 1e3 is off by ~3e-5): within
    # the bar of the exact gradients, not bit for bit those from recomputed statistics.
    exact = oracle(centered, dy, x, w, axis=axis, eps=EPS[centered])
    assert_matches(got, exact, np.float32)


def test_float64_stats_for_float32_data(rng):
    dy, x, w = data(rng, (29, 257), np.float32, 1e3)
    _, mean, rstd = ref.layer_norm(x)  # float64, keepdims
    got = numba_ln.layer_norm_backward(dy, x, w, mean=mean, rstd=rstd)
    assert_matches(got, ref.layer_norm_backward(dy, x, w, mean=mean, rstd=rstd), np.float32)


# --- grad_residual, out=, param_grads -----------------------------------------------------

@CENTERED
def test_grad_residual_is_added(rng, centered):
    dy, x, w = data(rng, (23, 130), np.float32, 1e2)
    gr = rng.standard_normal(x.shape).astype(np.float32)
    got = ours(centered, dy, x, w, grad_residual=gr, eps=EPS[centered])
    assert_matches(got, oracle(centered, dy, x, w, grad_residual=gr, eps=EPS[centered]),
                   np.float32)


def test_grad_residual_is_the_backward_of_add_layer_norm(rng):
    """s = x + r feeds the norm and flows on: the loss sum(y * dy) + sum(s * ds) has
    d/dx = d/dr = layer_norm_backward(dy, s, grad_residual=ds)."""
    x, r, dy, ds = (rng.standard_normal((4, 8)) for _ in range(4))
    w = rng.standard_normal(8)
    dy0 = dy.copy()
    dx = numba_ln.layer_norm_backward(dy.copy(), x + r, w, grad_residual=ds, out=dy)[0]
    assert dx is dy

    def loss(x):
        y, s = numba_ln.add_layer_norm(x, r, w)
        return np.sum(y * dy0) + np.sum(s * ds)

    h = 1e-6
    fd = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = h
        fd[i] = (loss(x + e) - loss(x - e)) / (2 * h)
    assert error(dx, fd) <= 1e-7


def test_out_and_in_place(rng):
    dy, x, w = data(rng, (23, 130), np.float32, 1e2)
    want = numba_ln.layer_norm_backward(dy, x, w)
    out = np.full_like(x, np.nan)
    got = numba_ln.layer_norm_backward(dy, x, w, out=out)
    assert got[0] is out and np.array_equal(out, want[0])
    fortran = np.asfortranarray(np.full_like(x, np.nan))  # written through a buffer
    got = numba_ln.layer_norm_backward(dy, x, w, out=fortran)
    assert got[0] is fortran and np.array_equal(fortran, want[0])
    grad = dy.copy()
    got = numba_ln.layer_norm_backward(grad, x, w, out=grad)
    assert got[0] is grad
    assert error(grad, want[0]) <= 1e-6  # another kernel variant: last bits may differ
    assert np.array_equal(got[1], want[1]) and np.array_equal(got[2], want[2])
    grad = dy.copy()
    got = numba_ln.rms_norm_backward(grad, x, w, out=grad)
    assert error(grad, numba_ln.rms_norm_backward(dy, x, w)[0]) <= 1e-6


def test_out_over_x_or_grad_residual_reads_a_copy(rng):
    dy, x, w = data(rng, (23, 130), np.float32, 1e2)
    gr = rng.standard_normal(x.shape).astype(np.float32)
    want = numba_ln.layer_norm_backward(dy, x, w, grad_residual=gr)[0]
    for target in ("x", "gr"):
        xc, grc = x.copy(), gr.copy()
        out = xc if target == "x" else grc
        got = numba_ln.layer_norm_backward(dy, xc, w, grad_residual=grc, out=out)[0]
        assert got is out and np.array_equal(got, want)
    shifted = np.concatenate([dy.reshape(-1), np.zeros(130, np.float32)])
    part = shifted[130:].reshape(x.shape)  # out overlaps dy, shifted by a row
    got = numba_ln.layer_norm_backward(shifted[:-130].reshape(x.shape), x, w, out=part)[0]
    assert np.array_equal(got, numba_ln.layer_norm_backward(dy, x, w)[0])


@CENTERED
def test_param_grads_off(rng, centered):
    dy, x, w = data(rng, (19, 200), np.float32, 1e3)
    fn = numba_ln.layer_norm_backward if centered else numba_ln.rms_norm_backward
    got = fn(dy, x, w, param_grads=False)
    assert len(got) == (3 if centered else 2) and all(g is None for g in got[1:])
    assert np.array_equal(got[0], fn(dy, x, w)[0])  # (docs/training.md: the full call's bits)


def test_inputs_not_modified(rng):
    dy, x, w = data(rng, (9, 64), np.float32)
    gr = rng.standard_normal(x.shape).astype(np.float32)
    args = (dy, x, w, gr)
    copies = [a.copy() for a in args]
    numba_ln.layer_norm_backward(dy, x, w, grad_residual=gr)
    for a, b in zip(args, copies):
        assert np.array_equal(a, b)


def test_no_rows():
    x = np.empty((0, 5), np.float32)
    dx, dw, db = numba_ln.layer_norm_backward(x, x)
    assert dx.shape == (0, 5) and dx.dtype == np.float32
    assert np.array_equal(dw, np.zeros(5)) and dw.dtype == np.float32
    assert np.array_equal(db, np.zeros(5))


# --- threads --------------------------------------------------------------------------------

@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 threads")
def test_one_and_two_threads_bitwise(rng):
    """(1100, 300): above SERIAL_MAX_ELEMENTS, the parallel kernel in 6 tasks."""
    dy, x, w = data(rng, (1100, 300), np.float32, 1e3)
    before = numba.get_num_threads()
    results = {}
    try:
        for threads in (1, 2):
            numba.set_num_threads(threads)
            results[threads] = [numba_ln.layer_norm_backward(dy, x, w),
                                numba_ln.rms_norm_backward(dy, x, w)]
    finally:
        numba.set_num_threads(before)
    for one, two in zip(results[1], results[2]):
        assert all(a.tobytes() == b.tobytes() for a, b in zip(one, two))
    assert_matches(results[2][0], ref.layer_norm_backward(dy, x, w), np.float32)


# --- torch autograd -----------------------------------------------------------------------

@CENTERED
def test_matches_torch_autograd_over_two_axes(rng, centered):
    torch = pytest.importorskip("torch")
    dy, x, w = data(rng, (7, 5, 40), np.float32, 1e4, (5, 40))
    tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    tw = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    tb = torch.zeros((5, 40), dtype=torch.float64, requires_grad=True)
    if centered:
        y = torch.nn.functional.layer_norm(tx, (5, 40), tw, tb, eps=1e-5)
    else:
        y = torch.nn.functional.rms_norm(tx, (5, 40), tw, eps=1e-6)
    y.backward(torch.tensor(dy, dtype=torch.float64))
    want = (tx.grad.numpy(), tw.grad.numpy(), tb.grad.numpy() if centered else None)
    got = ours(centered, dy, x, w, axis=(1, 2), eps=EPS[centered])
    assert_matches(got, want, np.float32)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("form", ["recomputed", "given_stats", "grad_residual", "in_place",
                                  "transposed"])
def test_one_element_rows_have_exactly_zero_dx(rng, dtype, form):
    """LayerNorm over a size-1 axis gives y = bias whatever x is: dx is exactly 0 (plus
    grad_residual) and dweight exactly 0; dbias is sum(dy).  torch in float64 agrees to
    its rounding (1e-13 at |x| ~ 100; its float32 left 6e-5, and so did our general
    formula, up to 2.7e-5).  A row holding inf or NaN gives NaN, as elsewhere."""
    x = (rng.standard_normal((6, 1)) * 100).astype(dtype)
    x[4] = np.inf
    dy, w = rng.standard_normal((6, 1)).astype(dtype), np.array([1.7], dtype)
    gr = rng.standard_normal((6, 1)).astype(dtype) if form == "grad_residual" else None
    kw = {}
    if form == "given_stats":
        _, kw["mean"], kw["rstd"] = numba_ln.layer_norm(x, w, return_stats=True)
    if form == "in_place":
        kw["out"] = dy_given = dy.copy()
        dx, dw, db = numba_ln.layer_norm_backward(dy_given, x, w, **kw)
        assert dx is dy_given
    elif form == "transposed":
        dx, dw, db = numba_ln.layer_norm_backward(dy.T, x.T, w, axis=0)
        dx = dx.T
    else:
        dx, dw, db = numba_ln.layer_norm_backward(dy, x, w, grad_residual=gr, **kw)
    want_dx = np.zeros(6) if gr is None else gr[:, 0].astype(np.float64)
    finite = np.arange(6) != 4
    assert np.isnan(dx[4, 0]) and np.isnan(dw[0])
    assert np.array_equal(dx[finite, 0], want_dx[finite].astype(dtype))
    x[4] = 0.0  # (dweight and dbias on finite rows only)
    dx, dw, db = numba_ln.layer_norm_backward(dy, x, w)
    assert dw[0] == 0.0 and np.isclose(db[0], dy.astype(np.float64).sum(), rtol=1e-6)
    torch = pytest.importorskip("torch")
    tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    tw = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    tb = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    torch.nn.functional.layer_norm(tx, (1,), tw, tb, eps=1e-5).backward(
        torch.tensor(dy, dtype=torch.float64))
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=0, atol=1e-11)
    np.testing.assert_allclose(dw, tw.grad.numpy(), rtol=0, atol=1e-10)


# --- bad arguments: errors naming the argument, nothing written -----------------------------

def _bad_calls():
    x = np.ones((4, 6), np.float32)
    x[:, 0] = 2
    dy, w = np.ones_like(x), np.ones(6, np.float32)
    _, mean, rstd = numba_ln.layer_norm(x, return_stats=True)
    ln, rms = numba_ln.layer_norm_backward, numba_ln.rms_norm_backward
    return [
        ("dy-shape", ValueError, "dy", lambda o: ln(dy[:3], x, out=o)),
        ("dy-complex", TypeError, "dy", lambda o: ln(dy.astype(complex), x, out=o)),
        ("dy-object", TypeError, "dy", lambda o: ln(dy.astype(object), x, out=o)),
        ("x-complex", TypeError, "x", lambda o: ln(dy, x.astype(np.complex64), out=o)),
        ("x-ragged", ValueError, "x", lambda o: ln(dy, [[1.0], [1.0, 2.0]], out=o)),
        ("weight-size", ValueError, "weight", lambda o: ln(dy, x, np.ones(5), out=o)),
        ("weight-complex", TypeError, "weight", lambda o: ln(dy, x, w + 1j, out=o)),
        ("mean-alone", ValueError, "mean", lambda o: ln(dy, x, mean=mean, out=o)),
        ("rstd-alone", ValueError, "rstd", lambda o: ln(dy, x, rstd=rstd, out=o)),
        ("mean-shape", ValueError, "mean",
         lambda o: ln(dy, x, mean=mean.ravel(), rstd=rstd, out=o)),
        ("rstd-shape", ValueError, "rstd", lambda o: rms(dy, x, w, rstd=rstd[:2], out=o)),
        ("rstd-dtype", TypeError, "rstd",
         lambda o: rms(dy, x, rstd=rstd.astype(np.float16), out=o)),
        ("grad_residual-shape", ValueError, "grad_residual",
         lambda o: ln(dy, x, grad_residual=x[:, :3], out=o)),
        ("grad_residual-complex", TypeError, "grad_residual",
         lambda o: rms(dy, x, grad_residual=x + 1j, out=o)),
        ("out-shape", ValueError, "out", lambda o: ln(dy, x, out=o[:2])),
        ("out-dtype", TypeError, "out", lambda o: ln(dy, x, out=o.astype(np.float64))),
        ("out-list", TypeError, "out", lambda o: ln(dy, x, out=o.tolist())),
        ("axis", ValueError, "axis", lambda o: ln(dy, x, axis=2, out=o)),
        ("axis-type", TypeError, "axis", lambda o: rms(dy, x, axis=1.0, out=o)),
        ("eps", ValueError, "eps", lambda o: ln(dy, x, eps=-1.0, out=o)),
        ("param_grads", TypeError, "param_grads", lambda o: ln(dy, x, param_grads=None, out=o)),
    ]


@pytest.mark.parametrize("name, exc, arg, call", _bad_calls(), ids=[c[0] for c in _bad_calls()])
def test_bad_arguments_name_the_argument(name, exc, arg, call):
    out = np.full((4, 6), 7.0, np.float32)
    with pytest.raises(exc, match=arg):
        call(out)
    assert (out == 7.0).all()


def test_read_only_out_is_refused():
    x = np.ones((2, 3))
    out = np.zeros((2, 3))
    out.flags.writeable = False
    with pytest.raises(ValueError, match="out is read-only"):
        numba_ln.layer_norm_backward(x, x, out=out)


def test_dask_arrays_are_refused():
    da = pytest.importorskip("dask.array")
    x = da.ones((4, 6), chunks=2)
    with pytest.raises(TypeError, match="CPU with NumPy arrays only.*dy is a dask array"):
        numba_ln.layer_norm_backward(x, np.ones((4, 6)))
    with pytest.raises(TypeError, match="x is a dask array"):
        numba_ln.rms_norm_backward(np.ones((4, 6)), x)
    # beside 16-bit NumPy data too (their route converted the dask array, computing it)
    half = np.ones((4, 6), np.float16)
    with pytest.raises(TypeError, match="dy is a dask array"):
        numba_ln.layer_norm_backward(x.astype(np.float16), half)
    with pytest.raises(TypeError, match="grad_residual is a dask array"):
        numba_ln.rms_norm_backward(half, half, grad_residual=x)
    # and in the other arguments (computed silently until 2026-12-06)
    plain, row = np.ones((4, 6)), da.ones(6, chunks=3)
    with pytest.raises(TypeError, match="weight is a dask array"):
        numba_ln.layer_norm_backward(plain, plain, row)
    with pytest.raises(TypeError, match="weight is a dask array"):
        numba_ln.rms_norm_backward(half, half, row)
    with pytest.raises(TypeError, match="rstd is a dask array"):
        numba_ln.layer_norm_backward(plain, plain, mean=np.ones((4, 1)),
                                     rstd=da.ones((4, 1), chunks=2))
