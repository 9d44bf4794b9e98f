"""The backward's gate (numba_ln/_small_backward_front.py) at any size: calls above the
forward gates' bound (131072 elements) are checked by small_backward_fits and run in
threads from Python, with the general path's kernels and bits; an allocating call's dx
comes from the output pool as the general path's does; what the gate must not take
reaches the general path, its errors included, with nothing written."""
import pickle

import ml_dtypes
import numpy as np
import pytest
from _oracle import general_axes
from _oracle import same_bits as same

import numba_ln
from numba_ln import _buffers, _config

# above the forward gates' bound (SERIAL_MAX_ELEMENTS) and the backward's serial one
SHAPE = (130, 1024)


def _data(rng, shape=SHAPE, dtype=np.float32):
    x = (rng.standard_normal(shape) * 3.0 + 100.0).astype(dtype)
    return x, rng.standard_normal(shape).astype(dtype)


def test_the_shape_is_above_the_bounds():
    assert SHAPE[0] * SHAPE[1] > _config.SERIAL_MAX_ELEMENTS


def _forms(rng, x, dy):
    """{name: call(**kw)}: the forms a training step makes, each with its own arrays."""
    cols = x.shape[-1]
    w = (rng.standard_normal(cols) + 1.0).astype(np.float32)
    gr = rng.standard_normal(x.shape).astype(x.dtype)
    _, mean, rstd = numba_ln.layer_norm(x, w, return_stats=True)
    _, rms_rstd = numba_ln.rms_norm(x, w, return_stats=True)
    ln, rms = numba_ln.layer_norm_backward, numba_ln.rms_norm_backward
    return {
        "allocating": lambda **kw: ln(dy, x, w, **kw),
        "statistics": lambda **kw: ln(dy, x, w, mean=mean, rstd=rstd, **kw),
        "no weight": lambda **kw: ln(dy, x, **kw),
        "out=": lambda **kw: ln(dy, x, w, out=np.full_like(x, np.nan), **kw),
        "grad_residual": lambda **kw: ln(dy, x, w, grad_residual=gr, **kw),
        "no param grads": lambda **kw: ln(dy, x, w, param_grads=False, **kw),
        "rms": lambda **kw: rms(dy, x, w, **kw),
        "rms statistics": lambda **kw: rms(dy, x, w, rstd=rms_rstd, **kw),
    }


@pytest.mark.parametrize("dtype", [np.float32, np.float64, ml_dtypes.bfloat16])
def test_large_calls_take_the_gate_with_the_general_paths_bits(rng, small_ran, dtype):
    x, dy = _data(rng, dtype=dtype)
    forms = _forms(rng, x, dy)
    if dtype is not np.float32:  # (the other dtypes: a training step's commonest form;
        forms = {"statistics": forms["statistics"]}  # each form compiles kernels of its own)
    for name, form in forms.items():
        small_ran.clear()
        gated = form()
        assert small_ran == ["small_backward in threads"], name
        general = form(axis=general_axes(1))
        assert small_ran == ["small_backward in threads"], name  # (the general path: no)
        assert same(gated, general), name
        assert gated[0].dtype == x.dtype and gated[0].shape == x.shape, name


def test_a_batch_of_sequences_and_dx_in_place(rng, small_ran):
    """A (B, T, C) x read as rows, and out=dy (dx written over dy)."""
    x, dy = _data(rng, (2, 65, 1024))
    w = np.linspace(0.5, 1.5, 1024, dtype=np.float32)
    want = numba_ln.layer_norm_backward(dy, x, w, axis=general_axes(2))
    assert same(numba_ln.layer_norm_backward(dy, x, w), want)
    grad, general = dy.copy(), dy.copy()
    got = numba_ln.layer_norm_backward(grad, x, w, out=grad)
    # (in place is a kernel variant of its own: its last bits may differ from out='s)
    in_place = numba_ln.layer_norm_backward(general, x, w, axis=general_axes(2), out=general)
    assert got[0] is grad and same(got, in_place)
    assert small_ran == ["small_backward in threads"] * 2


def test_unpickled_arrays_and_numpy_flags_take_the_gate(rng, small_ran):
    """The retry with NumPy's own dtype objects and plain flags (_canonical.backward_again)
    is made at any size, as the gate takes any size."""
    x, dy = _data(rng)
    want = numba_ln.layer_norm_backward(dy, x)
    small_ran.clear()
    got = numba_ln.layer_norm_backward(pickle.loads(pickle.dumps(dy)),
                                       pickle.loads(pickle.dumps(x)), param_grads=np.True_)
    assert small_ran == ["small_backward in threads"] and same(got, want)


def test_an_allocating_calls_dx_comes_from_the_pool(rng, small_ran, fresh_pool):
    x, dy = _data(rng, (512, 1024))  # (2 MiB: pooled)
    dx = numba_ln.layer_norm_backward(dy, x)[0]
    assert small_ran == ["small_backward in threads"]
    assert _buffers.pooled_bytes() == (x.nbytes, x.nbytes)  # (one buffer, in use)
    address = dx.ctypes.data
    assert address % 64 == 0
    del dx
    assert numba_ln.layer_norm_backward(dy, x)[0].ctypes.data == address  # (reused)


def test_what_the_gate_declines_gets_the_general_paths_errors(rng, small_ran):
    x, dy = _data(rng)
    w = np.ones(x.shape[-1], np.float32)
    before = (x.copy(), dy.copy())
    read_only = np.zeros_like(x)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="eps"):
        numba_ln.layer_norm_backward(dy, x, w, eps=-1.0)
    with pytest.raises(ValueError, match="out"):
        numba_ln.layer_norm_backward(dy, x, w, out=np.zeros((2,) + x.shape, np.float32))
    with pytest.raises(ValueError, match="out"):
        numba_ln.layer_norm_backward(dy, x, w, out=read_only)
    with pytest.raises(ValueError, match="weight"):
        numba_ln.layer_norm_backward(dy, x, w[:-1])
    with pytest.raises(ValueError, match="dy"):
        numba_ln.layer_norm_backward(dy[:-1], x, w)
    assert small_ran == [] and same((x, dy), before) and not read_only.any()


def test_an_out_over_x_shifted_is_read_from_a_copy(rng, small_ran):
    """dx over x one row on: the gate declines (x would be overwritten before it is
    read), and the general path reads x from a copy."""
    buf, dy = _data(rng, (SHAPE[0] + 1, SHAPE[1]))
    x, dy = buf[:-1], dy[:-1]
    want = numba_ln.layer_norm_backward(dy, x.copy())
    small_ran.clear()
    got = numba_ln.layer_norm_backward(dy, x, out=buf[1:])
    assert small_ran == [] and got[0].base is buf and same(got, want)


def test_several_axes_reach_the_gate_as_rows(rng, small_ran):
    """Above the serial bound, _small_axes_backward hands a call over axes that are rows
    in memory (a torch-style LayerNorm((16, 64))'s backward) to the gate as row views:
    the general path's bits, dweight and dbias in the normalized shape."""
    x, dy = _data(rng, (SHAPE[0], 16, SHAPE[1] // 16))
    w = (1.0 + rng.standard_normal((16, SHAPE[1] // 16))).astype(np.float32)
    gated = numba_ln.layer_norm_backward(dy, x, w, axis=(-2, -1))
    assert small_ran == ["small_backward in threads"]
    general = numba_ln.layer_norm_backward(dy, x, w, axis=general_axes(1, 2))
    assert small_ran == ["small_backward in threads"] and same(gated, general)
    assert gated[1].shape == gated[2].shape == w.shape
