"""Kernels for the commonest small call, which check their own arguments.

A (1, 768) token normalizes in ~0.2 us, so at that size each Python-level attribute test
is a visible share of the call (~30 ns each).  These kernels take the arrays as they come
and settle everything they can without Python: what Numba's dispatcher knows from the
types (layout, writeability, dimensions) is decided while compiling, and what needs the
values (lengths, eps, overlaps) is a few integer compares.  They return 0 when done, or
1, having written nothing, when the call is not theirs (anything unusual, and every
error): the front then takes its general path, which raises the proper error.

The front (_small_front.py) passes only what it gated already: x a C-contiguous
float32/float64 ndarray, or 16-bit data as their bits (_dtypes.kernel_dtype), of at most
SERIAL_MAX_ELEMENTS elements (the fused kernel's at most SERIAL_MAX_ELEMENTS //
FUSED_COST: above that the general path launches threads from Python), eps a float, weight/bias
None or ndarrays as the general path passes them (or ones the kernels cast as the general
path does: work_param), out/residual_out ndarrays of x's kernel
dtype (allocated by the front when not given), residual an ndarray; IN_PLACE for an
output that *is* its input (``out is x``, ``residual_out is residual``).
"""
import numpy as np
from numba import types
from numba.extending import overload

from ._elements import _absent, _in_place
from ._jit import THIN_CALLER, kernel, link_after_optimizing
from .rows import call_rows_block
from .small_args import (CENTERED, NO_EPS, NOT_CENTERED, _array_fits, _param_rows_fit,
                         _param_type_fits, apart, as_mutable, length_fits, rows_fit,
                         rows_helpers, rows_layout_fits, scratch_stats, shape_of, view_of,
                         written_over)
from .small_params import params_for


def run_norm(y, x, w, b, eps, centered, stats, cols):
    """The body of small_layer_norm and its siblings: 1 unless the types and values are
    the kernel's.  cols: None for rows along x's last axis, or the length of the rows a
    C-contiguous x holds along its last axes (normalized together: small_layer_norm_rows),
    whose weight/bias may have the normalized shape (read as one row)."""


def _stats_fit(stats):
    """Typing: no statistics (None), or a C-contiguous float32/float64 array of shape
    (2, rows, 1) (mean and rstd, LayerNorm) or (1, rows, 1) (rstd, RMSNorm) the front
    allocated: one argument, and one allocation, for both (a None argument costs the
    dispatcher ~23 ns, an allocation in Python ~170 ns)."""
    return _absent(stats) or (stats.layout == "C" and stats.ndim == 3 and stats.mutable
                              and isinstance(stats.dtype, types.Float)
                              and stats.dtype.bitwidth in (32, 64))


# The statistics helpers and work_params' no-cast case are inline kernels, chosen while
# typing (_stats_helpers, small_params.params_for): Numba inlines such a kernel without
# compiling it on its own, as it compiles every overload's implementation (~20 ms each).

@kernel(inline="always")
def finish_stats(sums, stats, eps):
    """The returned statistics from the kernel's float64 (mean, second) rows, as the
    general path forms them (_engine.run): mean rounded once, rstd = 1 / sqrt(second +
    eps) in float64, then rounded once."""
    last = stats.shape[0] - 1
    for i in range(stats.shape[1]):
        stats[last, i, 0] = 1.0 / np.sqrt(sums[1][i] + eps)
    if last:
        for i in range(stats.shape[1]):
            stats[0, i, 0] = sums[0][i]


@kernel()
def returned_stats(mean, second, stats, eps):
    """finish_stats compiled on its own, for the lean lane (_lean.py): the statistics of a
    call that ran the row kernels, from their float64 rows, as the general path forms
    them -- one small kernel a statistics dtype, where NumPy took five calls and a
    np.errstate (~3-5 us)."""
    finish_stats((mean, second), stats, eps)


@kernel()
def returned_moments(mean, second, moments):
    """The lean lane's moments (mean, var) rows from the kernels' float64 rows, rounded
    once to moments' dtype, as the general path's casts round them (silently)."""
    for i in range(mean.shape[0]):
        moments[0, i] = mean[i]
        moments[1, i] = second[i]


@kernel(inline="always")
def stats_fit(stats, rows, centered):
    """Whether the statistics outputs hold the form's statistics, one value per row."""
    return stats.shape[0] == (2 if centered else 1) and stats.shape[1] == rows and (
        stats.shape[2] == 1)


@kernel(inline="always")
def _no_stats_fit(stats, rows, centered):
    return True


@kernel(inline="always")
def _no_stats_to_finish(sums, stats, eps):
    return None


def _stats_helpers(stats):
    """Typing: (fit, finish) for the statistics argument."""
    if _absent(stats):
        return _no_stats_fit, _no_stats_to_finish
    return stats_fit, finish_stats


@overload(run_norm, jit_options=THIN_CALLER)
def _run_norm(y, x, w, b, eps, centered, stats, cols):
    param_fits = _param_type_fits if _absent(cols) else _param_rows_fit
    if not (_array_fits(y, x) and (x.mutable or not _in_place(y)) and rows_layout_fits(x)
            and (_absent(cols) or x.layout == "C")
            and param_fits(w) and param_fits(b) and _stats_fit(stats)):
        # (e.g. a strided out=, or out=x over a read-only x: the general path's error)
        return lambda y, x, w, b, eps, centered, stats, cols: 1
    fit, finish = _stats_helpers(stats)
    params = params_for(w, b, x)
    x_rows_fit = rows_fit(x)  # (x may be strided rows: the front gives them a fresh y)
    row_length, as_row = rows_helpers(cols)
    y_over = written_over(y)

    def run(y, x, w, b, eps, centered, stats, cols):
        cols = row_length(x, cols)
        w, b = as_row(w), as_row(b)
        rows = x.size // cols if cols > 0 else 0
        if not (cols > 0 and rows * cols == x.size and 0.0 <= eps < np.inf
                and shape_of(y, x) == x.shape
                and x_rows_fit(x) and length_fits(w, cols) and length_fits(b, cols)
                and fit(stats, rows, centered)):
            return 1
        # (out is x exactly comes as IN_PLACE: then w and b must not lie in x)
        written = y_over(y, x)
        if not (apart(y, x) and apart(written, w) and apart(written, b)):
            return 1  # partly overlapping
        # (read-only inputs as writeable types: small_args.as_mutable)
        yv, xv = view_of(y, cols), view_of(as_mutable(x), cols)
        sums = scratch_stats(rows)  # (written always: one rows_block variant)
        wk, bk = params(as_mutable(w), as_mutable(b), x)
        call_rows_block(((yv, None, xv, None), (wk, bk, eps, centered), sums, cols,
                         np.int64(0), rows, np.bool_(False)))
        finish(sums, stats, eps)
        return 0
    return link_after_optimizing(run)


def run_add_norm(y, s, x, r, w, b, eps, centered, stats):
    """The body of small_add_layer_norm and its siblings (stats: as run_norm's)."""


@overload(run_add_norm, jit_options=THIN_CALLER)
def _run_add_norm(y, s, x, r, w, b, eps, centered, stats):
    if not (_array_fits(y, x) and not _in_place(y) and _array_fits(s, x)
            and _array_fits(r, x) and not _in_place(r)
            and _param_type_fits(w) and _param_type_fits(b) and _stats_fit(stats)):
        return lambda y, s, x, r, w, b, eps, centered, stats: 1
    s_in_place = _in_place(s)
    s_over = written_over(s)
    params = params_for(w, b, x)
    fit, finish = _stats_helpers(stats)

    def run(y, s, x, r, w, b, eps, centered, stats):
        cols = x.shape[-1]
        rows = x.size // cols
        if not (cols > 0 and 0.0 <= eps < np.inf and y.shape == x.shape
                and shape_of(s, x) == x.shape and r.shape == x.shape
                and length_fits(w, cols) and length_fits(b, cols)
                and fit(stats, rows, centered)):
            return 1
        # y may be x or r itself (each row is read before it is written), and must lie
        # apart from the other input unless that is the same array (rows_block writes
        # row i of y while it sums row i + 1: rows of it two or more on were overwritten
        # before they were read); s over r comes as IN_PLACE; nothing else may overlap
        # an output.  (s over r: residual_out=residual, IN_PLACE; then neither y nor x,
        # w and b may lie in r.  x that is r itself, with s over it, is the general
        # path's, which reads x from a copy: here the first row's shift was taken from r
        # once s had been stored over it, and y differed from fresh outputs' in the last
        # bits)
        s_r = s_over(s, r)
        if not ((y.ctypes.data == x.ctypes.data or apart(y, x))
                and (y.ctypes.data == r.ctypes.data or apart(y, r)) and apart(y, s_r)
                and apart(y, w) and apart(y, b) and apart(s_r, w) and apart(s_r, b)
                and apart(s_r, x) and (s_in_place or apart(s, r))):
            return 1
        yv, xv = view_of(y, cols), view_of(as_mutable(x), cols)
        wk, bk = params(as_mutable(w), as_mutable(b), x)
        sums = scratch_stats(rows)
        call_rows_block(((yv, view_of(s, cols), xv, view_of(r, cols)),
                         (wk, bk, eps, centered), sums, cols, np.int64(0), rows,
                         np.bool_(False)))
        finish(sums, stats, eps)
        return 0
    return link_after_optimizing(run)


# One dispatcher per form, the form's flags fixed inside it (small_args.CENTERED).
@kernel(link_late=True)
def small_layer_norm(y, x, w, b, eps):
    """LayerNorm of x's last axis into y (an array or IN_PLACE)."""
    return run_norm(y, x, w, b, eps, CENTERED, None, None)


@kernel(link_late=True)
def small_layer_norm_stats(y, x, w, b, eps, stats):
    """small_layer_norm, and (mean, rstd) along stats' first axis."""
    return run_norm(y, x, w, b, eps, CENTERED, stats, None)


@kernel(link_late=True)
def small_rms_norm(y, x, w, eps):
    """RMSNorm of x's last axis into y (an array or IN_PLACE)."""
    return run_norm(y, x, w, None, eps, NOT_CENTERED, None, None)


@kernel(link_late=True)
def small_rms_norm_stats(y, x, w, eps, stats):
    """small_rms_norm, and rstd along stats' first axis."""
    return run_norm(y, x, w, None, eps, NOT_CENTERED, stats, None)


@kernel(link_late=True)
def small_layer_norm_rows(y, x, w, b, eps, cols):
    """small_layer_norm over rows of cols elements: a C-contiguous x whose last axes,
    normalized together, hold cols elements each (axis=(-2, -1), a LayerNorm((16, 48))),
    weight/bias of cols elements in the normalized shape (which the front checked) or as
    one row; y of x's shape.  (Its own dispatcher: x keeps its rank, and the front
    reshapes nothing, ~0.15 us an array; each rank compiles a variant.)"""
    return run_norm(y, x, w, b, eps, CENTERED, None, cols)


@kernel(link_late=True)
def small_rms_norm_rows(y, x, w, eps, cols):
    """small_layer_norm_rows's RMSNorm."""
    return run_norm(y, x, w, None, eps, NOT_CENTERED, None, cols)


@kernel(link_late=True)
def small_add_layer_norm(y, s, x, r, w, b, eps):
    """s = x + r (s an array or IN_PLACE: over r), and its LayerNorm into y, the rows in
    this thread (the front takes calls within the fused serial bound only)."""
    return run_add_norm(y, s, x, r, w, b, eps, CENTERED, None)


@kernel(link_late=True)
def small_add_layer_norm_stats(y, s, x, r, w, b, eps, stats):
    """small_add_layer_norm, and (mean, rstd) of s along stats' first axis."""
    return run_add_norm(y, s, x, r, w, b, eps, CENTERED, stats)


@kernel(link_late=True)
def small_add_rms_norm(y, s, x, r, w, eps):
    """small_add_layer_norm's RMSNorm."""
    return run_add_norm(y, s, x, r, w, None, eps, NOT_CENTERED, None)


@kernel(link_late=True)
def small_add_rms_norm_stats(y, s, x, r, w, eps, stats):
    """small_add_rms_norm, and rstd of s along stats' first axis."""
    return run_add_norm(y, s, x, r, w, None, eps, NOT_CENTERED, stats)


def run_moments(x, stats, eps, centered):
    """The body of small_moments: 1 unless the types and sizes are the kernel's."""


@overload(run_moments, jit_options=THIN_CALLER)
def _run_moments(x, stats, eps, centered):
    if not (isinstance(stats, types.Array) and stats.layout == "C" and stats.ndim == 2
            and stats.mutable and isinstance(stats.dtype, types.Float)):
        return lambda x, stats, eps, centered: 1

    def run(x, stats, eps, centered):
        cols = x.shape[-1]
        rows = x.size // cols
        if not (cols > 0 and stats.shape[0] == 2 and stats.shape[1] == rows):
            return 1
        sums = scratch_stats(rows)
        call_rows_block(((None, None, view_of(as_mutable(x), cols), None),
                         (None, None, eps, centered), sums, cols, np.int64(0), rows,
                         np.bool_(False)))
        for i in range(rows):  # (rounded once, as the general path's astype)
            stats[0, i] = sums[0][i]
            stats[1, i] = sums[1][i]
        return 0
    return link_after_optimizing(run)


@kernel(link_late=True)
def small_moments(x, stats):
    """The mean and variance of x's rows into stats' two rows (one output array, one
    allocation in the front).  eps 0.0 and centered True as run-time values: the general
    path's types."""
    return run_moments(x, stats, NO_EPS, CENTERED)
