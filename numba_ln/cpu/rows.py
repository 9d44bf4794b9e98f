"""Kernels for rows laid out contiguously: row i of an array is ``buf[start + i*stride :][:cols]``.

Every array argument comes as a flat 1-D buffer plus ``at = (start, row_stride)`` in
elements, which covers C-contiguous data, sliced rows and negative row strides with one
compiled specialization per dtype, and keeps the inner loops unit-stride so they vectorize.

One kernel serves LayerNorm, RMSNorm and their fused residual-add forms:

- ``r`` (residual) non-empty: ``s = x + r`` is written to ``s`` and normalized;
- ``centered``: LayerNorm (subtract the mean) or RMSNorm (do not);
- ``affine = (weight, bias)``, either may be empty (absent: no multiply, no add);
- ``y`` empty: statistics only (``moments``);
- ``stats = (mean, second)`` float64 per row, written when non-empty; ``second`` is the
  variance (LayerNorm) or the mean square (RMSNorm), ``rstd = 1/sqrt(second + eps)``.
"""
import numpy as np
from numba import prange

from .. import _config
from ._jit import kernel
from ._moments import chan_merge, normalizer, range_moments


@kernel(inline="always")
def scale_shift(y, y_lo, src, lo, count, center, scale, affine, w_lo):
    """y[y_lo:][:count] = (src[lo:][:count] - center) * scale * weight + bias, in float64."""
    # Unsigned indices: Numba then skips its negative-index wraparound, which would stop
    # vectorization, without creating slices (each costs reference-count updates).
    weight, bias = affine
    yo, so, wo = np.uint64(y_lo), np.uint64(lo), np.uint64(w_lo)
    n = np.uint64(count)
    if weight.size and bias.size:
        for j in range(n):
            y[yo + j] = (src[so + j] - center) * scale * weight[wo + j] + bias[wo + j]
    elif weight.size:
        for j in range(n):
            y[yo + j] = (src[so + j] - center) * scale * weight[wo + j]
    elif bias.size:
        for j in range(n):
            y[yo + j] = (src[so + j] - center) * scale + bias[wo + j]
    else:
        for j in range(n):
            y[yo + j] = (src[so + j] - center) * scale


@kernel(inline="always")
def add_into(s, s_lo, x, x_lo, r, r_lo, count):
    """s[s_lo:][:count] = x[x_lo:][:count] + r[r_lo:][:count] in the arrays' dtype."""
    out = s[s_lo:s_lo + count]
    a = x[x_lo:x_lo + count]
    b = r[r_lo:r_lo + count]
    for j in range(count):
        out[j] = a[j] + b[j]


@kernel(inline="always")
def normalize_row(y, y_lo, src, lo, cols, affine, eps, centered, stats, i):
    mean, m2 = range_moments(src, lo, lo + cols)
    center, scale, second = normalizer(mean, m2, cols, eps, centered)
    if y.size:
        scale_shift(y, y_lo, src, lo, cols, center, scale, affine, 0)
    if stats[0].size:
        stats[0][i] = mean
        stats[1][i] = second


@kernel(inline="always")
def row_task(y, y_at, s, s_at, x, x_at, r, r_at, cols, affine, eps, centered, stats, i):
    y_lo = y_at[0] + i * y_at[1]
    x_lo = x_at[0] + i * x_at[1]
    if r.size:
        s_lo = s_at[0] + i * s_at[1]
        add_into(s, s_lo, x, x_lo, r, r_at[0] + i * r_at[1], cols)
        normalize_row(y, y_lo, s, s_lo, cols, affine, eps, centered, stats, i)
    else:
        normalize_row(y, y_lo, x, x_lo, cols, affine, eps, centered, stats, i)


@kernel(inline="always")
def plain_row_task(y, y_at, x, x_at, cols, affine, eps, centered, i):
    """row_task without residual or statistics: the common call, kept free of their
    branches (rows of 64 elements: 35 instead of 58 ns per row)."""
    lo = x_at[0] + i * x_at[1]
    mean, m2 = range_moments(x, lo, lo + cols)
    center, scale, _ = normalizer(mean, m2, cols, eps, centered)
    scale_shift(y, y_at[0] + i * y_at[1], x, lo, cols, center, scale, affine, 0)


@kernel(fastmath=_config.NORMALIZE_FASTMATH)
def rows_serial(y, y_at, s, s_at, x, x_at, r, r_at, rows, cols, affine, eps, centered, stats):
    if y.size and not r.size and not stats[0].size:
        for i in range(rows):
            plain_row_task(y, y_at, x, x_at, cols, affine, eps, centered, i)
        return
    for i in range(rows):
        row_task(y, y_at, s, s_at, x, x_at, r, r_at, cols, affine, eps, centered, stats, i)


@kernel(fastmath=_config.NORMALIZE_FASTMATH)
def rows_contiguous(y, x, weight, bias, eps, centered):
    """rows_serial for the commonest small call: C-contiguous x and y of any rank (one
    specialization per rank), normalized over the last axis, no residual, no statistics.
    Few, plain arguments: Numba's dispatcher types a nested tuple far more slowly than an
    array, and flattening in here saves two reshapes in Python; at (1, 768) the call costs
    ~0.8 us against ~1.4 us for rows_serial from Python."""
    cols = x.shape[-1]
    zero = np.int64(0)  # int64, not literal, tuples: the specialization Python calls use
    at = (zero, np.int64(cols))
    flat_x = x.reshape(-1)
    flat_y = y.reshape(-1)
    rows_serial(flat_y, at, flat_y[:0], (zero, zero), flat_x, at, flat_x[:0], (zero, zero),
                flat_x.size // cols, cols, (weight, bias), eps, centered,
                (np.empty(0), np.empty(0)))


@kernel(fastmath=_config.NORMALIZE_FASTMATH)
def rows_contiguous_add(y, s, x, r, weight, bias, eps, centered):
    """rows_contiguous for the fused residual forms: s = x + r, y = norm(s); all four
    arrays C-contiguous of x's shape (a token's add-and-norm at (1, 768) in ~1 us)."""
    cols = x.shape[-1]
    zero = np.int64(0)
    at = (zero, np.int64(cols))
    flat_x = x.reshape(-1)
    rows_serial(y.reshape(-1), at, s.reshape(-1), at, flat_x, at, r.reshape(-1), at,
                flat_x.size // cols, cols, (weight, bias), eps, centered,
                (np.empty(0), np.empty(0)))


@kernel(parallel=True, fastmath=_config.NORMALIZE_FASTMATH)
def rows_parallel(y, y_at, s, s_at, x, x_at, r, r_at, rows, cols, affine, eps, centered, stats):
    if y.size and not r.size and not stats[0].size:
        for i in prange(rows):
            plain_row_task(y, y_at, x, x_at, cols, affine, eps, centered, i)
        return
    for i in prange(rows):
        row_task(y, y_at, s, s_at, x, x_at, r, r_at, cols, affine, eps, centered, stats, i)


@kernel(inline="always")
def chunk_moments(s, s_at, x, x_at, r, r_at, i, lo, hi):
    """(mean, M2) of columns lo:hi of row i, forming s = x + r there first if r is given."""
    x_lo = x_at[0] + i * x_at[1]
    if r.size:
        s_lo = s_at[0] + i * s_at[1]
        add_into(s, s_lo + lo, x, x_lo + lo, r, r_at[0] + i * r_at[1] + lo, hi - lo)
        return range_moments(s, s_lo + lo, s_lo + hi)
    return range_moments(x, x_lo + lo, x_lo + hi)


@kernel(inline="always")
def chunk_normalize(y, y_at, s, s_at, x, x_at, r, i, lo, hi, center, scale, affine):
    y_lo = y_at[0] + i * y_at[1] + lo
    if r.size:
        scale_shift(y, y_lo, s, s_at[0] + i * s_at[1] + lo, hi - lo, center, scale, affine, lo)
    else:
        scale_shift(y, y_lo, x, x_at[0] + i * x_at[1] + lo, hi - lo, center, scale, affine, lo)


@kernel(parallel=True, fastmath=_config.NORMALIZE_FASTMATH)
def rows_split(y, y_at, s, s_at, x, x_at, r, r_at, rows, cols, affine, eps, centered, stats,
               chunks):
    """Few, long rows: each row is cut into `chunks` pieces reduced in parallel, their
    (mean, M2) merged with Chan's formula, then the pieces normalized in parallel."""
    width = (cols + chunks - 1) // chunks
    tasks = rows * chunks
    partial = np.empty((tasks, 2))
    for t in prange(tasks):
        i, c = divmod(np.int64(t), chunks)  # prange's index is unsigned
        lo = min(cols, c * width)
        hi = min(cols, lo + width)
        if hi > lo:
            partial[t, 0], partial[t, 1] = chunk_moments(s, s_at, x, x_at, r, r_at, i, lo, hi)
    center = np.empty(rows)
    scale = np.empty(rows)
    for i in range(rows):
        mean = partial[i * chunks, 0]
        m2 = partial[i * chunks, 1]
        count = min(cols, width)
        for c in range(1, chunks):
            lo = min(cols, c * width)
            n = min(cols, lo + width) - lo
            if n > 0:
                mean, m2 = chan_merge(count, mean, m2, n, partial[i * chunks + c, 0],
                                      partial[i * chunks + c, 1])
                count += n
        center[i], scale[i], second = normalizer(mean, m2, cols, eps, centered)
        if stats[0].size:
            stats[0][i] = mean
            stats[1][i] = second
    if y.size:
        for t in prange(tasks):
            i, c = divmod(np.int64(t), chunks)  # prange's index is unsigned
            lo = min(cols, c * width)
            hi = min(cols, lo + width)
            if hi > lo:
                chunk_normalize(y, y_at, s, s_at, x, x_at, r, i, lo, hi, center[i], scale[i],
                                affine)
