"""Row statistics of the backward kernels (backward.py): given as the forward returned
them, or recomputed from x by the forward's algorithm in the same sweeps -- a compile-time
choice (``stats`` None or a tuple).  See backward.py's docstring for the formulas.
"""
import math

from numba.extending import overload

from .. import _config
from ._backward_rows import row_gxhat
from ._elements import _absent, is_narrow, work
from ._jit import kernel
from ._moments import finish_row, row_shift, rstd_of
from ._rowops import normalizer

RSTD_MAX = _config.NARROW_RSTD_MAX
TINY = _config.NARROW_TINY


# --- statistics: given, or recomputed (a compile-time choice) ---------------------------------

def given_mean(stats, i):
    """The given mean of row i as float64 (0 without a mean)."""


@overload(given_mean, inline="always")
def _given_mean(stats, i):
    if _absent(stats[0]):
        return lambda stats, i: 0.0
    return lambda stats, i: 1.0 * stats[0][i]


def row_center(stats, i, x, cols, centered):
    """(hi, lo) the sums of row i are taken about: the given mean's split (0, 0 for
    RMSNorm), or the forward's shift k and None (0 and None for RMSNorm)."""


@overload(row_center, inline="always")
def _row_center(stats, i, x, cols, centered):
    if _absent(stats):
        return lambda stats, i, x, cols, centered: (shift_of(x, cols, centered), None)

    def given(stats, i, x, cols, centered):
        mean = given_mean(stats, i)
        hi = work(x, mean)
        return hi, work(x, mean - hi)
    return given


def row_terms(stats, i, dy, x, w, cols, eps, centered, k, t1, t2, tg, tgd):
    """(mean, rstd, c1, c2) of row i from its sums: c1 = mean(g), c2 = mean(g * xhat)."""


@overload(row_terms, inline="always")
def _row_terms(stats, i, dy, x, w, cols, eps, centered, k, t1, t2, tg, tgd):
    if _absent(stats):
        def recomputed(stats, i, dy, x, w, cols, eps, centered, k, t1, t2, tg, tgd):
            return recomputed_terms(dy, x, w, cols, eps, centered, k, t1, t2, tg, tgd)
        return recomputed

    def given(stats, i, dy, x, w, cols, eps, centered, k, t1, t2, tg, tgd):
        # Sgd is about the mean: sum(g * xhat) = rstd * Sgd.  (RMSNorm does not form Sg:
        # tg is 0, and so is c1.)
        rstd = 1.0 * stats[1][i]
        return given_mean(stats, i), rstd, tg / cols, rstd * tgd / cols
    return given


@kernel(_nrt=False)
def shift_of(x, cols, centered):
    """The forward's shift of a row (_moments.row_shift; 0 for RMSNorm)."""
    return row_shift(x, None, cols, centered)


@kernel(_nrt=False)
def recomputed_terms(dy, x, w, cols, eps, centered, k, t1, t2, tg, tgd):
    """(mean, rstd, c1, c2) of a row from its sums about the shift k (module docstring)."""
    mean, second = finish_row(x, cols, k, t1, t2, centered)
    rstd = rstd_of(second, eps)
    if is_narrow(x) and not rstd < RSTD_MAX:
        return mean, rstd, 0.0, 0.0  # row_wide sums this row again, in float64
    shift = mean - k
    exact = abs(shift) * rstd <= 1.0 and abs(tgd) < math.inf
    if is_narrow(x):
        exact = exact and TINY <= t2 < math.inf
    if exact:
        gxhat = rstd * (tgd - shift * tg)
    else:
        hi, lo, scale = normalizer(x, mean, rstd)
        gxhat = row_gxhat(dy, x, w, hi, lo, scale, cols, centered)
    return mean, rstd, tg / cols, gxhat / cols
