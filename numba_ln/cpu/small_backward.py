"""Kernels for the commonest small backward call, which check their own arguments, as
small.py's do for the forward.

A (1, 768) backward computes in ~0.5 us, and the general path around it (the kind table,
partial-row buffers, the reduction and the casts, each a NumPy call) cost ~20 us.  These
kernels take the arrays as they come, allocate their scratch and write the parameter
gradients into the front's outputs, running exactly what the general path runs (the
same tasks through cpu/backward.py's backward_block, with the same argument types, then
the tasks' partials added in task order), so the results are bitwise the same.  They never
launch threads (see _small_front, at _SMALL): above the backward's serial bound
(_config.BACKWARD_COST) small_backward_fits checks the call by the same rules, and the
front launches cpu/backward.py's parallel kernel from Python.  They return status 1,
having written nothing, when the call is not theirs (anything unusual, and every
error): the front then takes its general path, which raises the proper error.

The front (_small_backward_front) passes only what it gated already: x a C-contiguous
float32/float64 ndarray, or the bits of a bfloat16/float16 one (_dtypes.kernel_dtype),
normalized over its last axis (the kernels get calls within the backward's serial bound,
small_backward_fits any size); dy, and grad_residual when given, ndarrays of x's dtype; eps
a float; weight None or an ndarray of x's work dtype (float32 for 16-bit data); mean/rstd
None or ndarrays of the work dtype; dx an ndarray of x's dtype (allocated by the front when
out is not given) or IN_PLACE for ``out is dy``; dweight and dbias outputs of the work
dtype, or both None (``param_grads=False``).
"""
import numpy as np
from numba.extending import overload

from ._elements import _absent, work
from ._jit import THIN_CALLER, kernel, link_after_optimizing
from ._partials import param_grad, partial_rows
from ._backward_tasks import split_rows
from .backward import backward_serial_by_name
from .small_args import (CENTERED, NOT_CENTERED, _param_rows_fit, apart, as_mutable,
                         length_fits, row_type, rows_helpers, shape_of, view_of, written_over)
from .small_backward_args import _residual_check, _stat_check, _stats_of, _types_fit


def backward_fits(dx, dy, x, gr, w, mean, rstd, eps, centered, dweight, dbias, cols):
    """Whether the small backward kernels take the call: the types (decided while
    compiling) and the values (shapes, eps, overlaps, and which arguments the form
    takes: centered is LayerNorm, a run-time flag as the general path passes it); dbias
    absent for RMSNorm, both parameter gradients absent without param_grads; cols None
    (rows along x's last axis) or the length of the rows x holds along its last axes
    (w, dweight, dbias then as rows: small_args.row_of)."""


# (compiled on its own, not inline: the small kernels and small_backward_fits call one
# compiled check; inlined, its IR was copied into each, ~0.5 s more on first use)
@overload(backward_fits)
def _backward_fits(dx, dy, x, gr, w, mean, rstd, eps, centered, dweight, dbias, cols):
    if not _types_fit(dx, dy, x, gr, w, mean, rstd, dweight, dbias):
        return lambda dx, dy, x, gr, w, mean, rstd, eps, centered, dweight, dbias, cols: False
    row_length = rows_helpers(cols)[0]
    mean_fits, rstd_fits = _stat_check(mean), _stat_check(rstd)
    gr_fits, written = _residual_check(gr), written_over(dx)
    # (which arguments a form takes, as constants of the types: the checks below on
    # `centered` fold to one compare)
    paired = _absent(mean) == _absent(rstd)
    grads_fit = _absent(dweight) == _absent(dbias)
    rms_fits = _absent(mean) and _absent(dbias)

    def values_fit(dx, dy, x, gr, w, mean, rstd, eps, centered, dweight, dbias, cols):
        cols = row_length(x, cols)
        if not (cols > 0 and x.size % cols == 0 and 0.0 <= eps < np.inf
                and dy.shape == x.shape
                and shape_of(dx, x) == x.shape and gr_fits(gr, x) and length_fits(w, cols)
                and mean_fits(mean, x) and rstd_fits(rstd, x)
                and length_fits(dweight, cols) and length_fits(dbias, cols)):
            return False
        if centered:
            if cols == 1 or not (paired and grads_fit):
                return False  # (cols 1: run_backward's exact _single_column path)
        elif not rms_fits:
            return False
        # (out=dy exactly comes as IN_PLACE, and then x, the weight and the statistics
        # must not lie in dy, which dx overwrites -- x two rows on was overwritten before
        # it was read; grad_residual under dx, even exactly, is read from a copy by the
        # general path: in place its loop would run scalar)
        dx_over = written(dx, dy)
        return (apart(dx, dy) and apart(dx_over, x) and apart(dx_over, w)
                and apart(dx_over, mean) and apart(dx_over, rstd) and apart(dx_over, gr))
    return values_fit


def run_backward_small(dx, dy, x, gr, w, mean, rstd, eps, centered, tasking, dweight, dbias,
                       cols):
    """The body of the small backward kernels: 0, or 1 having written nothing.  centered
    is a run-time flag, as the general path passes it (the same backward_block type);
    gr (grad_residual) None or added to dx; dweight and dbias (None or not) which
    parameter gradients are summed, a fact of the types; ``tasking`` is
    (task_elements, serial_max): split_rows' settings, as the front reads them from
    _config.  The tasks run in order in this thread (backward_serial_by_name: the same tasks as
    the general path's parallel launch, the same bits).  cols: backward_fits'."""


@overload(run_backward_small, jit_options=THIN_CALLER)
def _run_backward_small(dx, dy, x, gr, w, mean, rstd, eps, centered, tasking, dweight, dbias,
                        cols):
    # (several axes as rows: their parameters flattened, no statistics, no residual; rows
    # along the last axis: the parameters as they are, so that a call with parameters of
    # another rank, which backward_fits refuses, compiles this stub and not the body)
    rows_fit = _absent(cols) or (_absent(gr) and _absent(rstd) and _param_rows_fit(w)
                                 and _param_rows_fit(dweight) and _param_rows_fit(dbias))
    as_rows = (lambda p: p) if _absent(cols) else row_type
    if not (rows_fit and _types_fit(dx, dy, x, gr, as_rows(w), mean, rstd,
                                    as_rows(dweight), as_rows(dbias))):
        return (lambda dx, dy, x, gr, w, mean, rstd, eps, centered, tasking, dweight, dbias,
                cols: 1)
    stats_of = _stats_of(mean, rstd)
    row_length, as_row = rows_helpers(cols)

    def run(dx, dy, x, gr, w, mean, rstd, eps, centered, tasking, dweight, dbias, cols):
        w, dweight, dbias = as_row(w), as_row(dweight), as_row(dbias)
        if not backward_fits(dx, dy, x, gr, w, mean, rstd, eps, centered, dweight, dbias,
                             cols):
            return 1
        cols = row_length(x, cols)
        rows = x.size // cols
        task_elements, serial_max = tasking
        per_task = split_rows(rows, cols, task_elements, serial_max)  # (as task_rows)
        tasks = -(-rows // per_task)
        pw, pb = partial_rows(tasks, cols, 0.0, dweight, dbias)
        sw, sb = partial_rows(tasks, cols, work(x, 0.0), dweight, dbias)  # (float32: 16-bit)
        stats = stats_of(mean, rstd, rows)
        dxv, dyv = view_of(dx, cols), view_of(as_mutable(dy), cols)
        xv, grv = view_of(as_mutable(x), cols), view_of(as_mutable(gr), cols)
        backward_serial_by_name((dxv, dyv, xv, grv), (as_mutable(w), eps, centered),
                                stats, (pw, pb, sw, sb), rows, cols, per_task)
        param_grad(pw, tasks, cols, dweight)
        param_grad(pb, tasks, cols, dbias)
        return 0
    return link_after_optimizing(run)


# One dispatcher per form, the form's flags fixed inside it (small_args.CENTERED).
@kernel(link_late=True)
def small_layer_norm_backward(dx, dy, x, w, dweight, dbias, eps, tasking):
    """LayerNorm's backward over x's last axis, the statistics recomputed: dx written
    into dx (an array, or IN_PLACE over dy), dweight and dbias into theirs; 0, or 1
    having written nothing."""
    return run_backward_small(dx, dy, x, None, w, None, None, eps, CENTERED, tasking,
                              dweight, dbias, None)


@kernel(link_late=True)
def small_layer_norm_backward_stats(dx, dy, x, w, mean, rstd, dweight, dbias, eps, tasking):
    """small_layer_norm_backward with the forward's mean and rstd given."""
    return run_backward_small(dx, dy, x, None, w, mean, rstd, eps, CENTERED, tasking,
                              dweight, dbias, None)


@kernel(link_late=True)
def small_rms_norm_backward(dx, dy, x, w, dweight, eps, tasking):
    """RMSNorm's backward (small_layer_norm_backward's rules, no dbias)."""
    return run_backward_small(dx, dy, x, None, w, None, None, eps, NOT_CENTERED, tasking,
                              dweight, None, None)


@kernel(link_late=True)
def small_rms_norm_backward_stats(dx, dy, x, w, rstd, dweight, eps, tasking):
    """small_rms_norm_backward with the forward's rstd given."""
    return run_backward_small(dx, dy, x, None, w, None, rstd, eps, NOT_CENTERED, tasking,
                              dweight, None, None)


@kernel(link_late=True)
def small_backward_any(dx, dy, x, gr, w, mean, rstd, dweight, dbias, eps, centered, tasking):
    """Either backward in any form the front takes: the forms above, and grad_residual
    (gr, the backward of the fused forward) and param_grads=False (dweight and dbias
    None), with or without statistics (centered: LayerNorm).  One dispatcher for the
    less common forms: each None argument costs its call ~65 ns (small_args.CENTERED),
    a small share beside the general path's ~13 us these forms took before."""
    return run_backward_small(dx, dy, x, gr, w, mean, rstd, eps, centered, tasking, dweight,
                              dbias, None)


@kernel(link_late=True)
def small_layer_norm_backward_rows(dx, dy, x, w, dweight, dbias, eps, tasking, cols):
    """small_layer_norm_backward over rows of cols elements: a C-contiguous x (dy, dx of
    its shape) whose last axes, normalized together, hold cols elements each; w, dweight
    and dbias of cols elements in the normalized shape (which the front checked), read
    as rows.  (Its own dispatcher, as small.small_layer_norm_rows: nothing reshaped in
    Python; each rank compiles a variant.)"""
    return run_backward_small(dx, dy, x, None, w, None, None, eps, CENTERED, tasking,
                              dweight, dbias, cols)


@kernel(link_late=True)
def small_rms_norm_backward_rows(dx, dy, x, w, dweight, eps, tasking, cols):
    """small_layer_norm_backward_rows's RMSNorm."""
    return run_backward_small(dx, dy, x, None, w, None, None, eps, NOT_CENTERED, tasking,
                              dweight, None, cols)


def fits_status(dx, dy, x, gr, w, mean, rstd, dweight, dbias, eps, centered):
    """0 when backward_fits, else 1."""


# (an overload, not the body of small_backward_fits itself: Numba keys the compiled
# implementations of an overload such as backward_fits by the compile flags of their
# caller, and a kernel's flags differ from an overload implementation's, as
# run_backward_small's is (no CPython wrapper).  Called from here, backward_fits has the
# caller's flags the small kernels give it, and compiles once for both: 0.14-0.35 s a
# variant, 3 s of python -m numba_ln.precompile.)
@overload(fits_status)
def _fits_status(dx, dy, x, gr, w, mean, rstd, dweight, dbias, eps, centered):
    return lambda dx, dy, x, gr, w, mean, rstd, dweight, dbias, eps, centered: (
        0 if backward_fits(dx, dy, x, gr, w, mean, rstd, eps, centered, dweight, dbias,
                           None) else 1)


@kernel(link_late=True)
def small_backward_fits(dx, dy, x, gr, w, mean, rstd, dweight, dbias, eps, centered):
    """0 when the small kernels would take the call (backward_fits), else 1; computes
    nothing.  For calls above the serial bound, which the front then launches in threads
    from Python: one dispatcher for every form (a few None arguments are nothing beside
    a launch), whose variants compile in a fraction of a second -- a kernel's own check
    would compile its serial body too, seconds a form on first use."""
    return fits_status(dx, dy, x, gr, w, mean, rstd, dweight, dbias, eps, centered)
