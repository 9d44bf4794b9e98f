"""The small-call kernels' argument helpers (small.py, small_backward.py), settled in
compiled code: whether an argument's type fits (decided while compiling), whether its
sizes fit and outputs lie apart from inputs (a few integer compares), the flat views the
row kernels take, parameters in the work type, and scratch statistics rows."""
import numpy as np
from numba import carray, types
from numba.extending import overload

from ._elements import _absent, _in_place
from ._jit import kernel
from ._pointers import stack_doubles, stack_of
from ._storage import load, work_type


# The form's flags, fixed inside each small-call kernel rather than passed: a bool or a
# None argument costs Numba's dispatcher ~65 ns to type (a float ~28 ns, an array ~40),
# a tenth of a (1, 768) call.  Module globals, so that Numba types them as run-time
# values, as the general path passes them: each kernel compiles the body the general
# path runs, with the same argument types (the same specializations, the same bits).
CENTERED = True
NOT_CENTERED = False
NO_EPS = 0.0


def _array_fits(a, like):
    """Typing: a is IN_PLACE or a writeable C-contiguous array of like's dtype and rank."""
    return _in_place(a) or (a.layout == "C" and a.ndim == like.ndim
                            and a.dtype == like.dtype and a.mutable)


def _param_type_fits(p):
    return _absent(p) or (p.layout == "C" and p.ndim == 1)


def shape_of(a, like):
    """a's shape (like's for IN_PLACE)."""


@overload(shape_of, inline="always")
def _shape_of(a, like):
    if _in_place(a):
        return lambda a, like: like.shape
    return lambda a, like: a.shape


def length_fits(p, cols):
    """Whether weight/bias p is None or has cols elements."""


@overload(length_fits, inline="always")
def _length_fits(p, cols):
    if _absent(p):
        return lambda p, cols: True
    return lambda p, cols: p.shape[0] == cols


def span(a):
    """[start, end) byte addresses of an array's elements ((0, 0) for None/IN_PLACE)."""


@overload(span, inline="always")
def _span(a):
    if _absent(a) or _in_place(a):
        return lambda a: (0, 0)
    return lambda a: (a.ctypes.data, a.ctypes.data + a.size * a.itemsize)


@kernel(inline="always")
def apart(a, b):
    """Whether two arrays' memory does not overlap (None/IN_PLACE overlap nothing)."""
    a_lo, a_hi = span(a)
    b_lo, b_hi = span(b)
    return a_hi <= b_lo or b_hi <= a_lo


def view_of(a, cols):
    """The row view of a C-contiguous array; IN_PLACE stays IN_PLACE."""


@overload(view_of, inline="always")
def _view_of(a, cols):
    if _in_place(a):
        return lambda a, cols: a
    # int64, not literal, zeros: the specialization other calls use
    return lambda a, cols: (a.reshape(-1), np.int64(0), np.int64(cols))


def work_param(p, x):
    """weight/bias p as the row kernels read it for x: p itself when absent, of x's dtype,
    or a float32/float64 one for 16-bit data (read as it is); else a copy in the work
    type, the general path's cast made here in ~50 ns instead of a NumPy cast in the
    front (~0.5-1 us): float64 weights on float32 data and float32 ones on float64 (IEEE
    rounding either way: the same values, so the same kernel and bits), and 16-bit
    parameters of 16-bit data, widened exactly to float32 (read as bits in the row loop,
    they cost 11-14% of a (4096, 1024) pass)."""


def _casts(p, x):
    """Typing: whether work_param copies p."""
    return not (_absent(p) or (isinstance(p.dtype, types.Float) and (
        p.dtype == x.dtype or not isinstance(x.dtype, types.Float))))


@kernel(inline="always")
def _widen_into(out, start, p):
    """out[start:start + len(p)] = p, each element converted to out's dtype (load)."""
    for j in range(p.shape[0]):
        out[start + j] = load(p, j)


# Parameters a small call casts go on the stack, both within 32 KiB (4096 columns of
# float32 work, 2048 of float64); more take a heap allocation (~60 ns with its release:
# float64 weight and bias on (1, 768) float32 data, 771 -> 690-727 ns a kernel call).
_STACK_PARAM_BYTES = 32768


def cast_buffer(count, dtype):
    """A 1-D C-contiguous array of count elements of dtype (a Numba type), on the stack
    when they fit in _STACK_PARAM_BYTES, else fresh (the same type either way)."""


@overload(cast_buffer, inline="always")
def _cast_buffer(count, dtype):
    element = dtype.instance_type
    capacity = _STACK_PARAM_BYTES // (element.bitwidth // 8)

    def buffer(count, dtype):
        if count <= capacity:
            return carray(stack_of(capacity, dtype), (count,))
        return np.empty(count, dtype)
    return buffer


@overload(work_param, inline="always")
def _work_param(p, x):
    if not _casts(p, x):
        return lambda p, x: p
    dtype = work_type(x)

    def cast(p, x):
        out = cast_buffer(p.shape[0], dtype)
        _widen_into(out, 0, p)
        return out
    return cast


def work_params(w, b, x):
    """(work_param(w, x), work_param(b, x)), both copies in one buffer when both are
    copied."""


@overload(work_params, inline="always")
def _work_params(w, b, x):
    if not (_casts(w, x) and _casts(b, x)):
        return lambda w, b, x: (work_param(w, x), work_param(b, x))
    dtype = work_type(x)

    def in_one_buffer(w, b, x):
        n = w.shape[0]
        buffer = cast_buffer(n + b.shape[0], dtype)
        _widen_into(buffer, 0, w)
        _widen_into(buffer, n, b)
        return buffer[:n], buffer[n:]
    return in_one_buffer


# Rows of scratch statistics a small call keeps on the stack: one token up to a batch of
# 64 (1 KiB); more rows take a heap allocation (~60 ns with its release, a tenth of a
# (1, 768) kernel: the whole kernel call measured 580 -> 555 ns).
STACK_ROWS = 64
_STACK_DOUBLES = 2 * STACK_ROWS  # (a literal for stack_doubles)


@kernel(inline="always")
def scratch_stats(rows):
    """(mean, second) rows for rows_block: each a 1-D C-contiguous float64 array, as
    np.empty(rows) (the same type either way: one rows_block variant), on the stack for
    at most STACK_ROWS rows, else both in one allocation.  For serial calls only: a
    stack frame is the calling thread's."""
    if rows <= STACK_ROWS:
        both = carray(stack_doubles(_STACK_DOUBLES), (2, rows))
    else:
        both = np.empty((2, rows))
    return both[0], both[1]
