"""Operations on one row, given typed pointers to its start (see _pointers): which row is
normalized, and normalizing a span of it.

Rows are normalized in the work type (float32 for float32 data):

    y = ((x - mean_hi) - mean_lo) * float32(rstd) * w + b

with ``mean_hi = float32(mean)`` and ``mean_lo = float32(mean - mean_hi)``.  The first
difference is exact far from zero (Sterbenz), so the float64 mean survives; what remains
is ~4 float32 roundings of the result.  A row whose rstd leaves [2**-96, 2**96) is
normalized in float64 (fits_float32).
"""
import numpy as np
from numba.core.imputils import impl_ret_borrowed
from numba.extending import intrinsic

from .. import _config
from ._elements import _absent, _in_place, affine, exact_sub, store_result, work
from ._jit import kernel
from ._vector_width import optimize_for_size
from ._storage import load
from ._sweep import normalize_chunk

RSTD_MIN, RSTD_MAX = _config.NARROW_RSTD_MIN, _config.NARROW_RSTD_MAX


@kernel(inline="always")
def fits_float32(rstd):
    """Whether a row of this rstd is normalized in float32: float32(rstd) a normal number,
    and neither x - mean (a spread near float32's maximum: 3.4e38 - (-3.4e38) is inf)
    nor (x - mean) * rstd overflows.  False for NaN: such rows go to float64 too."""
    return RSTD_MIN <= rstd < RSTD_MAX


@intrinsic
def source(typingctx, s, x, r):
    """The row that is normalized: s when there is a residual (r when s is IN_PLACE),
    else x (row pointers; an intrinsic: no compilation of its own)."""
    k = 1 if _absent(r) else 2 if _in_place(s) else 0
    chosen = (s, x, r)[k]

    def codegen(context, builder, sig, args):
        return impl_ret_borrowed(context, builder, chosen, args[k])
    return chosen(s, x, r), codegen


@kernel(inline="always")
def normalizer(src, center, rstd):
    """(hi, lo, scale) of a row in src's work type: y = ((x - hi) - lo) * scale ..."""
    hi = work(src, center)
    return hi, work(src, center - hi), work(src, rstd)


@kernel(inline="always")
def normalize_span(y, src, n, center, rstd, w, b):
    """y[:n] = (src[:n] - center) * rstd * w[:n] + b[:n] (y IN_PLACE: over src)."""
    if fits_float32(rstd):
        hi, low, scale = normalizer(src, center, rstd)
        normalize_chunk(y, src, hi, low, scale, w, b, np.uint64(0), np.uint64(n))
    else:  # float32 would overflow: (x - mean) * rstd in float64 (NaN rows too)
        normalize_wide(y, src, n, center, rstd, w, b)


@kernel()
def normalize_wide(y, src, n, center, rstd, w, b):
    for j in range(np.uint64(n)):
        put_wide(y, src, center, rstd, w, b, j)


@kernel(inline="always")
def put_wide(y, src, center, rstd, w, b, j):
    """y[j] = (src[j] - center) * rstd * w[j] + b[j] in float64 (over src for IN_PLACE)."""
    store_result(y, src, j, affine(exact_sub(1.0 * load(src, j), center) * rstd, w, b, j))


# (compiled for size: the forward's float64 fallback, for rows whose rstd leaves float32's
# range, linked into every kernel variant that reaches it.  Seven cold small-call forms,
# three interleaved pairs, with its twin in _backward_rows: 27.1 -> 25.7 s to compile; the
# fallback as fast as before: (4096, 768) float32 of scale 1e-25, 2 threads, 1.00x / 0.98x
# forward / backward, the same bits)
optimize_for_size(f"{__name__}.normalize_wide")
