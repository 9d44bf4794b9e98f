"""cpu/transpose.py, the tiled copy of a channels-first input into rows that the backward
functions make (_layout.Plan.kernel_input): NumPy's own transposed copy as the reference,
every element size, shapes off the tile size, serial and threaded; and the backward
through it against the same call on rows."""
import numpy as np
import pytest

import numba_ln
from numba_ln.cpu.transpose import swapped


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1, 2), (3, 33, 70), (2, 96, 3136)])
def test_swapped_is_numpys_transpose(rng, dtype, shape):
    a = rng.standard_normal(shape).astype(dtype)
    got = swapped(a, *shape)
    assert got.dtype == a.dtype and got.flags.c_contiguous and got.shape == (
        shape[0], shape[2], shape[1])
    assert got.tobytes() == np.ascontiguousarray(a.transpose(0, 2, 1)).tobytes()


@pytest.mark.parametrize("axis", [1, (1, 2)])
def test_channels_first_backward_is_the_rows_backward(rng, axis):
    """(N, C, H, W) over axis 1 (or (1, 2)), copied into rows by swapped: the bits of
    the call on the rows array a transposed copy by NumPy gives."""
    x = (rng.standard_normal((2, 24, 5, 200)) + 3).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    axes = (axis,) if isinstance(axis, int) else axis
    norm = tuple(x.shape[a] for a in axes)
    w = rng.standard_normal(norm).astype(np.float32)
    order = tuple(a for a in range(4) if a not in axes) + axes
    as_rows = [np.ascontiguousarray(a.transpose(order)) for a in (dy, x)]
    dx, dw, db = numba_ln.layer_norm_backward(dy, x, w, axis=axis)
    want = numba_ln.layer_norm_backward(*as_rows, w, axis=tuple(range(4 - len(axes), 4)))
    assert dx.transpose(order).tobytes() == np.ascontiguousarray(want[0]).tobytes()
    assert dw.tobytes() == want[1].tobytes() and db.tobytes() == want[2].tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_channels_first_backward_into_out(rng, dtype):
    """out= of x's C-contiguous layout: dx's rows transposed into it (swapped with out),
    the bits of the allocating call; a strided out takes NumPy's copy, the same bits."""
    x = (rng.standard_normal((3, 40, 7, 30)) + 3).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    w = rng.standard_normal(40).astype(np.float32)
    want = numba_ln.layer_norm_backward(dy, x, w, axis=1)[0]
    out = np.full_like(x, np.nan)
    got = numba_ln.layer_norm_backward(dy, x, w, axis=1, out=out)[0]
    assert got is out and out.tobytes() == np.ascontiguousarray(want).tobytes()
    strided = np.full((3, 40, 7, 60), np.nan, dtype)[..., ::2]
    got = numba_ln.layer_norm_backward(dy, x, w, axis=1, out=strided)[0]
    assert got is strided and np.ascontiguousarray(strided).tobytes() == (
        np.ascontiguousarray(want).tobytes())
