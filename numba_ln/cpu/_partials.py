"""The backward's partial rows of dweight and dbias (backward.py): each task sums its rows'
dy * xhat and dy into rows of its own, and the tasks' rows are added in task order, so the
parameter gradients are bitwise the same for any thread count.

The threaded row kernel (backward.backward_rows), the small-call kernels
(small_backward.py) and a user's @njit code (_njit/backward.py) each allocate their
partial rows, run the tasks and add the rows into the gradients in compiled code, with
these helpers: one layout and one order of additions for all.  (Done from Python, the
two allocations and the addition cost ~4 us of a ~30 us (64, 1024) threaded backward.)
Calls below the serial bound run their few tasks from Python (backward.run_backward: no
kernel of its own to compile, ~2 s a variant on first use), with NumPy's twins of the
two helpers, ``numpy_partial_rows`` and ``numpy_param_grad``: the same rows, the same
additions, the same bits.

Layout: per task, dweight's row then dbias's, ``partial_stride`` apart, every row on a
cache line (``rows_layout``, ``to_line``), in float64 (the totals) and in the work type (a
few rows' sums, flushed into the totals: backward.py's PARAM_ROWS).
"""
import numpy as np
from numba.extending import overload, register_jitable
from numba.np.numpy_support import as_dtype

from ._elements import _absent
from ._stream import LINE


@register_jitable
def partial_stride(cols, itemsize):
    """Elements from one parameter's partial row to the next's (at least cols): the rows
    start half a page apart modulo 4 KiB, since dweight's row stored and dbias's loaded at
    the same page offset would stall every iteration of the sweep (4K aliasing; measured
    1.6 times as slow at (4096, 1024) with unpadded rows)."""
    return cols + (2048 - cols * itemsize) % 4096 // itemsize


@register_jitable
def rows_layout(tasks, cols, itemsize, with_bias):
    """(elements to allocate, step from a task's rows to the next task's, offset of dbias's
    row from dweight's) for the tasks' partial rows, with room to start them on a cache
    line (``to_line``).  One parameter (RMSNorm): rows of whole cache lines."""
    if with_bias:
        stride = partial_stride(cols, itemsize)  # (a multiple of LINE bytes)
        return tasks * 2 * stride + LINE // itemsize, 2 * stride, stride
    step = cols + (-cols * itemsize) % LINE // itemsize
    return tasks * step + LINE // itemsize, step, 0


@register_jitable
def to_line(address, itemsize):
    """Elements from address to the next cache-line boundary (0 on one): where the partial
    rows start.  Numba's np.empty aligns to 32 bytes and NumPy's to 16, and rows 32 bytes
    off a line split every 64-byte load and store of the backward's sweep in two
    (measured, 2 threads, the same bits: layer_norm_backward at (4096, 768) 0.93 and
    (4096, 1024) 0.94-0.96 of the time, (256, 1024) 0.95; rms_norm_backward (64, 1024)
    0.92)."""
    # (the address as int64: Numba makes a uint64 mixed with an int64 a float64)
    return -np.int64(address) % LINE // itemsize


def partial_rows(tasks, cols, like, dweight, dbias):
    """The tasks' partial rows of dweight and dbias in the dtype of the scalar ``like``, as
    row views ``(buf, start, step)`` (task t's row is ``buf[start + t*step:][:cols]``);
    dbias's None when dbias is absent (RMSNorm), both None when dweight is (no parameter
    gradients)."""


# (compiled on its own, not inline: inlined into backward_rows, Numba's parallel array
# analysis fails an assertion on the tuple of views -- numba 0.68)
@overload(partial_rows)
def _partial_rows(tasks, cols, like, dweight, dbias):
    if _absent(dweight):
        return lambda tasks, cols, like, dweight, dbias: (None, None)
    dtype = as_dtype(like)
    item = dtype.itemsize
    if _absent(dbias):
        def alone(tasks, cols, like, dweight, dbias):
            size, step, _ = rows_layout(tasks, cols, item, False)
            buf = np.empty(size, dtype)
            return (buf, to_line(buf.ctypes.data, item), step), None
        return alone

    def side_by_side(tasks, cols, like, dweight, dbias):
        size, step, second = rows_layout(tasks, cols, item, True)
        buf = np.empty(size, dtype)
        start = to_line(buf.ctypes.data, item)
        return (buf, start, step), (buf, start + second, step)
    return side_by_side


def param_grad(view, tasks, cols, out):
    """The tasks' float64 partial rows added in task order into out (a parameter gradient,
    cast to its dtype on the store); nothing for an absent view."""


@overload(param_grad)
def _param_grad(view, tasks, cols, out):
    if _absent(view):
        return lambda view, tasks, cols, out: None

    def total(view, tasks, cols, out):
        # Added task by task into task 0's row (scratch), one vectorized loop per task:
        # the additions of 0.0 + row 0 + row 1 + ... in that order (0.0 + turns a -0.0
        # sum into 0.0).  (A loop over the tasks inside one over the columns does not
        # vectorize: it cost 0.66 us of a (1, 768) call's 1.76 us in compiled code.)
        # (rows as slices: an index start + j may be negative to Numba, whose wraparound
        # check kept these loops scalar)
        if tasks == 0:  # (no rows: zeros)
            for j in range(cols):
                out[j] = 0.0
            return
        buf, start, step = view
        first = buf[start:start + cols]
        for t in range(1, tasks):
            row = buf[start + t * step:start + t * step + cols]
            for j in range(cols):
                first[j] += row[j]
        for j in range(cols):
            out[j] = 0.0 + first[j]
    return total


def numpy_partial_rows(tasks, cols, dtype, with_bias):
    """partial_rows' views, from NumPy (backward.run_backward's tasks run from Python)."""
    item = np.dtype(dtype).itemsize
    size, step, second = rows_layout(tasks, cols, item, with_bias)
    buf = np.empty(size, dtype)
    start = to_line(buf.ctypes.data, item)
    return (buf, start, step), ((buf, start + second, step) if with_bias else None)


def numpy_param_grad(view, tasks, cols, out):
    """param_grad in NumPy: the same additions in the same order."""
    buf, start, step = view
    total = buf[start:start + cols]
    for t in range(1, tasks):
        total += buf[start + t * step:start + t * step + cols]
    np.add(0.0, total, out=out)  # (rounded once to out's dtype)
