"""Buffers of numba_ln's own that kernels read a row at a time start on a cache line: the
backward's partial rows (numba_ln/cpu/_partials.py), the small calls' stack arrays
(cpu/_pointers.stack_or_new: cast parameters) and the modules' parameters (_modules.py).

A row 32 bytes off a line splits each 64-byte load and store in two.  The compiled
partial_rows and its NumPy twin share rows_layout and to_line, checked here for every
address an allocator may give (NumPy aligns to 16 bytes, Numba's np.empty to 32): every
row on a line, inside its buffer and apart from the others, dweight's and dbias's half a
page apart.
"""
import copy
import pickle

import ml_dtypes
import numpy as np
import pytest

import numba_ln

from numba_ln.cpu._partials import LINE, numpy_partial_rows, rows_layout, to_line


def _row_starts(tasks, cols, itemsize, with_bias, address):
    """(start of every row in elements, elements allocated) for a buffer at address."""
    size, step, second = rows_layout(tasks, cols, itemsize, with_bias)
    start = to_line(address, itemsize)
    offsets = (0, second) if with_bias else (0,)
    return [start + t * step + o for t in range(tasks) for o in offsets], size


@pytest.mark.parametrize("itemsize", [4, 8])
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("cols", [1, 3, 17, 100, 768, 1000, 1024, 4096])
def test_rows_start_on_a_line_inside_the_buffer_and_apart(itemsize, with_bias, cols):
    for tasks in (1, 3):
        for address in range(0, LINE, itemsize):
            starts, size = _row_starts(tasks, cols, itemsize, with_bias, address)
            assert all((address + s * itemsize) % LINE == 0 for s in starts)
            assert all(0 <= s and s + cols <= size for s in starts)
            ordered = sorted(starts)
            assert all(b - a >= cols for a, b in zip(ordered, ordered[1:]))
            if with_bias:  # (dweight's row stored, dbias's loaded: never at one page offset)
                assert (starts[1] - starts[0]) * itemsize % 4096 == 2048


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("with_bias", [True, False])
def test_numpy_partial_rows_start_on_a_line(dtype, with_bias):
    for tasks, cols in ((1, 768), (5, 1000), (2, 3)):
        views = numpy_partial_rows(tasks, cols, dtype, with_bias)
        assert (views[1] is not None) == with_bias
        for buf, start, step in (v for v in views if v is not None):
            assert buf.dtype == dtype
            for t in range(tasks):
                row = buf[start + t * step:start + t * step + cols]
                assert row.size == cols and row.ctypes.data % LINE == 0


def test_compiled_partial_rows_start_on_a_line():
    from numba import njit

    from numba_ln.cpu._partials import partial_rows

    def first_rows(views, tasks):
        buf, start, step = views[0]
        out = np.empty(tasks, np.int64)
        for t in range(tasks):
            out[t] = buf[start + t * step:].ctypes.data
        return out

    first_rows = njit(first_rows)

    @njit
    def with_bias(tasks, cols):  # (LayerNorm: dweight's and dbias's rows)
        grad = np.empty(cols, np.float32)
        return first_rows(partial_rows(tasks, cols, np.float32(0.0), grad, grad), tasks)

    @njit
    def alone(tasks, cols):  # (RMSNorm: dweight's rows only)
        grad = np.empty(cols, np.float32)
        return first_rows(partial_rows(tasks, cols, np.float32(0.0), grad, None), tasks)

    for rows_of in (with_bias, alone):
        for _ in range(4):  # (allocations at other addresses)
            assert all(a % LINE == 0 for a in rows_of(3, 1000))


def test_stack_arrays_start_on_a_line():
    from numba import njit

    from numba_ln.cpu._pointers import stack_or_new

    @njit
    def addresses(n):
        on_stack = stack_or_new((n,), np.float32, 4096)
        on_heap = stack_or_new((n + 2000,), np.float32, 4096)  # (past the stack's bytes)
        on_stack[:] = 1.0  # (used: not optimized away)
        return on_stack.ctypes.data, on_heap.ctypes.data, on_stack.sum()

    for n in (1, 768):
        stack, heap, total = addresses(n)
        assert stack % LINE == 0 and heap % LINE == 0 and total == n


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, ml_dtypes.bfloat16])
def test_module_parameters_start_on_a_line_however_they_were_set(dtype):
    m = numba_ln.LayerNorm((3, 5), dtype=dtype)
    given = np.asfortranarray(np.arange(15.0).reshape(3, 5))  # (float64, Fortran order)
    m.weight = given
    m.bias = [[0.5] * 5] * 3
    for copied in (m, copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        for p, want in ((copied.weight, given), (copied.bias, np.full((3, 5), 0.5))):
            assert p.ctypes.data % LINE == 0 and p.flags.c_contiguous and p.flags.writeable
            assert p.dtype is m.dtype and p.shape == (3, 5)
            assert np.array_equal(p, want.astype(dtype))  # (NumPy's cast)
    held = m.weight
    m.weight *= 2  # (updated in place and assigned back: the same array)
    assert m.weight is held
    rms = numba_ln.RMSNorm(768, dtype=dtype)
    assert rms.weight.ctypes.data % LINE == 0 and np.array_equal(rms.weight, np.ones(768))
