"""Element helpers of the backward row functions (_backward_rows.py): the optional arrays
(weight, grad_residual, the partial rows) and the statistics mode (given or recomputed) as
compile-time facts, and the tasks' partial rows of dweight/dbias (clear, flush).

The ones used per element (``scaled``, ``minus_k1``, ``put_dx``, ``add_params`` ...) are
ordinary compiled functions, which LLVM inlines, keeping their contract-only flags; the
additions that are sums (``moments_add``) and the row loops (``clear``, ``flush``) are
inlined by Numba (see _backward_rows.py).
"""
import numpy as np
from numba.extending import overload

from ._elements import _absent, _in_place, exact_sub, work
from ._jit import kernel
from ._storage import load, store


# --- elements: optional arrays and the statistics mode as compile-time facts ------------------

def scaled(v, w, j):
    """v * w[j], or v without a weight."""


@overload(scaled)
def _scaled(v, w, j):
    if _absent(w):
        return lambda v, w, j: v
    return lambda v, w, j: v * w[j]


def minus_k1(v, w, j, k1):
    """v * w[j] - k1 (one fused operation), or v - k1 without a weight."""


@overload(minus_k1)
def _minus_k1(v, w, j, k1):
    if _absent(w):
        return lambda v, w, j, k1: v - k1
    return lambda v, w, j, k1: v * w[j] - k1


def centered_value(x, j, hi, lo):
    """(x[j] - hi) - lo, each subtraction exact far from zero; x[j] - hi for lo None."""


@overload(centered_value)
def _centered_value(x, j, hi, lo):
    if _absent(lo):
        return lambda x, j, hi, lo: exact_sub(load(x, j), hi)
    return lambda x, j, hi, lo: exact_sub(exact_sub(load(x, j), hi), lo)


def moments_add(a1, a2, d, lo):
    """(a1 + d, a2 + d*d) when the statistics are recomputed (lo None), else (a1, a2)."""


@overload(moments_add, inline="always")
def _moments_add(a1, a2, d, lo):
    if _absent(lo):
        return lambda a1, a2, d, lo: (a1 + d, a2 + d * d)
    return lambda a1, a2, d, lo: (a1, a2)


def plus(v, gr, j):
    """v + gr[j], or v without a grad_residual."""


@overload(plus)
def _plus(v, gr, j):
    if _absent(gr):
        return lambda v, gr, j: v
    return lambda v, gr, j: v + load(gr, j)


def put_dx(dx, dy, gr, j, v):
    """dx[j] = v + gr[j] (gr None: v), in dy's dtype; over dy[j] when dx is IN_PLACE."""


@overload(put_dx)
def _put_dx(dx, dy, gr, j, v):
    if _in_place(dx):
        def over(dx, dy, gr, j, v):
            store(dy, j, work(dy, plus(v, gr, j)))
        return over

    def into_dx(dx, dy, gr, j, v):
        store(dx, j, work(dy, plus(v, gr, j)))
    return into_dx


def add_params(sw, sb, j, dyj, xh):
    """sw[j] += dyj * xh and sb[j] += dyj in the partial rows' type (the work type; they
    are flushed into float64 every few rows); nothing for a None partial."""


@overload(add_params)
def _add_params(sw, sb, j, dyj, xh):
    if _absent(sw):
        return lambda sw, sb, j, dyj, xh: None
    if _absent(sb):
        def weight_only(sw, sb, j, dyj, xh):
            sw[j] += work(sw, dyj * xh)
        return weight_only

    def both(sw, sb, j, dyj, xh):
        sw[j] += work(sw, dyj * xh)
        sb[j] += work(sb, dyj)
    return both


def clear(p, n):
    """p[:n] = 0 (a task's partial rows); nothing for None."""


@overload(clear, inline="always")
def _clear(p, n):
    if _absent(p):
        return lambda p, n: None

    def zero(p, n):
        for j in range(np.uint64(n)):
            p[j] = 0.0
    return zero


def flush(total, part, n):
    """total[:n] += part[:n] in float64, then part[:n] = 0; nothing for None."""


@overload(flush, inline="always")
def _flush(total, part, n):
    if _absent(total):
        return lambda total, part, n: None

    def add(total, part, n):
        for j in range(np.uint64(n)):
            total[j] += 1.0 * part[j]
            part[j] = 0.0
    return add


@kernel(_nrt=False)
def clear_rows(pw, pb, sw, sb, n):
    """Zero a task's partial rows (float64 and work type)."""
    clear(pw, n)
    clear(pb, n)
    clear(sw, n)
    clear(sb, n)


@kernel(_nrt=False)
def flush_rows(pw, sw, pb, sb, n):
    """Add a few rows' work-type partial sums (sw, sb) into the float64 ones (pw, pb)."""
    flush(pw, sw, n)
    flush(pb, sb, n)
