"""Odd but valid arguments get the right answer and bad ones a clear refusal: broadcast
(stride 0) inputs, outputs that share memory with inputs, non-finite rows, eps=0, non-array
arguments and module shapes; and no NumPy operation reads memory no kernel wrote.  Each test holds one of the defects a randomized probe found
(the broad version of these checks is tests/test_fuzz.py)."""
import numpy as np
import pytest
from _oracle import assert_close

import numba_ln
from numba_ln import _buffers, _small_front, _small_values
from numba_ln import reference as ref


# --- broadcast inputs: a zero stride is never walked as 1 ------------------------------------

def test_residual_broadcast_along_the_normalized_axis():
    x = np.zeros((4, 6))
    r = np.arange(4.0)[:, None]
    y, s = numba_ln.add_layer_norm(x, r)
    assert np.array_equal(s, np.broadcast_to(r, (4, 6)))
    assert np.array_equal(y, np.zeros((4, 6)))
    y, s = numba_ln.add_rms_norm(x, r, eps=0.0)
    assert np.array_equal(s, np.broadcast_to(r, (4, 6)))
    assert_close(y, ref.rms_norm(s, eps=0.0)[0])


@pytest.mark.parametrize("cols", [6, 200_003])  # serial path; parallel/split rows path
def test_residual_of_one_column_on_the_kernel_paths(cols):
    """Once read past the end of r (SIGSEGV at (4, 50_000_000)): r of shape (4, 1)."""
    x = np.arange(4 * cols, dtype=np.float32).reshape(4, cols) % 7
    r = np.arange(1.0, 5.0, dtype=np.float32)[:, None]
    y, s = numba_ln.add_rms_norm(x, r)
    assert np.array_equal(s, x + r)
    assert_close(y, ref.rms_norm(x + r)[0], scale=4)


@pytest.mark.parametrize("func", ["layer_norm", "rms_norm", "moments"])
def test_x_broadcast_along_the_normalized_axis(func):
    a = np.arange(12.0).reshape(3, 4)
    x = np.broadcast_to(a[:, :1], (3, 4))
    dense = np.array(x)
    if func == "moments":
        mean, var = numba_ln.moments(x)
        assert np.array_equal(mean, [0.0, 4.0, 8.0]) and np.array_equal(var, [0.0, 0.0, 0.0])
    elif func == "layer_norm":
        assert np.array_equal(numba_ln.layer_norm(x), np.zeros((3, 4)))
    else:
        assert_close(numba_ln.rms_norm(x), ref.rms_norm(dense)[0])


def test_x_broadcast_along_rows_and_over_channels():
    row = np.arange(5.0) ** 2
    x = np.broadcast_to(row, (3, 5))  # row stride 0: one row read for every row
    assert_close(numba_ln.layer_norm(x), ref.layer_norm(np.array(x))[0], scale=4)
    x = np.broadcast_to(np.arange(8.0).reshape(2, 1, 4), (2, 3, 4))  # channel stride 0
    y = numba_ln.layer_norm(x, axis=1)
    assert np.array_equal(y, np.zeros((2, 3, 4)))


@pytest.mark.parametrize("centered", [True, False])
def test_backward_with_a_broadcast_dy(centered):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 8))
    dy = np.broadcast_to(rng.standard_normal((5, 1)), (5, 8))
    w = rng.standard_normal(8)
    if centered:
        got = numba_ln.layer_norm_backward(dy, x, w)
        want = ref.layer_norm_backward(np.array(dy), x, w)
    else:
        got = numba_ln.rms_norm_backward(dy, x, w)
        want = ref.rms_norm_backward(np.array(dy), x, w)
    for g, e in zip(got, want):
        assert_close(g, e, scale=10)


def test_an_out_with_a_zero_stride_is_refused():
    out = np.lib.stride_tricks.as_strided(np.zeros(4), (4, 6), (8, 0), writeable=True)
    before = out.copy()
    with pytest.raises(ValueError, match="out has a zero stride"):
        numba_ln.layer_norm(np.ones((4, 6)), out=out)
    assert np.array_equal(out, before)


def test_an_empty_out_is_taken():
    # NumPy gives a size-0 array zero strides: no element shares a location with another
    x = np.zeros((0, 5))
    for call in (lambda out: numba_ln.layer_norm(x, out=out),
                 lambda out: numba_ln.add_rms_norm(x, x, out=out, residual_out=x.copy()),
                 lambda out: numba_ln.layer_norm_backward(x, x, out=out)[0]):
        out = np.empty((0, 5))
        got = call(out)
        assert (got[0] if isinstance(got, tuple) else got) is out


# --- outputs over inputs: one rule, forward and backward --------------------------------------

def _parts():
    rng = np.random.default_rng(1)
    return rng.standard_normal((6, 8)), rng.standard_normal((6, 8)), rng.standard_normal(8)


@pytest.mark.parametrize("under_out", ["weight", "mean", "rstd"])
def test_layer_norm_backward_out_over_weight_or_statistics(under_out):
    dy, x, w = _parts()
    _, mean, rstd = numba_ln.layer_norm(x, w, return_stats=True)
    want = numba_ln.layer_norm_backward(dy, x, w, mean=mean, rstd=rstd)
    out = np.empty_like(x)
    args = {"weight": w, "mean": mean, "rstd": rstd}
    flat = out.reshape(-1)
    flat[: args[under_out].size] = args[under_out].reshape(-1)  # the input lives in out
    args[under_out] = flat[: args[under_out].size].reshape(args[under_out].shape)
    got = numba_ln.layer_norm_backward(dy, x, args["weight"], mean=args["mean"],
                                       rstd=args["rstd"], out=out)
    assert got[0] is out
    for g, e in zip(got, want):
        assert_close(g, e, scale=10)


@pytest.mark.parametrize("under_out", ["weight", "rstd"])
def test_rms_norm_backward_out_over_weight_or_rstd(under_out):
    dy, x, w = _parts()
    _, rstd = numba_ln.rms_norm(x, w, return_stats=True)
    want = numba_ln.rms_norm_backward(dy, x, w, rstd=rstd)
    out = np.empty_like(x)
    if under_out == "weight":
        out[0] = w
        got = numba_ln.rms_norm_backward(dy, x, out[0], rstd=rstd, out=out)
    else:
        out[:, :1] = rstd
        got = numba_ln.rms_norm_backward(dy, x, w, rstd=out[:, :1], out=out)
    for g, e in zip(got, want):
        assert_close(g, e, scale=10)


def test_backward_out_over_dy_is_in_place_and_over_x_is_copied():
    dy, x, w = _parts()
    want = numba_ln.layer_norm_backward(dy, x, w)
    d = dy.copy()
    assert numba_ln.layer_norm_backward(d, x, w, out=d)[0] is d
    assert np.array_equal(d, want[0])
    out = x.copy()
    got = numba_ln.layer_norm_backward(dy, out, w, out=out)
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])


def test_forward_out_over_weight_or_residual_is_right():
    dy, x, w = _parts()
    want_y = numba_ln.layer_norm(x, w)
    out = np.empty_like(x)
    out[0] = w
    assert np.array_equal(numba_ln.layer_norm(x, out[0], out=out), want_y)
    r = dy.copy()
    want = numba_ln.add_layer_norm(x, dy, w)
    y, s = numba_ln.add_layer_norm(x, r, w, out=r)  # out over residual: not promised, copied
    assert y is r and np.array_equal(y, want[0]) and np.array_equal(s, want[1])


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
def test_backward_out_of_a_subclass_is_returned_as_given():
    dy, x, w = _parts()
    out = np.asmatrix(np.empty_like(x))
    for func in (numba_ln.layer_norm_backward, numba_ln.rms_norm_backward):
        got = func(dy, x, w, out=out)
        assert got[0] is out and type(got[0]) is np.matrix
        assert np.array_equal(np.asarray(out), func(dy, x, w)[0])


# --- non-finite rows and eps=0: the README's rules ---------------------------------------------

@pytest.mark.parametrize("shape,axis", [((3, 6), -1), ((2, 300_000), -1), ((2, 6, 5), 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_non_finite_rows(shape, axis, dtype):
    """LayerNorm: a row holding NaN or +-inf is all NaN.  RMSNorm: a NaN makes the row NaN;
    +-inf alone gives NaN there and 0 elsewhere (x / inf), as the NumPy formula does.
    The kernels' paths (serial, split rows, channels) agree with the oracle."""
    x = np.ones(shape, dtype) + np.arange(shape[-1], dtype=dtype)
    x[(0,) * len(shape)] = np.inf  # in the first row
    x[(1,) * len(shape)] = np.nan  # in another
    y = numba_ln.layer_norm(x, axis=axis)
    y_ref = ref.layer_norm(x, axis=axis)[0]
    assert np.array_equal(np.isnan(y), np.isnan(y_ref))
    assert np.isnan(y_ref).any(axis=axis).sum() == 2
    y, rstd = numba_ln.rms_norm(x, axis=axis, return_stats=True)
    y_ref, rstd_ref = ref.rms_norm(x, axis=axis)
    assert_close(y, y_ref, scale=4)
    assert_close(rstd, rstd_ref, scale=1)
    y, s = numba_ln.add_rms_norm(x, np.zeros_like(x), axis=axis)
    assert_close(y, y_ref, scale=4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows,cols", [(4, 8), (4, 64), (4, 1000), (200, 1000), (4096, 64),
                                       (4, 70000)])
@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_mean_of_a_row_holding_inf_is_numpys(dtype, rows, cols):
    """The mean of a row holding +inf (and no -inf or NaN) is inf, -inf alone -inf, both
    NaN, as np.mean's, on every path (small calls, threaded rows, narrow blocks, split rows,
    channels):
    summed about a shift that was inf (an inf among a row's first elements; a float64 row's
    inf anywhere, once the re-sum took the mean as its shift) every difference was inf - inf
    or -inf, and the mean NaN."""
    x = np.tile(np.arange(cols, dtype=dtype) % 7, (rows, 1))
    x[0::4, 0] = np.inf
    x[1::4, cols // 2] = np.inf
    x[2::4, 0] = -np.inf
    x[3::4, 0], x[3::4, -1] = np.inf, -np.inf
    want = np.mean(x.astype(np.float64), axis=-1).astype(dtype)
    assert np.isinf(want[:3]).all() and np.isnan(want[3])
    for mean in (numba_ln.moments(x)[0], numba_ln.layer_norm(x, return_stats=True)[1][:, 0],
                 numba_ln.moments(np.ascontiguousarray(x.T), axis=0)[0]):
        np.testing.assert_array_equal(mean, want)


def test_eps_zero_and_a_constant_row_is_nan_as_documented():
    x = np.array([[2.0, 2.0, 2.0], [1.0, 2.0, 3.0]])
    y = numba_ln.layer_norm(x, eps=0.0)
    assert np.isnan(y[0]).all() and np.isfinite(y[1]).all()
    assert np.array_equal(numba_ln.layer_norm(x, eps=1e-12)[0], np.zeros(3))
    assert np.isnan(numba_ln.rms_norm(np.zeros((1, 4)), eps=0.0)).all()
    assert np.array_equal(numba_ln.rms_norm(np.zeros((1, 4))), np.zeros((1, 4)))


# --- non-arrays and module shapes ----------------------------------------------------------------

@pytest.mark.parametrize("bad,got", [(None, "NoneType"), ("abc", "str"), (b"abc", "bytes"),
                                     ({}, "dict"), (object(), "object"),
                                     (["a", "b"], "list of <U1")])
@pytest.mark.parametrize("func", ["layer_norm", "rms_norm", "moments", "add_layer_norm",
                                  "layer_norm_backward"])
def test_non_arrays_are_refused_naming_x(bad, got, func):
    f = getattr(numba_ln, func)
    args = (bad, np.ones(3)) if func == "add_layer_norm" else (bad,)
    if func == "layer_norm_backward":
        args = (np.ones((2, 3)), bad)
    with pytest.raises(TypeError, match=f"^x must be an array of real numbers, got {got}$"):
        f(*args)


def test_non_arrays_as_other_arguments_name_them():
    x = np.ones((2, 3))
    with pytest.raises(TypeError, match="^weight must be an array of real numbers"):
        numba_ln.layer_norm(x, "abc")
    with pytest.raises(TypeError, match="^residual must be an array of real numbers"):
        numba_ln.add_rms_norm(x, {})
    with pytest.raises(TypeError, match="^dy must be an array of real numbers"):
        numba_ln.rms_norm_backward(None, x)


@pytest.mark.parametrize("module", [numba_ln.LayerNorm, numba_ln.RMSNorm])
def test_module_normalized_shape(module):
    assert module(np.int64(4)).normalized_shape == (4,)
    assert module([2, np.int32(3)]).normalized_shape == (2, 3)
    assert module(np.array([5])).normalized_shape == (5,)
    for bad in ("12", "a", (2.7,), 2.0, True, (2, None), None):
        with pytest.raises(TypeError, match="^normalized_shape must be an int or a sequence"):
            module(bad)
    for bad in (0, (2, -1), (), 2**70, (2**32, 2**32), np.uint64(2**63), 2**62,
                (2**31, 2**31), (3, 2**61), 2**61):
        with pytest.raises(ValueError, match="normalized_shape"):
            module(bad)


# --- memory no kernel wrote is never read ----------------------------------------------------

_SIGNALING_NAN = {8: 0x7FF0000000000001, 4: 0x7F800001, 2: 0x7C01}  # by itemsize


def _poison_allocations(monkeypatch):
    """From here on every float buffer numba_ln allocates in Python comes filled with
    signaling NaNs: NumPy arithmetic on an element no kernel wrote then raises under
    np.errstate (once: the padding between one task's partial rows in the backward, a
    RuntimeWarning when the garbage happened to be a signaling NaN)."""
    def poison(allocate):
        def empty(*args, **kwargs):
            a = allocate(*args, **kwargs)
            if a.dtype.kind == "f":
                a.view(f"u{a.itemsize}")[...] = _SIGNALING_NAN[a.itemsize]
            return a
        return empty
    monkeypatch.setattr(_buffers, "empty", poison(_buffers.empty))
    monkeypatch.setattr(_small_front, "_empty", poison(np.empty))
    monkeypatch.setattr(_small_values, "_empty", poison(np.empty))
    monkeypatch.setattr(np, "empty", poison(np.empty))


def _forward_calls(rng):
    x = (rng.standard_normal((9, 64)) + 10.0).astype(np.float32)
    r = rng.standard_normal(x.shape).astype(np.float32)
    w, b = rng.standard_normal((2, 64)).astype(np.float32)
    x4 = rng.standard_normal((2, 3, 4, 5))
    return {
        "small": lambda: numba_ln.layer_norm(x, w, b, return_stats=True),
        "general": lambda: numba_ln.layer_norm(x, w, b, axis=(1,), return_stats=True),
        "rms general": lambda: numba_ln.rms_norm(x, w, axis=(1,), return_stats=True),
        "fused": lambda: numba_ln.add_layer_norm(x, r, w, b, return_stats=True),
        "two axes": lambda: numba_ln.layer_norm(x4, axis=(1, 2), return_stats=True),
        "channels": lambda: numba_ln.layer_norm(x4, axis=1),
        "moments": lambda: numba_ln.moments(x, axis=0, keepdims=True),
        "float16": lambda: numba_ln.layer_norm(x.astype(np.float16), axis=(1,),
                                               return_stats=True),
    }


def _backward_calls(rng):
    calls = {}
    for rows, cols in ((9, 64), (64, 1024), (1100, 300)):  # 1 task, 2 (the gate), 6
        x = (rng.standard_normal((rows, cols)) + 10.0).astype(np.float32)
        dy = rng.standard_normal(x.shape).astype(np.float32)
        w = rng.standard_normal(cols).astype(np.float32)
        for name, axis in (("", -1), (" general", (1,))):
            calls[f"{rows}x{cols}{name}"] = (
                lambda dy=dy, x=x, w=w, axis=axis: numba_ln.layer_norm_backward(dy, x, w,
                                                                                axis=axis))
            calls[f"rms {rows}x{cols}{name}"] = (
                lambda dy=dy, x=x, w=w, axis=axis: numba_ln.rms_norm_backward(dy, x, w,
                                                                              axis=axis))
    return calls


def _dask_calls(rng):
    """Whole and split normalized axes on the synchronous scheduler (in this process)."""
    da = pytest.importorskip("dask.array")
    x = rng.standard_normal((40, 3, 30)).astype(np.float32) + np.float32(100.0)
    whole, split = da.from_array(x, chunks=(10, 3, 30)), da.from_array(x, chunks=(40, 3, 10))

    def compute(*lazy):
        return tuple(a.compute(scheduler="sync") for a in lazy)
    return {
        "whole": lambda: compute(*numba_ln.layer_norm(whole, axis=(1, 2), return_stats=True)),
        "split": lambda: compute(*numba_ln.layer_norm(split, axis=(1, 2), return_stats=True)),
        "rms split": lambda: compute(*numba_ln.rms_norm(split, axis=(1, 2),
                                                        return_stats=True)),
        "moments split": lambda: compute(*numba_ln.moments(split, axis=(1, 2))),
    }


@pytest.mark.parametrize("kind", ["forward", "backward", "dask"])
def test_no_numpy_operation_reads_unwritten_memory(rng, monkeypatch, kind):
    """The small-call gates, the general paths (rows, channels, two axes, 16-bit), the
    backward's tasks and dask's blocks and merges: the same bits with poisoned
    allocations, and no floating-point exception."""
    calls = {"forward": _forward_calls, "backward": _backward_calls,
             "dask": _dask_calls}[kind](rng)
    want = {name: call() for name, call in calls.items()}
    _poison_allocations(monkeypatch)
    with np.errstate(all="raise"):
        got = {name: call() for name, call in calls.items()}
    for name in calls:
        g, v = got[name], want[name]
        g, v = (g, v) if isinstance(g, tuple) else ((g,), (v,))
        assert all(np.asarray(a).tobytes() == np.asarray(c).tobytes()
                   for a, c in zip(g, v)), name
