"""The CPU front's engine: validated arrays in, kernel chosen and run, results out.

Public functions (numba_ln/_api.py) parse their own arguments and call ``normalize``; this
module owns dtype conversion, aliasing between inputs and outputs, kernel selection
(serial / parallel rows / split rows / channels) and the statistics' keepdims shapes.
"""
import numba
import numpy as np

from . import _config, _threading
from ._layout import make_plan
from ._validate import check_output, prepare_param, result_dtype
from .cpu import channels as _channels
from .cpu._elements import IN_PLACE
from .cpu import rows as _rows

def _same_view(a, b):
    ai, bi = a.__array_interface__, b.__array_interface__
    return ai["data"][0] == bi["data"][0] and a.strides == b.strides


def _same_kernel_view(a, b):
    """Whether two kernel views (buf, start, *steps) address the same elements."""
    if a is None or b is None:
        return False
    item = a[0].itemsize
    return (a[0].__array_interface__["data"][0] + a[1] * item
            == b[0].__array_interface__["data"][0] + b[1] * item and a[2:] == b[2:])


def _detach_inputs(inputs, outputs):
    """Copy any input that an output overlaps other than element for element."""
    detached = []
    for a in inputs:
        if a is not None and any(
            o is not None and np.may_share_memory(a, o) and not _same_view(a, o) for o in outputs
        ):
            a = a.copy()
        detached.append(a)
    return detached


def run_rows(y, s, x, r, w, b, stats, rows, cols, eps, centered):
    """Run the rows kernel that suits the shape: serial below the work threshold (no
    thread start-up), split rows for a few rows of several pieces, else rows in parallel
    in tasks of about TASK_ELEMENTS.  Every choice depends on the shape alone, never on
    the thread count, so neither do the results (one thread runs the same kernel, with the
    same tasks, one after the other).  y/s/x/r are row views (buf, start, stride) or None."""
    args = (y, s, x, r, w, b, stats, rows, cols, eps, centered)
    if rows * cols <= _config.SERIAL_MAX_ELEMENTS:
        return _rows.rows_serial(*args)
    if rows < _config.SPLIT_MAX_ROWS and cols > _config.PIECE:
        return _launch(_rows.rows_split, *args)
    per_task = max(1, _config.TASK_ELEMENTS // cols)
    return _launch(_rows.rows_parallel, *args, per_task)


def _run_kernel(plan, dtype, y, s, x, r, w, b, eps, centered, stats):
    """Pick the kernel for the plan's shape and run it.  y/s/x/r are views or None."""
    if plan.kind == "rows":
        return run_rows(y, s, x, r, w, b, stats, plan.rows, plan.cols, eps, centered)
    tile = _config.TILE_BYTES // (plan.cols * dtype.itemsize)
    tile = max(_config.TILE_MIN_POSITIONS, min(_config.TILE_MAX_POSITIONS, tile, plan.inner))
    args = (y, x, w, b, stats, plan.outer, plan.cols, plan.inner, eps, centered, tile)
    if numba.get_num_threads() == 1 or plan.rows * plan.cols <= _config.SERIAL_MAX_ELEMENTS:
        return _channels.channels_serial(*args)
    return _launch(_channels.channels_parallel, *args)


def _launch(kernel, *args):
    if _threading.needs_lock():
        with _threading.PARALLEL_LOCK:
            return kernel(*args)
    return kernel(*args)


def _output_view(plan, out, dtype):
    """(array written by the kernel, its view); a fresh array when out's layout is unfit."""
    if out is not None:
        got = plan.kernel_output(out)
        if got is not None:
            return out, got
    fresh = plan.empty(dtype)
    return fresh, plan.kernel_output(fresh)


def normalize(x, axes, weight, bias, eps, *, centered, out=None, residual=None,
              residual_out=None, want_y=True, want_stats=False):
    """Normalize x (an ndarray) over axes.  Returns (y, s, mean, second): y None when
    not want_y, s None without a residual, mean/second float64 keepdims arrays or None."""
    dtype = result_dtype(x.dtype if residual is None else np.result_type(x, residual))
    y_obj, s_obj = out, residual_out  # returned as given (a memmap stays a memmap)
    if out is not None:
        out = check_output(out, "out", x.shape, dtype)
    if residual_out is not None:
        residual_out = check_output(residual_out, "residual_out", x.shape, dtype)
        if out is not None and np.may_share_memory(out, residual_out):
            raise ValueError("out and residual_out must not overlap")
    norm_shape = tuple(x.shape[a] for a in axes)
    weight = prepare_param(weight, "weight", norm_shape, dtype)
    bias = prepare_param(bias, "bias", norm_shape, dtype)
    if 0 in norm_shape:
        raise ValueError(f"the normalized shape {norm_shape} has no elements (axis={axes})")

    if x.dtype != dtype:
        x = x.astype(dtype)
    if residual is not None:
        if residual.dtype != dtype:
            residual = residual.astype(dtype)
        if residual.shape != x.shape:  # a broadcast view is read-only: another kernel type
            residual = np.broadcast_to(residual, x.shape)
    x, residual = _detach_inputs((x, residual), (out, residual_out))

    plan = make_plan(x, axes)
    if plan.rows == 0:
        y = (out if out is not None else np.empty(x.shape, dtype)) if want_y else None
        s = None
        if residual is not None:
            s = residual_out if residual_out is not None else np.empty(x.shape, dtype)
        empty_stats = np.empty(plan.stats_shape()) if want_stats else None
        return _given(y, y_obj), _given(s, s_obj), empty_stats, empty_stats

    s = s_view = r_view = None
    if residual is not None and plan.kind == "channels":
        # The fused add kernel reads rows; for other layouts form s in one NumPy pass.
        s, s_view = _output_view(plan, residual_out, dtype)
        np.add(x, residual, out=s)
        x, residual = s, None
    elif residual is not None:
        s, s_view = _output_view(plan, residual_out, dtype)
        r_view = plan.kernel_input(residual)
    y, y_view = _output_view(plan, out, dtype) if want_y else (None, None)
    x_view = plan.kernel_input(x)
    if plan.kind == "rows":  # outputs over their own input go as IN_PLACE (cpu/_elements)
        if r_view is None and _same_kernel_view(y_view, x_view):
            y_view = IN_PLACE
        if r_view is not None and _same_kernel_view(s_view, r_view):
            s_view = IN_PLACE
    stats = (np.empty(plan.rows), np.empty(plan.rows)) if want_stats else None

    _run_kernel(plan, dtype, y_view, s_view if r_view is not None else None, x_view, r_view,
                plan.param(weight), plan.param(bias), eps, centered, stats)

    if out is not None and y is not out:
        np.copyto(out, y)
        y = out
    if residual_out is not None and s is not residual_out:
        np.copyto(residual_out, s)
        s = residual_out
    y, s = _given(y, y_obj), _given(s, s_obj)
    if not want_stats:
        return y, s, None, None
    return y, s, plan.stats_to_keepdims(stats[0]), plan.stats_to_keepdims(stats[1])


def _given(result, given):
    """The output object the caller passed (its contents are result), else result."""
    return result if given is None else given
