"""Backward kernels for rows laid out contiguously: LayerNorm and RMSNorm, float32 and
float64, with optional weight, given or recomputed statistics, a gradient added from the
residual stream, dx in place over dy, and dweight/dbias.

    xhat = (x - mean) * rstd   (RMSNorm: x * rstd)      g = dy * weight  (dy without one)
    dx   = rstd * (g - mean(g) - xhat * mean(g * xhat)) + grad_residual
           (RMSNorm: rstd * (g - xhat * mean(g * xhat)) + grad_residual)
    dweight = sum over rows of dy * xhat     dbias = sum over rows of dy

Entry point (the front calls this; everything is in kernel order, rows x cols)::

    run_backward(dx, dy, x, w, stats, grad_residual, rows, cols, eps, centered, grads)

``dx, dy, x, grad_residual``  row views ``(buf, start, stride)`` as in rows.py: row i is
               ``buf[start + i*stride :][:cols]``, buf a flat unit-stride array; all of one
               dtype: float32 or float64, or the bits of bfloat16 or float16 (_storage:
               read exactly, computed in float32, dx rounded once).  ``dx`` may be IN_PLACE
               (_elements): dx is written over dy (``out=dy``).  ``grad_residual`` None or
               a view; it is added into dx.  dx must not overlap dy, x or grad_residual
               otherwise (the front detaches such inputs, as _engine does).
``w``          weight: a flat array of ``cols`` elements in the work type (float32 for
               16-bit data), or None.
``stats``      None: mean and rstd are recomputed from x in the same sweeps, by the
               forward's algorithm (_moments: shift, float32 chunk sums into float64,
               finish_row's fallbacks), so with its error bound -- exact far from zero --
               though not always its last bit (the forward sums in other loops).  Or
               ``(mean, rstd)``: 1-D arrays of ``rows`` elements in kernel row order,
               float32 or float64 (each may be either), used as given; mean None for
               RMSNorm (``(None, rstd)``).
``rows, cols, eps, centered``  the shape; eps (unused with given stats); LayerNorm (True)
               or RMSNorm (False).
``grads``      ``(dweight, dbias)``: writeable 1-D arrays of ``cols`` elements (float32 or
               float64; the front passes the result dtype, float32 for 16-bit data) into
               which the parameter gradients are written (zeros for ``rows == 0``),
               summed in float64 and rounded once; dbias None for RMSNorm.  None: no
               dweight/dbias work at all.

The kernels take these grouped in plain tuples, as rows.py's do (which says why not named
tuples): ``arrays = (dx, dy, x, grad_residual)``, ``norm = (w, eps, centered)``,
``stats = (mean, rstd, given)`` (run_backward's float64 rows and True, or rows never read
and False: one kernel variant for both modes, _backward_stats), ``partials`` (the tasks'
dweight and dbias partial rows in float64, then in the work type; _partials.py), then the
shape and the task.

**Passes.**  Each row's sums (module docstring of _backward_rows) are taken while the
previous row's dx is written: one sweep over a row reads dy and x from memory and writes
dx, and the row it writes was read by the previous sweep, so it comes from L1.
``Sgd = sum(g * (x - k))`` is about k -- the shift with recomputed statistics, the
given mean rounded to the work type otherwise (_backward_stats.sums_center) -- and

    sum(g * xhat) = rstd * (Sgd - (mean - k) * Sg)

which loses nothing while |mean - k| * rstd <= 1 (the error is at most three times that
of a sum about the mean); otherwise (a poor shift, float32 squares out of range, inf or
NaN) the row is summed once more about its mean, in L1 (``row_gxhat``).  float32 rows
whose rstd leaves float32's range are computed in float64 (``row_wide``).

**Determinism.**  Rows are cut into tasks by the shape alone (``task_rows``); each task
sums dy * xhat and dy into partial rows of its own, in row order (work-type rows flushed
into float64 every PARAM_ROWS rows), and the tasks' partials are added in task order
(_partials.param_grad).  Run in this thread (calls below the serial bound, the small-call
kernels, a user's @njit code) the same tasks run one after the other, so results are
bitwise the same for any thread count and on every path.  Kernel variants (with or
without a weight, grad_residual, IN_PLACE, parameter gradients) may differ in the last
bits, as the forward's do: LLVM may split the same sums into lanes differently.

**Accuracy**, float32 against the float64 formula, max|err| / max(1, max|ref|), weight,
recomputed statistics, (4096, 1024) (tests/test_backward_kernels.py; bar 1e-5):

    LayerNorm  offset 0: dx 1.1e-7  dweight 7.8e-8  dbias 5.7e-8
               offset 1e3: 1.1e-7  7.4e-8  6.4e-8      offset 1e4: 1.3e-7  5.7e-8  5.4e-8
    RMSNorm    offset 0: dx 9.8e-8  dweight 5.7e-8

(torch's CPU native_layer_norm_backward: dx 8.5e-6 at offset 1e3, 9.5e-5 at 1e4).
"""
import numpy as np
from numba import prange

from .. import _config, _stand_ins, _threading
from ._backward_elements import clear_rows, flush_rows
from ._backward_rows import row_dx, row_wide
from ._backward_single import single_column
from ._backward_stats import row_terms, sums_center
from ._backward_sums import lone_sums, sweep_row
from ._backward_tasks import task_rows
from ._elements import is_narrow, smaller, work
from ._indirect import block_key, call_block, run_blocks
from ._jit import kernel
from ._named_calls import named_call
from ._partials import numpy_param_grad, numpy_partial_rows, param_grad, partial_rows
from ._pointers import address, row_address, stack_or_new
from ._rowops import fits_float32, normalizer
from ._storage import work_dtype
from ._stream import row_buffer, stream_end, stream_fence, stream_row, stream_state, streams
from .rows import FIRST_ROW

# The kernels' statistics (mean, rstd, given) of a call that recomputes them (the rows are
# never read), from Python; from compiled code, recomputed_stats and given_stats.
RECOMPUTED = (np.zeros(0), np.zeros(0), False)


@kernel(inline="always")
def recomputed_stats():
    """RECOMPUTED, formed in compiled code (the small kernels, @njit code): empty rows on
    the stack, of np.empty's type (an allocation each would cost ~40 ns of a ~2.4 us
    (1, 768) call).  (np.bool_, not a literal: a literal's type would make a kernel
    variant of its own.)"""
    none = stack_or_new((0,), np.float64, 8)
    return (none, none, np.bool_(False))


@kernel(inline="always")
def given_stats(mean, rstd):
    """The kernels' statistics of given rows, formed in compiled code."""
    return (mean, rstd, np.bool_(True))


# dy * xhat and dy are added up PARAM_ROWS rows at a time in the work type, then into the
# float64 partials (_backward_rows.flush_rows).  All in float32, the sweep runs 16 float32
# lanes to a vector; with float64 partial rows in the same loop LLVM chose 8 (one thread,
# (4096, 1024): 0.63 ns/element against 0.54).  Rounding: at most PARAM_ROWS + 1 float32
# roundings of sum(|dy * xhat|) over those rows; measured errors ~1e-7 (bar 1e-5).  Every
# 32 rows flushed 10% faster in L1, with a worst-case bound four times as large.  Sums kept
# in registers instead, a block of PARAM_ROWS rows at a time (each row summed alone, then
# the block's dx column by column across its rows; the same roundings), measured on a Zen
# 4, one thread: 0.88-0.90x the time at (256, 768), but 3.6x at (64, 1024) and 2.1x at
# (64, 4096), likely because the block's 24 row streams, 4 KiB apart, share the sets of
# the 8-way L1 (README, Training); the row-by-row sweep has 8 streams.
PARAM_ROWS = 8


# --- the kernels ------------------------------------------------------------------------------

@kernel(_nrt=False)
def backward_block(arrays, norm, stats, partials, cols, first, last, t, stream):
    """Rows first..last-1 (task t): the first row summed on its own, then one sweep per
    row (its dx written while the next row is summed), the last row's dx alone.  stream:
    each row of dx is written to a scratch row, then streamed past the caches (_stream)."""
    dx, dy, x, gr = arrays
    w, eps, centered = norm
    pwv, pbv, swv, sbv = partials
    wp = address(w, 0)
    pw, pb = row_address(pwv, t, 0), row_address(pbv, t, 0)
    sw, sb = row_address(swv, t, 0), row_address(sbv, t, 0)
    clear_rows(pw, pb, sw, sb, cols)
    dyp, xp = row_address(dy, first, 0), row_address(x, first, 0)
    k = sums_center(stats, first, xp, cols, centered)
    scratch, dx_stream = row_buffer(dx), stream_state(dx)
    zeros = (row_buffer(dy), row_buffer(x))
    t1, t2, tg, tgd = lone_sums(scratch, zeros, row_address(gr, first, 0), (sw, sb), wp,
                                (dyp, xp, k), cols, centered)
    mean, rstd, c1, c2 = row_terms(stats, first, dyp, xp, wp, cols, eps, centered, k,
                                   t1, t2, tg, tgd)
    for i in range(first, last):
        dxp, grp = row_address(dx, i, 0), row_address(gr, i, 0)
        written = scratch if stream else dxp  # (where the kernel writes row i of dx)
        sent = False  # (whether row i of dx was streamed already)
        narrow_fits = not is_narrow(xp) or fits_float32(rstd)
        hi, lo, scale = normalizer(xp, mean, rstd)
        k1, k2 = work(xp, rstd * c1), work(xp, rstd * c2)
        if i + 1 == last:
            if narrow_fits:
                row_dx(written, dyp, xp, wp, grp, sw, sb, hi, lo, scale, k1, k2, cols,
                       centered)
            else:
                row_wide(written, dyp, xp, wp, grp, sw, sb, mean, rstd, cols, centered)
            flush_rows(pw, sw, pb, sb, cols)
        else:
            dy2, x2 = row_address(dy, i + 1, 0), row_address(x, i + 1, 0)
            k = sums_center(stats, i + 1, x2, cols, centered)
            if narrow_fits:
                t1, t2, tg, tgd = sweep_row((written, dyp, xp, grp), (sw, sb), wp,
                                            (hi, lo, scale, k1, k2), (dy2, x2, k), cols,
                                            centered)
            else:
                row_wide(written, dyp, xp, wp, grp, sw, sb, mean, rstd, cols, centered)
                if stream:  # (sent on first: lone_sums writes a dummy row's dx into the
                    dx_stream = stream_row(dxp, written, cols, dx_stream)  # scratch row)
                    sent = True
                t1, t2, tg, tgd = lone_sums(scratch, zeros, row_address(gr, i + 1, 0),
                                            (sw, sb), wp, (dy2, x2, k), cols, centered)
            if (i - first) % PARAM_ROWS == PARAM_ROWS - 1:
                flush_rows(pw, sw, pb, sb, cols)
            mean, rstd, c1, c2 = row_terms(stats, i + 1, dy2, x2, wp, cols, eps, centered, k,
                                           t1, t2, tg, tgd)
            dyp, xp = dy2, x2
        if stream and not sent:
            dx_stream = stream_row(dxp, written, cols, dx_stream)
    if stream:
        stream_end(dx_stream)
        stream_fence()


def _tasks_in_order(block):
    """An inline kernel running backward_rows' tasks one after the other (the same
    results), each a call of block (backward_block's arguments)."""
    @kernel(inline="always")
    def serial(arrays, norm, stats, partials, rows, cols, per_task):
        for t in range(-(-rows // per_task)):
            first = t * per_task
            last = first + per_task if first + per_task < rows else rows  # (min: split_rows)
            block(arrays, norm, stats, partials, cols, np.int64(first), np.int64(last),
                  np.int64(t), np.bool_(False))
    return serial


_backward_block_by_symbol = named_call(backward_block)


@kernel(inline="always")
def _backward_block_by_name(arrays, norm, stats, partials, cols, first, last, t, stream):
    _backward_block_by_symbol((arrays, norm, stats, partials, cols, first, last, t, stream))


# The tasks of a small call or of a user's @njit code (and of Python's: _run_here).
# Inlined into the small-call kernels (small_backward.py), which call backward_block's own
# code by name (_named_calls), so no variant carries a copy of it; and into a user's @njit
# code (_njit/backward.py), which links a copy, as Numba links any kernel it calls: a
# user's function is cached whole and may be linked into other cached functions, which
# drop the reload step that binds a name (a crash in the process that loads them).
backward_serial_by_name = _tasks_in_order(_backward_block_by_name)
backward_serial = _tasks_in_order(backward_block)


@kernel(parallel=True)
def backward_rows(block, key, arrays, norm, stats, grads, rows, cols, per_task, stream):
    """All rows in parallel, per_task consecutive rows per task (stream: backward_block's),
    each task a call of backward_block's compiled code at address block (_indirect: key
    names the types it was compiled for) with its partial rows (_partials); then the
    tasks' partials added in task order into grads = (dweight, dbias), arrays of cols
    elements (dbias None for RMSNorm; both None: no parameter gradients).  The partial
    rows are allocated and added up here: from Python, two allocations and a reduction
    kernel cost ~4 us of a ~30 us (64, 1024) call.  Returns 0, or, having run nothing,
    the key of the block this kernel calls when key is another."""
    # (unpacked outside the loop: Numba's parallel loop cannot take a tuple of row views)
    dx, dy, x, gr = arrays
    dweight, dbias = grads
    tasks = (rows + per_task - 1) // per_task
    pw, pb = partial_rows(tasks, cols, 0.0, dweight, dbias)  # (the float64 totals)
    sw, sb = partial_rows(tasks, cols, work(dy[0], 0.0), dweight, dbias)
    # (the types of the call below: first, last and t are int64, as rows is)
    own = block_key(((dx, dy, x, gr), norm, stats, (pw, pb, sw, sb), cols, rows, rows, rows,
                     stream))
    if key != own:
        return own
    for t in prange(tasks):
        first = np.int64(t) * per_task  # prange's index is unsigned
        call_block(block, ((dx, dy, x, gr), norm, stats, (pw, pb, sw, sb), cols, first,
                           smaller(rows, first + per_task), np.int64(t), stream))
    param_grad(pw, tasks, cols, dweight)
    param_grad(pb, tasks, cols, dbias)
    return 0


def run_backward(dx, dy, x, w, stats, grad_residual, rows, cols, eps, centered, grads):
    """dx written, and the parameter gradients into grads (module docstring)."""
    # Stand-ins (_stand_ins): fewer kernel variants to compile, the same bits
    if stats is None:
        stats = RECOMPUTED
    else:  # (RMSNorm's absent mean: zeros)
        mean = (_stand_ins.zeros(rows) if stats[0] is None
                else stats[0].astype(np.float64, copy=False))
        stats = (mean, stats[1].astype(np.float64, copy=False), True)
    dweight, dbias = (None, None) if grads is None else grads
    if rows == 0:
        for g in (dweight, dbias):
            if g is not None:
                g[...] = 0.0
        return
    if centered and cols == 1:
        single_column(dx, dy, x, w, stats, grad_residual, rows, eps, dweight, dbias)
        return
    per_task = task_rows(rows, cols)
    args = ((dx, dy, x, grad_residual), (w, float(eps), bool(centered)), stats,
            (dweight, dbias), rows, cols, per_task)
    # (one task: run in this thread, with the same bits)
    if _threading.runs_serial(rows * cols, _config.BACKWARD_COST) or per_task >= rows:
        _run_here(*args)
    else:
        moved = 3 if grad_residual is None else 4  # (dy, x, dx and grad_residual)
        stream = streams(dx, rows * cols, cols, moved)
        run_blocks(backward_rows, backward_block,
                   lambda: args[:3] + (_numpy_partials(args[0], args[3], 1, cols), cols,
                                       FIRST_ROW, FIRST_ROW, FIRST_ROW, stream),
                   *args, stream)


def _run_here(arrays, norm, stats, grads, rows, cols, per_task):
    """backward_rows' tasks one after the other in this thread, from Python: the same
    partial rows (NumPy's), the same tasks (backward_serial's py_func, which calls
    backward_block from Python), the same sums, so the same bits, with no kernel of its
    own to compile (backward_rows costs ~0.8 s a variant on first use, and small or
    unusual calls alone need only backward_block)."""
    dweight, dbias = grads
    tasks = -(-rows // per_task)
    partials = _numpy_partials(arrays, grads, tasks, cols)
    backward_serial.py_func(arrays, norm, stats, partials, rows, cols, per_task)
    for view, out in ((partials[0], dweight), (partials[1], dbias)):
        if out is not None:
            numpy_param_grad(view, tasks, cols, out)


def _numpy_partials(arrays, grads, tasks, cols):
    """backward_rows' partial rows (pw, pb, sw, sb), from NumPy."""
    dweight, dbias = grads
    if dweight is None:
        return (None, None, None, None)
    return (*numpy_partial_rows(tasks, cols, np.float64, dbias is not None),
            *numpy_partial_rows(tasks, cols, work_dtype(arrays[1][0].dtype),
                                dbias is not None))
