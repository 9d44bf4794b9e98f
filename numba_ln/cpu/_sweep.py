"""The fused sweep: one pass over a row that normalizes it and, in the same loop, forms
and sums the next row.

Normalizing a row reads it from L1 (its statistics were just computed) and writes y;
summing the next row reads it from memory.  Done in separate passes, a kernel alternates
between a phase that only loads from memory and one that only stores, and the memory
system idles in each; fused, every iteration loads the next row and stores the current
one, as a copy does.  Measured with 2 threads against running them one after the other:
(4096, 768) 0.53 instead of 0.36 of the speed line, (4096, 1024) 0.71 instead of 0.52,
(65536, 64) 0.46 instead of 0.32, (4096, 4096) and (16384, 1024) 0.78 instead of 0.71-0.74.

The sums are _moments' (shifted by the head mean of the next row, float32 partials per
CHUNK, float64 totals); rows.py finishes them with ``_moments.finish_shifted``.
"""
import numpy as np
from numba.extending import overload

from .. import _config
from ._elements import _absent, _in_place, affine, exact_sub, work
from ._jit import kernel

CHUNK = _config.CHUNK
HEAD = _config.HEAD


def next_value(x, r, s, j):
    """Element j of the next row: x's, or x + r, which is also stored into s."""


@overload(next_value, inline="always")
def _next_value(x, r, s, j):
    if _absent(r):
        return lambda x, r, s, j: x[j]
    if _in_place(s):
        def add_into_r(x, r, s, j):
            v = x[j] + r[j]
            r[j] = v
            return v
        return add_into_r

    def add(x, r, s, j):
        v = x[j] + r[j]
        s[j] = v
        return v
    return add


def put(y, src, hi, low, scale, w, b, j):
    """y[j] = ((src[j] - hi) - low) * scale * w[j] + b[j]; nothing when y is None."""


@overload(put, inline="always")
def _put(y, src, hi, low, scale, w, b, j):
    if _absent(y):
        return lambda y, src, hi, low, scale, w, b, j: None
    if _in_place(y):
        def store_over(y, src, hi, low, scale, w, b, j):
            t = exact_sub(exact_sub(src[j], hi), low) * scale
            src[j] = affine(t, w, b, j)
        return store_over

    def store(y, src, hi, low, scale, w, b, j):
        t = exact_sub(exact_sub(src[j], hi), low) * scale
        y[j] = affine(t, w, b, j)
    return store


def next_head(x, r, n):
    """Mean of the first n elements of the next row (x + r with a residual): its shift."""


@overload(next_head, inline="always")
def _next_head(x, r, n):
    if _absent(r):
        def head(x, r, n):
            h = work(x, 0.0)
            for j in range(n):
                h += x[j]
            return work(x, h / n)
        return head

    def head_sum(x, r, n):
        h = work(x, 0.0)
        for j in range(n):
            h += x[j] + r[j]
        return work(x, h / n)
    return head_sum


@kernel(inline="always")
def shifted_part(y, src, hi, low, scale, w, b, x, r, s, k, start, stop):
    a1 = a2 = work(x, 0.0)
    for j in range(start, stop):
        d = exact_sub(next_value(x, r, s, j), k)
        a1 += d
        a2 += d * d
        put(y, src, hi, low, scale, w, b, j)
    return a1, a2


@kernel(inline="always")
def squares_part(y, src, hi, low, scale, w, b, x, r, s, start, stop):
    a2 = work(x, 0.0)
    for j in range(start, stop):
        v = next_value(x, r, s, j)
        a2 += v * v
        put(y, src, hi, low, scale, w, b, j)
    return a2


@kernel(_nrt=False)
def sweep(y, src, hi, low, scale, w, b, x, r, s, cols, centered):
    """Normalize the row src[:cols] into y (None: no output) while summing the next row,
    x[:cols] (+ r[:cols], stored into s).  All arguments are row pointers (_pointers) or
    None.  Returns (k, S1, S2): the shifted sums about k for LayerNorm, (0, 0, sum of
    squares) for RMSNorm, in float64."""
    n = np.uint64(cols)
    t1 = t2 = 0.0
    start = np.uint64(0)
    if centered:
        k = next_head(x, r, np.uint64(min(cols, HEAD)))
        while start < n:
            stop = min(n, start + np.uint64(CHUNK))
            a1, a2 = shifted_part(y, src, hi, low, scale, w, b, x, r, s, k, start, stop)
            t1 += a1
            t2 += a2
            start = stop
        return 1.0 * k, t1, t2
    while start < n:
        stop = min(n, start + np.uint64(CHUNK))
        t2 += squares_part(y, src, hi, low, scale, w, b, x, r, s, start, stop)
        start = stop
    return 0.0, 0.0, t2
