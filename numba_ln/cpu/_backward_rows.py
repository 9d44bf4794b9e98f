"""Row functions of the backward kernels (backward.py): one row's dx and parameter-gradient
terms, and the sums its dx needs, over typed row pointers (_pointers).

For one row, in the work type, with xhat = ((x - hi) - lo) * scale (LayerNorm: hi, lo the
float32 split of the float64 mean, as _rowops normalizes; scale = rstd) or x * scale
(RMSNorm):

    dx  = (dy * scale) * w - k1 - xhat * k2   (+ grad_residual)
    sw += dy * xhat      sb += dy             (the task's partial rows, work type)

which is rstd * (g - mean(g) - xhat * mean(g * xhat)) with k1 = rstd * mean(g) (0 for
RMSNorm) and k2 = rstd * mean(g * xhat): each term rounded to its own magnitude, so the
result keeps a few work-type roundings of the largest term.  The means come from the
sums of the row, taken while the *previous* row's dx is written (``sweep``; a task's first
row is summed on its own, ``lead``).  About d = x - center,

    Sg = sum(g),  Sgd = sum(g * d),  and S1 = sum(d), S2 = sum(d * d)

where center is the forward's shift k when the statistics are recomputed (S1, S2 are
then _moments' shifted sums), or the given mean rounded to the work type (S1 and S2
unused: _backward_stats.sums_center says why they are taken).  RMSNorm: d = x, no Sg, no
S1.  backward.py turns these into k1, k2.

Fastmath as in the forward (see _config): the functions that sum (``lead``, ``sweep``,
``row_gxhat``) compile with REDUCE_FASTMATH, the others with contract only, and every
subtraction whose order matters goes through ``exact_sub``.  Each is compiled once per
array types and shared by every kernel variant, without reference counting (_nrt=False),
as rows.py explains.  ``ln_dx_at`` and ``rms_dx_at`` are ordinary compiled functions,
which LLVM inlines, keeping their contract-only flags (inlined by Numba they doubled the
compile time of a kernel variant: 4.3 s against 2.1 s of CPU); the element helpers they
and the sums use (``put_dx``, ``add_params``, ``moments_add`` ... in
_backward_elements.py) are intrinsics, whose instructions take the flags of the function
they are written into.  The loops that sum stay inlined by Numba, so that they get their
caller's REDUCE flags.

Measured per element on the development machine, one thread, float32 LayerNorm with a
weight, (64, 1024) in L1: 0.13 ns without parameter gradients, 0.24 ns with them (float32
partial rows flushed every 8 rows; 0.28 ns with float64 partial rows in the sweep, which
LLVM then vectorizes 8 float32 lanes wide instead of 16).
"""
import numpy as np

from .. import _config
from ._backward_elements import add_params, minus_k1, moments_add, put_dx, scaled
from ._elements import exact_sub, smaller, work
from ._jit import kernel
from ._vector_width import optimize_for_size
from ._storage import load

CHUNK = _config.CHUNK
REDUCE = _config.REDUCE_FASTMATH


# --- one element of dx (work type) ------------------------------------------------------------

@kernel()
def ln_dx_at(dx, dy, x, w, gr, sw, sb, hi, lo, scale, k1, k2, j):
    dyj = load(dy, j)
    xh = exact_sub(exact_sub(load(x, j), hi), lo) * scale
    put_dx(dx, dy, gr, j, minus_k1(dyj * scale, w, j, k1) - xh * k2)
    add_params(sw, sb, j, dyj, xh)


@kernel()
def rms_dx_at(dx, dy, x, w, gr, sw, sb, scale, k2, j):
    dyj = load(dy, j)
    xh = load(x, j) * scale
    put_dx(dx, dy, gr, j, scaled(dyj * scale, w, j) - xh * k2)
    add_params(sw, sb, j, dyj, xh)


# --- chunk loops (inlined into the functions below, which give them their flags) --------------

@kernel(inline="always")
def ln_terms(a1, a2, ag, agd, dy, x, w, center, j):
    """The sums of element j (module docstring) added to the accumulators."""
    d = exact_sub(load(x, j), center)
    g = scaled(load(dy, j), w, j)
    a1, a2 = moments_add(a1, a2, d)
    return a1, a2, ag + g, agd + g * d


@kernel(inline="always")
def rms_terms(a2, agd, dy, x, w, j):
    v = load(x, j)
    a2 = moments_add(a2, a2, v)[1]  # S2 only: RMSNorm has no S1
    return a2, agd + scaled(load(dy, j), w, j) * v


@kernel(inline="always")
def ln_sums_part(dy, x, w, center, start, stop):
    a1 = a2 = ag = agd = work(x, 0.0)
    for j in range(start, stop):
        a1, a2, ag, agd = ln_terms(a1, a2, ag, agd, dy, x, w, center, j)
    return a1, a2, ag, agd


@kernel(inline="always")
def rms_sums_part(dy, x, w, start, stop):
    a2 = agd = work(x, 0.0)
    for j in range(start, stop):
        a2, agd = rms_terms(a2, agd, dy, x, w, j)
    return work(x, 0.0), a2, work(x, 0.0), agd


@kernel(inline="always")
def ln_sweep_part(dx, dy, x, w, gr, sw, sb, hi, lo, scale, k1, k2, dy2, x2, center2,
                  start, stop):
    a1 = a2 = ag = agd = work(x, 0.0)
    for j in range(start, stop):
        ln_dx_at(dx, dy, x, w, gr, sw, sb, hi, lo, scale, k1, k2, j)
        a1, a2, ag, agd = ln_terms(a1, a2, ag, agd, dy2, x2, w, center2, j)
    return a1, a2, ag, agd


@kernel(inline="always")
def rms_sweep_part(dx, dy, x, w, gr, sw, sb, scale, k2, dy2, x2, start, stop):
    a2 = agd = work(x, 0.0)
    for j in range(start, stop):
        rms_dx_at(dx, dy, x, w, gr, sw, sb, scale, k2, j)
        a2, agd = rms_terms(a2, agd, dy2, x2, w, j)
    return work(x, 0.0), a2, work(x, 0.0), agd


# --- row functions ----------------------------------------------------------------------------

# A summing loop (see _config.REDUCE_FASTMATH); n <= PIECE, the caller adds the pieces.
@kernel(fastmath=REDUCE, _nrt=False)
def lead(dy, x, w, center, n, centered):
    """(S1, S2, Sg, Sgd) of the piece x[:n], dy[:n] (module docstring): float64 totals of
    work-type chunk sums."""
    t1 = t2 = tg = tgd = 0.0
    start = np.uint64(0)
    end = np.uint64(n)
    while start < end:
        stop = smaller(end, start + np.uint64(CHUNK))
        if centered:
            a1, a2, ag, agd = ln_sums_part(dy, x, w, center, start, stop)
        else:
            a1, a2, ag, agd = rms_sums_part(dy, x, w, start, stop)
        t1 += a1
        t2 += a2
        tg += ag
        tgd += agd
        start = stop
    return t1, t2, tg, tgd


# A summing loop: one pass that writes this row's dx and sums the next row (as _sweep).
@kernel(fastmath=REDUCE, _nrt=False)
def sweep(row, sums, w, terms, following, n, centered):
    """dx (and partials) of the piece dy[:n], x[:n] of row = (dx, dy, x, gr), into the
    partial rows sums = (sw, sb), with terms = (hi, lo, scale, k1, k2), while summing
    the piece dy2[:n], x2[:n] of the following row, (dy2, x2, center2), as ``lead``
    does.  Loads of the next row overlap the stores of this one, and this row is read
    from L1 (the previous call summed it)."""
    dx, dy, x, gr = row
    sw, sb = sums
    hi, lo, scale, k1, k2 = terms
    dy2, x2, center2 = following
    t1 = t2 = tg = tgd = 0.0
    start = np.uint64(0)
    end = np.uint64(n)
    while start < end:
        stop = smaller(end, start + np.uint64(CHUNK))
        if centered:
            a1, a2, ag, agd = ln_sweep_part(dx, dy, x, w, gr, sw, sb, hi, lo, scale, k1, k2,
                                            dy2, x2, center2, start, stop)
        else:
            a1, a2, ag, agd = rms_sweep_part(dx, dy, x, w, gr, sw, sb, scale, k2, dy2, x2,
                                             start, stop)
        t1 += a1
        t2 += a2
        tg += ag
        tgd += agd
        start = stop
    return t1, t2, tg, tgd


@kernel(_nrt=False)
def row_dx(dx, dy, x, w, gr, sw, sb, hi, lo, scale, k1, k2, n, centered):
    """dx (and partials) of the row, alone: the last row of a task."""
    if centered:
        for j in range(np.uint64(n)):
            ln_dx_at(dx, dy, x, w, gr, sw, sb, hi, lo, scale, k1, k2, j)
    else:
        for j in range(np.uint64(n)):
            rms_dx_at(dx, dy, x, w, gr, sw, sb, scale, k2, j)


# A summing loop: the fallback for sum(g * xhat) when the shifted form is not accurate.
@kernel(fastmath=REDUCE, _nrt=False)
def row_gxhat(dy, x, w, hi, lo, scale, n, centered):
    """sum(g * xhat) over the row, float64 totals of work-type chunk sums."""
    total = 0.0
    start = np.uint64(0)
    end = np.uint64(n)
    while start < end:
        stop = smaller(end, start + np.uint64(CHUNK))
        a = work(x, 0.0)
        if centered:
            for j in range(start, stop):
                a += scaled(load(dy, j), w, j) * (exact_sub(exact_sub(load(x, j), hi), lo) * scale)
        else:
            for j in range(start, stop):
                a += scaled(load(dy, j), w, j) * (load(x, j) * scale)
        total += a
        start = stop
    return total


@kernel(inline="always")
def wide_xhat(x, j, mean, rstd, centered):
    if centered:
        return exact_sub(1.0 * load(x, j), mean) * rstd
    return (1.0 * load(x, j)) * rstd


@kernel(_nrt=False)
def row_wide(dx, dy, x, w, gr, sw, sb, mean, rstd, n, centered):
    """The whole row in float64, in strict order, as written: float32 rows whose rstd
    leaves float32's range (as _rowops normalizes them), and NaN rows."""
    sg = sgx = 0.0
    for j in range(np.uint64(n)):
        g = scaled(1.0 * load(dy, j), w, j)
        sg += g
        sgx += g * wide_xhat(x, j, mean, rstd, centered)
    c1 = sg / n if centered else 0.0
    c2 = sgx / n
    for j in range(np.uint64(n)):
        dyj = 1.0 * load(dy, j)
        xh = wide_xhat(x, j, mean, rstd, centered)
        put_dx(dx, dy, gr, j, rstd * ((scaled(dyj, w, j) - c1) - xh * c2))
        add_params(sw, sb, j, dyj, xh)


# (compiled for size: the backward's float64 fallback, for rows whose rstd leaves float32's
# range, linked into every kernel variant that reaches it.  Seven cold small-call forms,
# three interleaved pairs, with its twin in _rowops: 27.1 -> 25.7 s to compile; the
# fallback as fast as before: (4096, 768) float32 of scale 1e-25, 2 threads, 1.00x / 0.98x
# forward / backward, the same bits)
optimize_for_size(f"{__name__}.row_wide")
