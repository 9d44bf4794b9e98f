"""Small calls over other axes than the last one, as rows: when the normalized axes are
consecutive, in increasing order, and followed only by size-1 axes -- ``axis=(-2, -1)``,
a module's several-axis ``normalized_shape``, ``axis=(1, 2, 3)`` over (N, C, H, W), a
column (n, 1) over ``axis=0`` -- the elements of a C-contiguous x are (rows, cols) rows
in memory, and a weight or bias of the normalized shape is one row.  The call -- forward,
fused, moments or backward -- is then the last-axis small call (_small_front.small_call,
small_moments_call, _small_backward_front.small_backward_call, which hand these axes
here) on views, its results viewed back.

The general path (the kind table) plans the same rows and runs the same row kernel on
them, so the bits are the same; it costs ~6-7 us of Python a (1, 768) call, these views
~0.6-1.8 us.  Anything else -- a 1-D weight that broadcasts over two axes, a strided x,
axes out of order or given as NumPy integers, a residual that broadcasts -- returns None
for the general path.
"""
import math

import numpy as np

from . import _small_backward_front, _small_front

_NDARRAY = np.ndarray


def _axes_rows(x, axis):
    """(first, end, cols): x's normalized axes are first..end - 1 (an int is one axis),
    followed only by size-1 axes, and cols is the product of their sizes; None for any
    other form (the general path checks it and raises)."""
    if type(x) is not _NDARRAY or not x.flags.c_contiguous:
        return None
    shape = x.shape
    ndim = len(shape)
    if type(axis) is int:  # (one axis, as a column's: settled without the table)
        if not -ndim <= axis < ndim:
            return None
        first = axis % ndim
        end = first + 1
    elif type(axis) is tuple:
        for a in axis:  # (ints only: a NumPy integer or a bool is the general path's)
            if type(a) is not int:
                return None
        key = (ndim, axis)
        run = _RUNS.get(key)
        if run is None:
            if len(_RUNS) >= _MAX_RUNS:
                _RUNS.clear()
            run = _RUNS[key] = _run_of(axis, ndim)
        if not run:
            return None
        first, end = run
    else:
        return None
    if end != ndim:
        tail = shape[end:]
        if tail.count(1) != len(tail):
            return None
    cols = shape[first] if end - first == 1 else math.prod(shape[first:end])
    return None if cols == 0 else (first, end, cols)


# (ndim, axis) -> (first, end) of the run of axes it names, or False: settled once per
# form (a loop over the axes costs ~0.3 us of a ~2 us call), for a bounded number of forms
_RUNS = {}
_MAX_RUNS = 256


def _run_of(axis, ndim):
    """(first, end) when the int axes of the tuple are first..end - 1 in increasing order,
    within x's ndim axes; False otherwise (out of range, repeated, out of order: the
    general path's to report or to handle)."""
    if not axis or not all(-ndim <= a < ndim for a in axis):
        return False
    first = axis[0] % ndim
    end = first + len(axis)
    return (first, end) if [a % ndim for a in axis] == list(range(first, end)) else False


def small_axes_call(x, weight, bias, eps, centered, out, return_stats, axis, residual=None,
                    residual_out=None):
    """layer_norm/rms_norm and their fused forms over axes that are rows in memory, other
    than an int last axis, or None for the general path."""
    if (type(axis) is int and out is None and residual is None and type(x) is _NDARRAY
            and x.ndim == 2 and x.shape[1] == 1 and (axis == 0 or axis == -2)
            and x.flags.c_contiguous):
        # a column (n, 1) over axis 0, the commonest form here (the latency table's): its
        # transpose is the row (1, n), and so are its statistics ((1, 1), keepdims)
        got = _small_front.small_call(x.T, weight, bias, eps, centered, None, return_stats)
        if got is None:
            return None
        return (got[0].T,) + got[1:] if return_stats else got.T
    form = _axes_rows(x, axis)
    if form is None:
        return None
    first, end, cols = form
    if end - first > 1:  # (one axis: its weight/bias are rows already, checked by the kernel)
        normalized = x.shape[first:end]
        if weight is not None:
            weight = _as_row(weight, normalized)
        if bias is not None:
            bias = _as_row(bias, normalized)
        if weight is False or bias is False:
            return None
    return rows_call(x, first, cols, weight, bias, eps, centered, out, return_stats, residual,
                     residual_out)


def rows_call(x, first, cols, weight, bias, eps, centered, out, return_stats, residual=None,
              residual_out=None):
    """The small call on a C-contiguous x's rows of its axes first.. (cols elements each:
    those axes followed only by size-1 axes), weight/bias as rows (None, or 1-D: the
    kernels check their lengths), out (and residual, residual_out) None, an array it
    may be (x; residual) or a C-contiguous array of x's shape; the results in x's shape
    (the statistics keepdims), or None for the general path.  (Also the several-axis
    modules' call, with rows of their parameters made once.)"""
    shape = x.shape
    ndim = len(shape)
    xr = x if first == ndim - 1 else x.reshape(-1, cols)  # (the last axis, as a tuple)
    yr = _rows_of(out, x, xr, cols)
    if yr is False:
        return None
    if residual is not None:
        rr = _rows_of(residual, x, xr, cols)
        sr = rr if residual_out is residual else _rows_of(residual_out, x, xr, cols)
        if rr is False or sr is False:
            return None  # (a residual that broadcasts: the general path's)
        got = _small_front.small_call(xr, weight, bias, eps, centered, yr, return_stats, -1,
                                      rr, sr)
        if got is None or xr is x:
            return got
        y = got[0].reshape(shape) if out is None else out
        s = got[1].reshape(shape) if residual_out is None else residual_out
        return (y, s) + _keepdims(got[2:], shape, first) if return_stats else (y, s)
    got = _small_front.small_call(xr, weight, bias, eps, centered, yr, return_stats)
    if got is None or xr is x:
        return got
    if not return_stats:
        return got.reshape(shape) if out is None else out
    return (got[0].reshape(shape) if out is None else out,) + _keepdims(got[1:], shape, first)


def _rows_of(a, x, xr, cols):
    """An output, or the residual, as the kernels' rows: None as it is, xr for x itself,
    a C-contiguous array of x's shape as xr reads x (itself, or a (rows, cols) view);
    False for anything else (a strided one: its reshape would be a copy, written in vain;
    a residual that broadcasts)."""
    if a is None or a is x:
        return None if a is None else xr
    if not _fits(a, x.shape):
        return False
    return a if xr is x else a.reshape(-1, cols)


def _keepdims(stats, shape, first):
    """The statistics rows in x's keepdims shape (the normalized axes first.. as 1)."""
    keepdims = shape[:first] + (1,) * (len(shape) - first)
    if len(stats) == 2:
        return stats[0].reshape(keepdims), stats[1].reshape(keepdims)
    return tuple(s.reshape(keepdims) for s in stats)


def _as_row(p, shape):
    """A weight or bias of the normalized shape as one row (a view when it is
    C-contiguous); False for the general path (another shape: a broadcast, or an error
    it reports)."""
    if not isinstance(p, _NDARRAY) or p.shape != shape:  # (a memmap too: small_call's)
        return False
    return p.reshape(-1)


def small_axes_moments_call(x, axis, keepdims):
    """moments over axes that are rows in memory (a tuple, or an int followed by size-1
    axes), or None for the general path."""
    form = _axes_rows(x, axis)
    if form is None:
        return None
    first, end, cols = form
    got = _small_front.small_moments_call(x.reshape(-1, cols), -1, False)
    if got is None:
        return None
    shape = x.shape  # (the size-1 axes after the normalized ones stay)
    kept = shape[:first] + ((1,) * (end - first) if keepdims else ()) + shape[end:]
    return got[0].reshape(kept), got[1].reshape(kept)


def small_axes_backward_call(centered, dy, x, weight, mean, rstd, eps, out, grad_residual,
                             param_grads, axis):
    """layer_norm_backward/rms_norm_backward over axes that are rows in memory, other than
    an int last axis: the last-axis small call (small_backward_call) on views of x, dy,
    grad_residual, out and the statistics as rows, dweight/dbias viewed back in the
    normalized shape; or None for the general path."""
    form = _axes_rows(x, axis)
    if form is None:
        return None
    first, end, cols = form
    shape = x.shape
    ndim = len(shape)
    xr = x if first == ndim - 1 else x.reshape(-1, cols)  # (the last axis, as a tuple)
    dy_r = _rows_of(dy, x, xr, cols)
    gr_r = _rows_of(grad_residual, x, xr, cols)
    out_r = dy_r if out is dy else _rows_of(out, x, xr, cols)
    if dy_r is None or dy_r is False or gr_r is False or out_r is False:
        return None
    normalized = shape[first:end]
    if weight is not None and end - first > 1:
        weight = _as_row(weight, normalized)
        if weight is False:
            return None
    if xr is not x:  # (the statistics, keepdims, as one per row)
        keepdims = shape[:first] + (1,) * (ndim - first)
        if not (_fits(mean, keepdims) and _fits(rstd, keepdims)):
            return None
        mean = None if mean is None else mean.reshape(-1, 1)
        rstd = None if rstd is None else rstd.reshape(-1, 1)
    got = _small_backward_front.small_backward_call(
        centered, dy_r, xr, weight, mean, rstd, eps, out_r, gr_r, param_grads, -1)
    if got is None or xr is x:
        return got
    dx, dweight, dbias = got
    return (out if out is not None else dx.reshape(shape),
            None if dweight is None else dweight.reshape(normalized),
            None if dbias is None else dbias.reshape(normalized))


def _fits(a, shape):
    """Whether a is None or a C-contiguous ndarray of that shape, read as rows without a
    copy (a broadcast one, a strided one, another shape: the general path's)."""
    return a is None or (type(a) is _NDARRAY and a.shape == shape and a.flags.c_contiguous)
