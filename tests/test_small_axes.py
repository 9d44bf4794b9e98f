"""Small calls over axes that are rows in memory (numba_ln/_small_axes.py): consecutive
axes in increasing order followed only by size-1 axes, of a C-contiguous x -- a module's
several-axis normalized_shape, axis=(-2, -1), a 1-tuple last axis, a column over axis=0 --
forward, fused, moments and backward.
Each takes the small-call kernel on views of x's rows and gives the general path's bits
and shapes (the general path: the same axes as an int subclass, _oracle.general_axes);
every other form, and every error, is the general path's."""
import numpy as np
import pytest
from _oracle import general_axes
from _oracle import same_bits as same

import numba_ln


def _data(rng, shape, dtype=np.float32):
    return (rng.standard_normal(shape) * 3.0 + 1e3).astype(dtype)


# (shape, axis): two trailing axes either sign, three, a 1-tuple last axis, axes followed
# by a size-1 axis, every axis of a matrix (one row: not a column's transpose)
_RUNS = [((3, 16, 12), (-2, -1)), ((2, 4, 6), (1, 2)), ((2, 3, 4, 5), (1, 2, 3)),
         ((5, 24), (-1,)), ((3, 4, 5, 1), (1, 2)), ((3, 4), (0, 1))]


def _normalized(shape, axis):
    first = axis[0] % len(shape)
    return shape[first:first + len(axis)]


@pytest.mark.parametrize("shape, axis", _RUNS)
def test_runs_of_axes_take_the_small_call_with_the_general_paths_bits(rng, small_ran,
                                                                      shape, axis):
    x = _data(rng, shape)
    w = (rng.standard_normal(_normalized(shape, axis)) + 1.0).astype(np.float32)
    b = rng.standard_normal(w.shape).astype(np.float32)
    forms = {
        "plain": lambda ax: numba_ln.layer_norm(x, w, b, axis=ax),
        "float64 params": lambda ax: numba_ln.layer_norm(x, w.astype(np.float64), b, axis=ax),
        "stats": lambda ax: numba_ln.layer_norm(x, w, axis=ax, return_stats=True),
        "rms stats": lambda ax: numba_ln.rms_norm(x, w, axis=ax, return_stats=True),
        "no params": lambda ax: numba_ln.rms_norm(x, axis=ax, eps=np.float32(1e-3)),
    }
    for name, form in forms.items():
        small_ran.clear()
        got = form(axis)
        assert small_ran == ["small_norm"], name
        assert same(got, form(general_axes(*axis))), name
        assert small_ran == ["small_norm"], name  # (general_axes: the general path)
    for keepdims in (False, True):
        small_ran.clear()
        got = numba_ln.moments(x, axis=axis, keepdims=keepdims)
        assert small_ran == ["small_moments"]
        assert same(got, numba_ln.moments(x, axis=general_axes(*axis), keepdims=keepdims))


def test_out_and_in_place(rng, small_ran):
    x = _data(rng, (3, 16, 12))
    w = rng.standard_normal((16, 12)).astype(np.float32)
    want = numba_ln.layer_norm(x, w, axis=general_axes(1, 2), return_stats=True)
    out = np.empty_like(x)
    got = numba_ln.layer_norm(x, w, axis=(1, 2), out=out, return_stats=True)
    assert got[0] is out and same(got, want)
    xc = x.copy()
    assert numba_ln.layer_norm(xc, w, axis=(1, 2), out=xc) is xc and same(xc, want[0])
    assert small_ran == ["small_norm"] * 2
    # a column (n, 1) over axis 0, into out and in place (read as its transposed row)
    col = _data(rng, (40, 1))
    want = numba_ln.layer_norm(col, axis=general_axes(0), return_stats=True)
    out = np.empty_like(col)
    got = numba_ln.layer_norm(col, axis=0, out=out, return_stats=True)
    assert got[0] is out and same(got, want)
    assert numba_ln.layer_norm(col, axis=(0,), out=col) is col and same(col, want[0])


def test_rows_read_as_they_are_in_every_form(rng, small_ran, tmp_path):
    """Without statistics or a residual, x, y and the parameters reach the kernel as they
    are (cpu/small.small_layer_norm_rows reads them as rows): 16-bit data and parameters,
    memory-mapped and read-only parameters of the normalized shape, a read-only x, out=,
    in place, several ranks, the same tuple on another shape -- the general path's bits
    each time."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x = _data(rng, (3, 8, 12))
    w, mapped = _weight_and_mapped(rng, tmp_path)
    frozen = x.copy()
    frozen.flags.writeable = False
    axis = (-2, -1)
    calls = {
        "mapped weight": lambda x, ax: numba_ln.layer_norm(x, mapped, mapped, axis=ax),
        "read-only x": lambda x, ax: numba_ln.rms_norm(frozen, w, axis=ax),
        "float16 weight": lambda x, ax: numba_ln.layer_norm(x, w.astype(np.float16), axis=ax),
        "float64 data": lambda x, ax: numba_ln.layer_norm(x.astype(np.float64), w, axis=ax),
        "eps None": lambda x, ax: numba_ln.rms_norm(x, w, axis=ax, eps=None),
    }
    for dtype in (np.float16, ml_dtypes.bfloat16):
        calls[f"{np.dtype(dtype).name} data"] = (
            lambda x, ax, dtype=dtype: numba_ln.layer_norm(x.astype(dtype), w.astype(dtype),
                                                           w, axis=ax))
    for name, call in calls.items():
        small_ran.clear()
        got = call(x, axis)
        assert small_ran == ["small_norm"], name
        assert same(got, call(x, general_axes(*axis))), name
    out = np.empty_like(x)
    assert numba_ln.layer_norm(x, w, w, axis=axis, out=out) is out
    assert same(out, numba_ln.layer_norm(x, w, w, axis=general_axes(*axis)))
    x4 = _data(rng, (2, 3, 8, 12))  # (the same tuple object on another rank)
    assert same(numba_ln.layer_norm(x4, w, axis=axis),
                numba_ln.layer_norm(x4, w, axis=general_axes(*axis)))
    assert small_ran[-3:] == ["small_norm"] * 3
    # a weight of the right size in another shape is the general path's error, the same
    # axes as general_axes the general path's call
    with pytest.raises(ValueError, match="weight"):
        numba_ln.layer_norm(x, w.reshape(12, 8), axis=axis)
    small_ran.clear()
    numba_ln.layer_norm(x, w, axis=general_axes(*axis))
    assert small_ran == []


@pytest.mark.parametrize("shape, axis", [((3, 8, 12), (-2, -1)), ((5, 24), (-1,)),
                                         ((3, 4, 5, 1), (1, 2))])
def test_the_fused_forms_take_runs_of_axes(rng, small_ran, shape, axis):
    """add_layer_norm/add_rms_norm: (y, s) and the statistics, fresh, into out= and
    residual_out=, over the residual and over x in place, with the general path's bits."""
    x, r = _data(rng, shape), rng.standard_normal(shape).astype(np.float32)
    w = (rng.standard_normal(_normalized(shape, axis)) + 1.0).astype(np.float32)
    for fused, params in ((numba_ln.add_layer_norm, (w, w)), (numba_ln.add_rms_norm, (w,))):
        want = fused(x, r, *params, axis=general_axes(*axis), return_stats=True)
        small_ran.clear()
        assert same(fused(x, r, *params, axis=axis, return_stats=True), want)
        assert same(fused(x, r, *params, axis=axis), want[:2])
        y, s = np.empty_like(x), np.empty_like(x)
        got = fused(x, r, *params, axis=axis, out=y, residual_out=s, return_stats=True)
        assert got[0] is y and got[1] is s and same(got, want)
        rc, xc = r.copy(), x.copy()
        assert fused(x, rc, *params, axis=axis, residual_out=rc)[1] is rc and same(rc, want[1])
        assert fused(xc, r, *params, axis=axis, out=xc)[0] is xc and same(xc, want[0])
        assert small_ran == ["small_add_norm"] * 5


def test_16_bit_data(rng, small_ran):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    for dtype in (np.float16, ml_dtypes.bfloat16):
        x = _data(rng, (3, 8, 12), dtype)
        w = (rng.standard_normal((8, 12)) + 1.0).astype(dtype)  # (a 16-bit checkpoint)
        small_ran.clear()
        got = numba_ln.layer_norm(x, w, w, axis=(-2, -1), return_stats=True)
        assert small_ran == ["small_norm"]
        assert same(got, numba_ln.layer_norm(x, w, w, axis=general_axes(1, 2),
                                             return_stats=True))


def test_other_forms_take_the_general_path(rng, small_ran):
    x = _data(rng, (3, 8, 12))
    w12 = rng.standard_normal(12).astype(np.float32)
    declined = [
        lambda: numba_ln.layer_norm(x, axis=(2, 1)),  # out of order
        lambda: numba_ln.layer_norm(x, axis=(0, 2)),  # not consecutive
        lambda: numba_ln.layer_norm(x, axis=(0, 1)),  # followed by a longer axis
        lambda: numba_ln.layer_norm(x, w12, axis=(1, 2)),  # a weight that broadcasts
        lambda: numba_ln.layer_norm(x[:, :, ::2], axis=(1, 2)),  # strided x
        lambda: numba_ln.layer_norm(x, axis=[1, 2]),  # a list
        lambda: numba_ln.layer_norm(x, axis=(1, 2), out=np.empty((12, 8, 3), np.float32).T),
        lambda: numba_ln.add_layer_norm(x, x[:1], axis=(1, 2)),  # a residual that broadcasts
    ]
    for call in declined:
        call()
        assert small_ran == []
    # the broadcast weight, against its full-shape equal
    assert np.array_equal(numba_ln.layer_norm(x, w12, axis=(1, 2)),
                          numba_ln.layer_norm(x, np.broadcast_to(w12, (8, 12)).copy(),
                                              axis=(1, 2)))


def test_errors_are_the_general_paths(rng):
    x = _data(rng, (3, 8, 12))
    out = np.full_like(x, 7.0)
    for axis, match in (((1, 1), "axis"), ((1, 3), "axis"), ((True, 2), "axis")):
        with pytest.raises((ValueError, TypeError), match=match):
            numba_ln.layer_norm(x, axis=axis, out=out)
    with pytest.raises(ValueError, match="weight"):
        numba_ln.layer_norm(x, np.ones((8, 11), np.float32), axis=(1, 2), out=out)
    with pytest.raises(ValueError, match="eps"):
        numba_ln.layer_norm(x, axis=(1, 2), eps=-1.0, out=out)
    with pytest.raises(ValueError, match="out"):
        numba_ln.layer_norm(x, axis=(1, 2), out=np.empty((3, 8, 11), np.float32))
    assert (out == 7.0).all()


def test_backward_errors_over_runs_of_axes_are_the_general_paths(rng):
    """Bad input to the backward over several trailing axes (which the rows kernels
    decline) gets the general path's error, and leaves dy, x and out as they were."""
    x, dy = _data(rng, (3, 8, 12)), rng.standard_normal((3, 8, 12)).astype(np.float32)
    w = np.ones((8, 12), np.float32)
    out = np.full_like(x, 7.0)
    x0, dy0 = x.copy(), dy.copy()
    bad = [
        (lambda: numba_ln.layer_norm_backward(dy, x, w, axis=(1, 2), eps=-1.0, out=out),
         "eps"),
        (lambda: numba_ln.layer_norm_backward(dy[:, :, :11], x, w, axis=(1, 2), out=out),
         "dy"),
        (lambda: numba_ln.rms_norm_backward(dy, x, np.ones((8, 11), np.float32),
                                            axis=(1, 2), out=out), "weight"),
        (lambda: numba_ln.layer_norm_backward(dy, x, w, axis=(1, 2),
                                              out=np.empty((3, 8, 11), np.float32)), "out"),
    ]
    for call, match in bad:
        with pytest.raises(ValueError, match=match):
            call()
    assert (out == 7.0).all() and same(x, x0) and same(dy, dy0)


def test_several_axis_modules_take_the_small_call(rng, small_ran):
    x = _data(rng, (2, 8, 12))
    ln, rms = numba_ln.LayerNorm((8, 12)), numba_ln.RMSNorm([8, 12])
    ln.weight = rng.standard_normal((8, 12))
    ln.bias = rng.standard_normal((8, 12))
    y, mean, rstd = ln(x, return_stats=True)
    assert same((y, mean, rstd), numba_ln.layer_norm(x, ln.weight, ln.bias, axis=(1, 2),
                                                     return_stats=True))
    assert same(rms(x), numba_ln.rms_norm(x, rms.weight, axis=(1, 2)))
    assert small_ran == ["small_norm"] * 4
    ln.weight *= 2.0  # (a training step in place: the next call reads the new values)
    assert same(ln(x), numba_ln.layer_norm(x, ln.weight, ln.bias, axis=(1, 2)))
    bare = numba_ln.LayerNorm((8, 12), elementwise_affine=False)
    assert same(bare(x), numba_ln.layer_norm(x, axis=general_axes(1, 2)))
    out = np.empty_like(x)
    assert ln(x, out=out) is out and same(out, ln(x))
    for module in (ln, bare):  # (another shape of the same size too: not read as rows)
        for shape in ((2, 8, 11), (2, 12, 8)):
            with pytest.raises(ValueError, match="normalized_shape"):
                module(_data(rng, shape))


@pytest.mark.parametrize("shape, axis", [((3, 8, 12), (-2, -1)), ((2, 3, 4, 5), (1, 2, 3)),
                                         ((5, 24), (-1,)), ((40, 1), 0), ((3, 4), (0, 1))])
def test_the_backward_takes_runs_of_axes(rng, small_ran, shape, axis):
    x, dy = _data(rng, shape), rng.standard_normal(shape).astype(np.float32)
    axes = axis if isinstance(axis, tuple) else (axis,)
    w = (rng.standard_normal(_normalized(shape, axes)) + 1.0).astype(np.float32)
    _, mean, rstd = numba_ln.layer_norm(x, w, axis=axis, return_stats=True)
    _, rms_rstd = numba_ln.rms_norm(x, w, axis=axis, return_stats=True)
    r = rng.standard_normal(shape).astype(np.float32)
    forms = {
        "plain": lambda ax: numba_ln.layer_norm_backward(dy, x, w, axis=ax),
        "statistics": lambda ax: numba_ln.layer_norm_backward(dy, x, w, mean=mean, rstd=rstd,
                                                              axis=ax),
        "grad_residual": lambda ax: numba_ln.layer_norm_backward(dy, x, w, axis=ax,
                                                                 grad_residual=r),
        "no param grads": lambda ax: numba_ln.layer_norm_backward(dy, x, axis=ax,
                                                                  param_grads=False),
        "rms": lambda ax: numba_ln.rms_norm_backward(dy, x, w, rstd=rms_rstd, axis=ax),
        "out=dy": lambda ax: _in_place(lambda g: numba_ln.rms_norm_backward(g, x, w, axis=ax,
                                                                           out=g), dy),
    }
    for name, form in forms.items():
        small_ran.clear()
        got = form(axis)
        assert small_ran == ["small_backward"], name
        want = form(general_axes(*axes))
        assert small_ran == ["small_backward"], name
        assert same(got, want), name


def test_the_backward_reads_rows_as_they_are_in_every_form(rng, small_ran, tmp_path):
    """Without statistics or grad_residual, with the parameter gradients, x, dy, dx and
    the parameters reach the kernel as they are (cpu/small_backward's _rows kernels):
    16-bit data with float32 and 16-bit weights, float64 data, a float64, memory-mapped
    or read-only weight, none, out= and out=dy, RMSNorm with eps=None, another rank,
    axes followed by a size-1 axis -- the general path's bits and dweight's shape."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x, dy = _data(rng, (3, 8, 12)), rng.standard_normal((3, 8, 12)).astype(np.float32)
    w, mapped = _weight_and_mapped(rng, tmp_path)
    frozen = w.copy()
    frozen.flags.writeable = False
    axis = (-2, -1)
    backward = numba_ln.layer_norm_backward
    calls = {
        "float64 data": lambda ax: backward(dy.astype(np.float64), x.astype(np.float64), w,
                                            axis=ax),
        "float64 weight": lambda ax: backward(dy, x, w.astype(np.float64), axis=ax),
        "mapped weight": lambda ax: backward(dy, x, mapped, axis=ax),
        "read-only weight": lambda ax: backward(dy, x, frozen, axis=ax),
        "no weight": lambda ax: backward(dy, x, axis=ax),
        "rms eps None": lambda ax: numba_ln.rms_norm_backward(dy, x, w, axis=ax, eps=None),
        "out=": lambda ax: backward(dy, x, w, axis=ax, out=np.empty_like(x)),
        "out=dy": lambda ax: _in_place(lambda g: backward(g, x, w, axis=ax, out=g), dy),
        "4-D": lambda ax: backward(dy.reshape(3, 1, 8, 12), x.reshape(3, 1, 8, 12), w,
                                   axis=ax),
        "size-1 axis after": lambda ax: backward(dy.reshape(3, 8, 12, 1),
                                                 x.reshape(3, 8, 12, 1), w,
                                                 axis=tuple(a - 1 for a in ax)),
    }
    for dtype in (np.float16, ml_dtypes.bfloat16):
        name = np.dtype(dtype).name
        calls[f"{name} data"] = lambda ax, d=dtype: backward(dy.astype(d), x.astype(d), w,
                                                             axis=ax)
        calls[f"{name} weight"] = lambda ax, d=dtype: backward(dy.astype(d), x.astype(d),
                                                               w.astype(d), axis=ax)
    for name, call in calls.items():
        small_ran.clear()
        got = call(axis)
        assert small_ran == ["small_backward"], name
        assert got[1].shape == (8, 12), name
        assert same(got, call(general_axes(*axis))), name
    with pytest.raises(ValueError, match="weight"):  # (the right size, another shape)
        backward(dy, x, w.reshape(12, 8), axis=axis)
    empty = np.ones((0, 8, 12), np.float32)  # (no rows: zero parameter gradients)
    got = backward(empty, empty, w, axis=axis)
    assert got[0].shape == empty.shape and got[1].shape == (8, 12)
    assert not got[1].any() and not got[2].any()


def _weight_and_mapped(rng, tmp_path):
    """A (8, 12) float32 weight, and the same weight saved and loaded memory-mapped."""
    w = (rng.standard_normal((8, 12)) + 1.0).astype(np.float32)
    np.save(tmp_path / "w.npy", w)
    return w, np.load(tmp_path / "w.npy", mmap_mode="r")


def _in_place(call, dy):
    """call(g) on a copy g of dy written in place: its results, after checking that dx is
    g itself."""
    g = dy.copy()
    got = call(g)
    assert got[0] is g
    return got
