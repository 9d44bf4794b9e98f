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


def sums_center(stats, i, x, cols, centered):
    """The value the sums of row i are taken about (d = x - center): the given mean rounded
    to the work type, or the forward's shift k when recomputing (0 for RMSNorm, whose
    sums take x itself).

    Both take the same sums, S1 and S2 included, which given statistics do not use: one
    compiled sweep for both, and the faster one.  The sweep given statistics had (no S1
    and S2, and the mean's low part subtracted from every element) ran
    layer_norm_backward(out=) at (16384, 1024) in 8.7-9.1 ms against 7.0-7.5 (2 threads;
    17.0 against 13.4-13.7 on one), and as fast in cache ((4096, 768), (64, 1024)): more
    arithmetic, yet faster from memory (measured, not explained: the two loops' machine
    code differs in schedule and register use, not in its loads and stores)."""


@overload(sums_center, inline="always")
def _sums_center(stats, i, x, cols, centered):
    if _absent(stats):
        return lambda stats, i, x, cols, centered: shift_of(x, cols, centered)
    return lambda stats, i, x, cols, centered: work(x, given_mean(stats, i))


def row_terms(stats, i, dy, x, w, cols, eps, centered, k, t1, t2, tg, tgd):
    """(mean, rstd, c1, c2) of row i from its sums: c1 = mean(g), c2 = mean(g * xhat)."""


@overload(row_terms, inline="always")
def _row_terms(stats, i, dy, x, w, cols, eps, centered, k, t1, t2, tg, tgd):
    if _absent(stats):
        def recomputed(stats, i, dy, x, w, cols, eps, centered, k, t1, t2, tg, tgd):
            return recomputed_terms(dy, x, w, cols, eps, centered, k, t1, t2, tg, tgd)
        return recomputed

    def given(stats, i, dy, x, w, cols, eps, centered, k, t1, t2, tg, tgd):
        # Sgd is about k, the given mean rounded to the work type (sums_center).  Every x
        # lies on the work type's grid, so at least |mean - k| from the mean, and each
        # x - k is at most twice x - mean: the sum about k keeps the bound of one about
        # the mean.  (A given rstd above 1 / |mean - k|, larger than the data's own, takes
        # terms_about's second sum.  RMSNorm: k and the mean are 0.)
        return terms_about(dy, x, w, cols, centered, given_mean(stats, i),
                           1.0 * stats[1][i], k, tg, tgd, True)
    return given


@kernel(_nrt=False)
def shift_of(x, cols, centered):
    """The forward's shift of a row (_moments.row_shift; 0 for RMSNorm)."""
    return row_shift(x, None, cols, centered)


@kernel(_nrt=False)
def recomputed_terms(dy, x, w, cols, eps, centered, k, t1, t2, tg, tgd):
    """(mean, rstd, c1, c2) of a row from its sums about the shift k (module docstring)."""
    mean, second = finish_row(x, cols, k, t1, t2, centered)
    squares_fit = not is_narrow(x) or TINY <= t2 < math.inf
    return terms_about(dy, x, w, cols, centered, mean, rstd_of(second, eps), k, tg, tgd,
                       squares_fit)


@kernel(_nrt=False)
def terms_about(dy, x, w, cols, centered, mean, rstd, k, tg, tgd, squares_fit):
    """(mean, rstd, c1, c2) of a row from its sums about k (backward.py's docstring):
    sum(g * xhat) from Sgd and Sg while that is exact, else summed again about the mean."""
    if is_narrow(x) and not rstd < RSTD_MAX:
        return mean, rstd, 0.0, 0.0  # row_wide sums this row again, in float64
    shift = mean - k
    if squares_fit and abs(shift) * rstd <= 1.0 and abs(tgd) < math.inf:
        gxhat = rstd * (tgd - shift * tg)
    else:
        hi, lo, scale = normalizer(x, mean, rstd)
        gxhat = row_gxhat(dy, x, w, hi, lo, scale, cols, centered)
    return mean, rstd, tg / cols, gxhat / cols
