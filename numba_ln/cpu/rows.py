"""Kernels for rows laid out contiguously: LayerNorm, RMSNorm, their fused residual-add
forms and their statistics, for float32 and float64 data.

Arguments (outputs first, as llm.c's ``layernorm_forward``):

``y, s, x, r``  row views ``(buf, start, stride)``: row i of the array is
                ``buf[start + i*stride :][:cols]``, with ``buf`` a flat unit-stride array
                (C-contiguous data, sliced rows and negative row strides alike, one compiled
                specialization per dtype).  ``y`` is the output (None: statistics only),
                ``r`` the residual and ``s`` where ``s = x + r`` goes (both None, or both
                given: then s is normalized).
``w, b``        weight and bias, flat arrays of ``cols`` elements in the work type, or None.
``stats``       None, or ``(mean, second)``: float64 arrays, one element per row, that
                receive the mean (None for RMSNorm) and the variance (LayerNorm) or the mean
                square (RMSNorm); ``rstd = 1/sqrt(second + eps)``.
``cols, eps, centered``  row length; eps; LayerNorm (True) or RMSNorm (False).

Which of r, w, b, stats and y exist is a compile-time fact (None is a type of its own,
see ``_elements``).  Rows are normalized in the work type (float32 for float32 data):

    y = ((x - mean_hi) - mean_lo) * float32(rstd) * w + b

where ``mean_hi = float32(mean)`` and ``mean_lo = float32(mean - mean_hi)``.  The first
difference is exact far from zero (Sterbenz), so the float64 mean survives: the result
keeps ~4 float32 roundings of |y|.  Rows whose rstd leaves float32's range are normalized
in float64.
"""
import numpy as np
from numba import prange
from numba.extending import overload

from .. import _config
from ._elements import _in_place, store_stats
from ._jit import kernel
from ._moments import (finish_moments, finish_shifted, finish_squares, merge_moments,
                       piece_moments, row_moments, rstd_of)
from ._pointers import address, row_address
from ._rowops import add_row, normalize_into, normalizer, source
from ._sweep import sweep

RSTD_MAX = _config.NARROW_RSTD_MAX

# The steps a row goes through are functions of their own, each compiled once per array
# types and shared by every kernel variant with those types (inlined into each variant, a
# variant took 6 s to compile), taking row pointers (_pointers: one argument word per
# array instead of seven).  None uses Numba's reference counting (_nrt=False): they
# allocate nothing, and a row loop that passes arrays to inlined helpers otherwise pays
# two atomic updates per array per row (64 instead of 23 ns per 64-element row).


@kernel(_nrt=False)
def row_start(s, x, r, cols, centered):
    """(mean, second) of a row, forming s = x + r first if r is given (row pointers)."""
    return row_moments(add_row(s, x, r, cols), 0, cols, centered)


@kernel(_nrt=False)
def row_finish(src, cols, k, s1, s2, centered):
    """(mean, second) of the row src[:cols] from the sums a sweep returned."""
    if centered:
        mean, m2 = finish_shifted(src, 0, cols, k, s1, s2)
        return finish_moments(mean, m2, cols, True)
    return 0.0, finish_squares(src, 0, cols, s2) / cols


@kernel(_nrt=False)
def row_end(y, src, cols, mean, rstd, w, b):
    """The row src[:cols] normalized into y (row pointers; y None: nothing)."""
    normalize_into(y, src, cols, mean, rstd, w, b)


@kernel(_nrt=False)
def rows_block(y, s, x, r, w, b, stats, cols, eps, centered, first, last):
    """Rows first..last-1, the body of every row kernel: the statistics of the first row,
    then one fused sweep per row (_sweep: row i normalized while row i+1 is summed)."""
    wp, bp = address(w, 0), address(b, 0)
    mean, second = row_start(row_address(s, first, 0), row_address(x, first, 0),
                             row_address(r, first, 0), cols, centered)
    for i in range(first, last):
        store_stats(stats, i, mean, second)
        rstd = rstd_of(second, eps)
        yp = row_address(y, i, 0)
        src = source(row_address(s, i, 0), row_address(x, i, 0), row_address(r, i, 0))
        if i + 1 == last:
            row_end(yp, src, cols, mean, rstd, wp, bp)
            break
        sp, xp, rp = (row_address(s, i + 1, 0), row_address(x, i + 1, 0),
                      row_address(r, i + 1, 0))
        if rstd < RSTD_MAX:
            hi, low, scale = normalizer(src, mean, rstd)
            k, s1, s2 = sweep(yp, src, hi, low, scale, wp, bp, xp, rp, sp, cols, centered)
            mean, second = row_finish(source(sp, xp, rp), cols, k, s1, s2, centered)
        else:  # normalized in float64 (see _rowops): no fused sweep
            row_end(yp, src, cols, mean, rstd, wp, bp)
            mean, second = row_start(sp, xp, rp, cols, centered)


@kernel()
def rows_serial(y, s, x, r, w, b, stats, rows, cols, eps, centered):
    rows_block(y, s, x, r, w, b, stats, cols, eps, centered, 0, rows)


@kernel(parallel=True)
def rows_parallel(y, s, x, r, w, b, stats, rows, cols, eps, centered, per_task):
    """Rows in parallel, per_task consecutive rows per task."""
    for t in prange((rows + per_task - 1) // per_task):
        first = np.int64(t) * per_task  # prange's index is unsigned
        rows_block(y, s, x, r, w, b, stats, cols, eps, centered, first,
                   min(rows, first + per_task))


def contiguous_view(a, cols):
    """The row view of a C-contiguous array (IN_PLACE stays IN_PLACE)."""


@overload(contiguous_view, inline="always")
def _contiguous_view(a, cols):
    if _in_place(a):
        return lambda a, cols: a
    # int64, not literal, zeros: the specialization other calls use
    return lambda a, cols: (a.reshape(-1), np.int64(0), np.int64(cols))


@kernel()
def rows_contiguous(y, x, w, b, eps, centered):
    """rows_serial for the commonest small call: C-contiguous x and y (or IN_PLACE) of any
    rank (one specialization per rank), normalized over the last axis, no residual, no
    statistics.  Few, plain arguments: Numba's dispatcher types a tuple far more slowly
    than an array, and flattening in here saves two reshapes in Python."""
    cols = x.shape[-1]
    rows_block(contiguous_view(y, cols), None, contiguous_view(x, cols), None, w, b, None,
               cols, eps, centered, np.int64(0), x.size // cols)


@kernel()
def rows_contiguous_add(y, s, x, r, w, b, eps, centered):
    """rows_contiguous for the fused residual forms: s = x + r (s may be IN_PLACE: into r),
    y = norm(s); all arrays C-contiguous of x's shape."""
    cols = x.shape[-1]
    rows_block(contiguous_view(y, cols), contiguous_view(s, cols), contiguous_view(x, cols),
               contiguous_view(r, cols), w, b, None, cols, eps, centered, np.int64(0),
               x.size // cols)


# --- few, long rows ---------------------------------------------------------------------------

@kernel(_nrt=False)
def split_moments(s, x, r, partial, cols, width, chunks, centered, t):
    """Partial statistics of piece t (row t // chunks, columns of width `width`)."""
    i, c = divmod(t, chunks)
    lo = min(cols, c * width)
    hi = min(cols, lo + width)
    if hi > lo:
        src = add_row(row_address(s, i, lo), row_address(x, i, lo), row_address(r, i, lo),
                      hi - lo)
        partial[t, 0], partial[t, 1] = piece_moments(src, 0, hi - lo, centered)


@kernel(_nrt=False)
def split_normalize(y, s, x, r, w, b, center, rstd, cols, width, chunks, t):
    i, c = divmod(t, chunks)
    lo = min(cols, c * width)
    hi = min(cols, lo + width)
    if hi > lo:
        src = source(row_address(s, i, lo), row_address(x, i, lo), row_address(r, i, lo))
        normalize_into(row_address(y, i, lo), src, hi - lo, center[i], rstd[i], address(w, lo),
                       address(b, lo))


@kernel(parallel=True)
def rows_split(y, s, x, r, w, b, stats, rows, cols, eps, centered, chunks):
    """Few, long rows: each row is cut into `chunks` pieces reduced in parallel, their
    statistics merged (Chan's formula), then the pieces normalized in parallel."""
    width = (cols + chunks - 1) // chunks
    tasks = rows * chunks
    partial = np.empty((tasks, 2))
    for t in prange(tasks):
        split_moments(s, x, r, partial, cols, width, chunks, centered, np.int64(t))
    center = np.empty(rows)
    rstd = np.empty(rows)
    for i in range(rows):
        mean, m2 = partial[i * chunks, 0], partial[i * chunks, 1]
        count = min(cols, width)
        for c in range(1, chunks):
            n = min(cols, (c + 1) * width) - min(cols, c * width)
            if n > 0:
                mean, m2 = merge_moments(count, mean, m2, n, partial[i * chunks + c, 0],
                                         partial[i * chunks + c, 1], centered)
                count += n
        mean, second = finish_moments(mean, m2, cols, centered)
        center[i] = mean
        rstd[i] = rstd_of(second, eps)
        store_stats(stats, i, mean, second)
    for t in prange(tasks):
        split_normalize(y, s, x, r, w, b, center, rstd, cols, width, chunks, np.int64(t))
