"""Row statistics of the backward kernels (backward.py): given as the forward returned
them, or recomputed from x by the forward's algorithm in the same sweeps -- a run-time
choice (``stats``' third element).  See backward.py's docstring for the formulas.
"""
import math

from .. import _config
from ._backward_rows import row_gxhat
from ._elements import is_narrow, work
from ._jit import kernel
from ._moments import finish_row, row_shift, rstd_of
from ._rowops import fits_float32, normalizer

TINY = _config.NARROW_TINY


# --- statistics: given, or recomputed (a run-time choice) ------------------------------------
#
# ``stats`` is (mean, rstd, given): float64 rows of the given statistics (zeros for
# RMSNorm's absent mean) and True, or two rows never read and False (recomputed).  One
# kernel variant for both modes: the sweeps are the same (sums_center), and the choice is
# a branch per row.  As a compile-time choice (None or a tuple) each backward kernel
# compiled twice, ~2.9 s of a precompile task's 16.6 (layer_norm_backward, float32).

@kernel(inline="always")
def sums_center(stats, i, x, cols, centered):
    """The value the sums of row i are taken about (d = x - center): the given mean rounded
    to the work type, or the forward's shift k when recomputing (0 for RMSNorm, whose
    sums take x itself).

    Both take the same sums, S1 and S2 included, which given statistics do not use: one
    sweep for both, and the faster one.  The sweep given statistics had (no S1 and S2,
    and the mean's low part subtracted from every element) ran layer_norm_backward(out=)
    at (16384, 1024) in 8.7-9.1 ms against 7.0-7.5 (2 threads; 17.0 against 13.4-13.7
    on one), and as fast in cache ((4096, 768), (64, 1024)): more arithmetic, yet faster
    from memory (measured, not explained: the two loops' machine code differs in schedule
    and register use, not in its loads and stores)."""
    if stats[2]:
        return work(x, stats[0][i])
    return shift_of(x, cols, centered)


@kernel(inline="always")
def row_terms(stats, i, dy, x, w, cols, eps, centered, k, t1, t2, tg, tgd):
    """(mean, rstd, c1, c2) of row i from its sums: c1 = mean(g), c2 = mean(g * xhat).

    Given statistics: Sgd is about k, the given mean rounded to the work type
    (sums_center).  Every x lies on the work type's grid, so at least |mean - k| from
    the mean, and each x - k is at most twice x - mean: the sum about k keeps the bound
    of one about the mean.  (A given rstd above 1 / |mean - k|, larger than the data's
    own, takes terms_about's second sum.  RMSNorm: k and the mean are 0.)"""
    if stats[2]:  # (its squares_fit is stats[2], True: a literal would be a type, and
        # terms_about a compilation, of its own)
        return terms_about(dy, x, w, cols, centered, 1.0 * stats[0][i], 1.0 * stats[1][i],
                           k, tg, tgd, stats[2])
    return recomputed_terms(dy, x, w, cols, eps, centered, k, t1, t2, tg, tgd)


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
    if is_narrow(x) and not fits_float32(rstd):
        return mean, rstd, 0.0, 0.0  # row_wide sums this row again, in float64
    shift = mean - k
    if squares_fit and abs(shift) * rstd <= 1.0 and abs(tgd) < math.inf:
        gxhat = rstd * (tgd - shift * tg)
    else:
        hi, lo, scale = normalizer(x, mean, rstd)
        gxhat = row_gxhat(dy, x, w, hi, lo, scale, cols, centered)
    return mean, rstd, tg / cols, gxhat / cols
