"""Normalizing rows whose statistics were computed elsewhere: the second pass of a row that
is split over several blocks (numba_ln/dask/, when a normalized axis is chunked).

Each block of such a row is normalized with the row's merged mean and rstd, given per row
as float64 arrays, by the same per-row step as every row kernel (_rowops.normalize_span:
``((x - mean_hi) - mean_lo) * float32(rstd) * w + b`` in the work type, float64 where rstd
leaves float32's range).  RMSNorm passes ``center`` = 0, which makes that ``x * rstd * w``
exactly as in rows.py.

Arguments as in rows.py: ``y`` and ``x`` row views ``(buf, start, stride)`` of ``rows``
rows of ``cols`` elements (y IN_PLACE: over x), ``w``/``b`` flat work-type arrays of
``cols`` elements or None, ``center``/``rstd`` float64 arrays of ``rows`` elements.
"""
import numpy as np
from numba import prange

from ._elements import smaller
from ._jit import kernel
from ._pointers import address, row_address
from ._rowops import normalize_span


@kernel(_nrt=False)
def given_block(y, x, w, b, center, rstd, cols, first, last):
    """Rows first..last-1 normalized with their given center and rstd."""
    wp, bp = address(w, 0), address(b, 0)
    for i in range(first, last):
        normalize_span(row_address(y, i, 0), row_address(x, i, 0), cols, center[i], rstd[i],
                       wp, bp)


@kernel(parallel=True)
def given_parallel(y, x, w, b, center, rstd, rows, cols, per_task):
    """Rows in parallel, per_task consecutive rows per task (the same bits as serial: each
    row is normalized on its own)."""
    for t in prange((rows + per_task - 1) // per_task):
        first = np.int64(t) * per_task  # prange's index is unsigned
        given_block(y, x, w, b, center, rstd, cols, first, smaller(rows, first + per_task))
