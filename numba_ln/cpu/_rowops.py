"""Operations on one row, given typed pointers to its start (see _pointers): forming
``s = x + r`` and normalizing a span.

Rows are normalized in the work type (float32 for float32 data):

    y = ((x - mean_hi) - mean_lo) * float32(rstd) * w + b

with ``mean_hi = float32(mean)`` and ``mean_lo = float32(mean - mean_hi)``.  The first
difference is exact far from zero (Sterbenz), so the float64 mean survives; what remains
is ~4 float32 roundings of the result.  A row whose rstd leaves float32's range is
normalized in float64.
"""
import numpy as np
from numba.extending import overload

from .. import _config
from ._elements import _absent, _in_place, affine, exact_sub, work
from ._jit import kernel

RSTD_MAX = _config.NARROW_RSTD_MAX


def source(s, x, r):
    """The row that is normalized: s when there is a residual (r when s is IN_PLACE),
    else x."""


@overload(source, inline="always")
def _source(s, x, r):
    if _absent(r):
        return lambda s, x, r: x
    if _in_place(s):
        return lambda s, x, r: r
    return lambda s, x, r: s


def add_row(s, x, r, n):
    """s[:n] = x[:n] + r[:n] (nothing without a residual); returns source(s, x, r)."""


@overload(add_row, inline="always")
def _add_row(s, x, r, n):
    if _absent(r):
        return lambda s, x, r, n: x
    if _in_place(s):
        def add_into_r(s, x, r, n):
            for j in range(np.uint64(n)):
                r[j] = x[j] + r[j]
            return r
        return add_into_r

    def add(s, x, r, n):
        for j in range(np.uint64(n)):
            s[j] = x[j] + r[j]
        return s
    return add


@kernel(inline="always")
def normalizer(src, center, rstd):
    """(hi, lo, scale) of a row in src's work type: y = ((x - hi) - lo) * scale ..."""
    hi = work(src, center)
    return hi, work(src, center - hi), work(src, rstd)


@kernel(inline="always")
def normalize_span(y, src, n, center, rstd, w, b):
    """y[:n] = (src[:n] - center) * rstd * w[:n] + b[:n]."""
    count = np.uint64(n)
    if rstd < RSTD_MAX:
        hi, low, scale = normalizer(src, center, rstd)
        for j in range(count):
            t = exact_sub(exact_sub(src[j], hi), low) * scale
            y[j] = affine(t, w, b, j)
    else:  # float32 would overflow: (x - mean) * rstd in float64 (NaN rows too)
        for j in range(count):
            t = exact_sub(1.0 * src[j], center) * rstd
            y[j] = affine(t, w, b, j)


def normalize_into(y, src, n, center, rstd, w, b):
    """normalize_span into y, over src for IN_PLACE, nothing when y is None."""


@overload(normalize_into, inline="always")
def _normalize_into(y, src, n, center, rstd, w, b):
    if _absent(y):
        return lambda y, src, n, center, rstd, w, b: None
    if _in_place(y):
        return lambda y, src, n, center, rstd, w, b: normalize_span(src, src, n, center, rstd,
                                                                    w, b)
    return lambda y, src, n, center, rstd, w, b: normalize_span(y, src, n, center, rstd, w, b)
