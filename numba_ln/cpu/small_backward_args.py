"""The small backward kernels' argument rules (small_backward.py), settled while typing
or in a few compiled instructions: which types fit, how given statistics are widened,
which checks a form's arguments need."""
import numpy as np
from numba import types

from ._elements import _absent, _in_place
from ._jit import kernel
from ._storage import work_type
from .backward import given_stats, recomputed_stats
from .small_args import _array_fits, _param_type_fits


def _input_fits(a, like):
    """Typing: a is a C-contiguous array of like's dtype and rank (read-only too: the
    kernels pass inputs on as writeable types, small_args.as_mutable)."""
    return (isinstance(a, types.Array) and a.layout == "C" and a.ndim == like.ndim
            and a.dtype == like.dtype)


def _stat_fits(s, x):
    """Typing: a statistic absent, or an array like x's in x's work type (float32 for
    16-bit data, as the forward returns them)."""
    return _absent(s) or _input_fits(s, x.copy(dtype=work_type(x)))


# stat_fits and the statistics' widening are inline kernels that the overloads below pick
# while they type their call (as small.py's statistics helpers: no compilation of their
# own, which an overload's implementation has even inlined).

@kernel(inline="always")
def stat_fits(s, x):
    """Whether a given statistic has x's keepdims shape."""
    for d in range(x.ndim - 1):
        if s.shape[d] != x.shape[d]:
            return False
    return s.shape[x.ndim - 1] == 1


@kernel(inline="always")
def _no_stat(s, x):
    return True


def _stat_check(s):
    """Typing: the check of a statistic argument (none for an absent one)."""
    return _no_stat if _absent(s) else stat_fits


@kernel(inline="always")
def _recomputed(mean, rstd, rows):
    return recomputed_stats()


@kernel(inline="always")
def _widened(s, rows):
    """A given statistic as a float64 row."""
    out = np.empty(rows)
    flat = s.reshape(-1)
    for i in range(rows):
        out[i] = flat[i]
    return out


@kernel(inline="always")
def _widened_rstd(mean, rstd, rows):
    """(zeros, rstd) as float64 rows: RMSNorm's given statistics (no mean)."""
    return given_stats(np.zeros(rows), _widened(rstd, rows))


@kernel(inline="always")
def _widened_stats(mean, rstd, rows):
    """(mean, rstd) as float64 rows: LayerNorm's given statistics."""
    return given_stats(_widened(mean, rows), _widened(rstd, rows))


def _stats_of(mean, rstd):
    """Typing: the kernels' statistics (mean, rstd, given) from the given ones, as
    cpu/backward.run_backward forms them: float64 rows, widened, zeros for RMSNorm's
    absent mean; empty rows and False when they are recomputed."""
    if _absent(rstd):
        return _recomputed
    return _widened_rstd if _absent(mean) else _widened_stats


def _grad_fits(g, x):
    """Typing: a parameter gradient output (the front allocates them: a NumPy allocation
    costs less than boxing one allocated here) is a writeable C-contiguous 1-D array of
    x's work type."""
    return (isinstance(g, types.Array) and g.layout == "C" and g.ndim == 1 and g.mutable
            and g.dtype == work_type(x))


def _types_fit(dx, dy, x, gr, w, mean, rstd, dweight, dbias):
    """Typing: backward_fits' rules that the types decide."""
    return (_array_fits(dx, x) and _input_fits(dy, x) and _input_fits(x, x)
            and (dy.mutable or not _in_place(dx))  # (out=dy writes over dy)
            and (_absent(gr) or _input_fits(gr, x)) and _param_type_fits(w)
            and _stat_fits(mean, x) and _stat_fits(rstd, x)
            and (_absent(mean) or not _absent(rstd))
            and (_absent(dweight) or _grad_fits(dweight, x))
            and (_absent(dbias) or (not _absent(dweight) and _grad_fits(dbias, x))))


@kernel(inline="always")
def _shape_fits(a, x):
    return a.shape == x.shape


def _residual_check(gr):
    """Typing: the check of grad_residual (none when absent)."""
    return _no_stat if _absent(gr) else _shape_fits
