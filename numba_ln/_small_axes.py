"""Small calls over other axes than the last one, as rows: when the normalized axes are
consecutive, in increasing order, and followed only by size-1 axes -- ``axis=(-2, -1)``,
a module's several-axis ``normalized_shape``, ``axis=(1, 2, 3)`` over (N, C, H, W), a
column (n, 1) over ``axis=0`` -- the elements of a C-contiguous x are (rows, cols) rows
in memory, and a weight or bias of the normalized shape is one row.  The call -- forward,
fused, moments or backward (_small_axes_backward.py) -- is then the last-axis small call
(_small_front.small_call, _small_moments.small_moments_call and
_small_backward_front.small_backward_call, which hand these axes here) on views, its
results viewed back; without statistics or a residual, x, y and the parameters go as
they are to kernels that read them as rows (rows_kernel_call).

The general path (the kind table) plans the same rows and runs the same row kernel on
them, so the bits are the same; it costs ~6-7 us of Python a (1, 768) call, these views
~0.6-1.8 us.  Anything else -- a 1-D weight that broadcasts over two axes, a strided x,
axes out of order or given as NumPy integers, a residual that broadcasts -- returns None
for the general path.
"""
import math

import numpy as np

from . import _config, _dtypes, _small_front, _small_moments
from ._small_values import _EPS_TYPES, _half_bits, _kernel_param, _other_eps, _output
from .cpu._elements import IN_PLACE
from .cpu.small import small_layer_norm_rows, small_rms_norm_rows

_NDARRAY = np.ndarray
_F32, _F64 = _dtypes.F32, _dtypes.F64
_SMALL = _config.SERIAL_MAX_ELEMENTS


def _axes_rows(x, axis):
    """(first, end, cols): x's normalized axes are first..end - 1 (an int is one axis),
    followed only by size-1 axes, and cols is the product of their sizes; None for any
    other form (the general path checks it and raises)."""
    if type(x) is not _NDARRAY or not x.flags.c_contiguous:
        return None
    shape = x.shape
    if type(axis) is tuple:
        # (the form of the last tuple call, kept with the tuple itself: a literal axis
        # is one object call after call, and the same object holds the same ints; one
        # reference read and written whole, so threads need no lock)
        last = _last_tuple_form
        if last[0] is axis and last[1] == shape:
            return last[2]
        form = _tuple_form(shape, axis)
        _remember(axis, shape, form)
        return form
    if type(axis) is not int:
        return None
    ndim = len(shape)
    if not -ndim <= axis < ndim:  # (one axis, as a column's: settled without the table)
        return None
    first = axis % ndim
    return _trailing_form(shape, first, first + 1)


def _tuple_form(shape, axis):
    """_axes_rows for a tuple axis."""
    for a in axis:  # (ints only: a NumPy integer or a bool is the general path's)
        if type(a) is not int:
            return None
    ndim = len(shape)
    key = (ndim, axis)
    run = _RUNS.get(key)
    if run is None:
        if len(_RUNS) >= _MAX_RUNS:
            _RUNS.clear()
        run = _RUNS[key] = _run_of(axis, ndim)
    return _trailing_form(shape, *run) if run else None


def _trailing_form(shape, first, end):
    """(first, end, cols) when only size-1 axes follow the axes first..end - 1 and they
    hold elements; else None."""
    if end != len(shape):
        tail = shape[end:]
        if tail.count(1) != len(tail):
            return None
    cols = shape[first] if end - first == 1 else math.prod(shape[first:end])
    return None if cols == 0 else (first, end, cols)


_last_tuple_form = (None, None, None)


def _remember(axis, shape, form):
    global _last_tuple_form
    _last_tuple_form = (axis, shape, form)


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
        # a column (n, 1) over axis 0, the commonest form here (the latency table's): one
        # row of n in memory, read as it is by the rows kernel; with statistics its
        # transpose is the row (1, n), and so are they ((1, 1), keepdims)
        # (1-D parameters: the kernel checks their length, and reads any shape as a row)
        if return_stats is False and (weight is None or (
                type(weight) is _NDARRAY and weight.ndim == 1)) and (bias is None or (
                type(bias) is _NDARRAY and bias.ndim == 1)):
            return rows_kernel_call(x, x.shape[0], weight, bias, eps, centered, None)
        got = _small_front.small_call(x.T, weight, bias, eps, centered, None, return_stats)
        if got is None:
            return None
        return (got[0].T,) + got[1:] if return_stats else got.T
    form = _axes_rows(x, axis)
    if form is None:
        return None
    first, end, cols = form
    # (return_stats is False, not falsy: None or [] is the general path's TypeError)
    if residual is None and return_stats is False and first != x.ndim - 1:
        # (x's rows as they are, the parameters in the normalized shape: rows_kernel_call)
        normalized = x.shape[first:end]
        if _shaped(weight, normalized) and _shaped(bias, normalized):
            return rows_kernel_call(x, cols, weight, bias, eps, centered, out)
        return None
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
    modules' call with statistics, with rows of their parameters made once; without,
    they call rows_kernel_call.)"""
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


def rows_kernel_call(x, cols, weight, bias, eps, centered, out):
    """y of layer_norm/rms_norm without statistics or a residual, x and y as they are
    (small_layer_norm_rows: the kernel reads them as rows of cols, ~0.3 us of reshapes less
    than the last-axis small call on views), or None for the general path.  The checks
    are small_call's general gate (its dtypes, eps, parameters and outputs), written out
    here because small_call inlines its own: the parameters' tests inlined as there, each
    function call being ~50 ns of a ~1.5 us call."""
    if not 0 < x.size <= _SMALL:
        return None
    dtype = x.dtype
    if type(eps) is not float:
        eps = float(eps) if type(eps) in _EPS_TYPES else _other_eps(eps, centered, dtype)
        if eps is None:
            return None
    if dtype is _F32 or dtype is _F64:
        bits = None
    else:
        bits = _half_bits(dtype)
        if bits is None:
            return None
    # (float32/float64 parameters of any rank as they are: the kernel reads them as a row)
    if weight is not None and (type(weight) is not _NDARRAY
                               or (weight.dtype is not _F32 and weight.dtype is not _F64)):
        weight = _param_row(weight)
    if bias is not None and (type(bias) is not _NDARRAY
                             or (bias.dtype is not _F32 and bias.dtype is not _F64)):
        bias = _param_row(bias)
    if weight is False or bias is False:
        return None
    y = _output(out, x.shape, dtype)
    if y is None:
        return None
    if bits is None:
        yk, xk = (IN_PLACE if y is x else y), x
    else:
        yk, xk = (IN_PLACE if y is x else y.view(bits)), x.view(bits)
    if (small_layer_norm_rows(yk, xk, weight, bias, eps, cols) if centered
            else small_rms_norm_rows(yk, xk, weight, eps, cols)):
        return None
    return y


def _param_row(p):
    """A weight or bias other than a float32/float64 ndarray as _kernel_param gives it,
    made one row (a memmap's view, 16-bit ones' bits), or False for the general path."""
    return _kernel_param(p.reshape(-1)) if isinstance(p, _NDARRAY) else False


def _shaped(p, shape):
    """Whether weight/bias p is None or an ndarray (a memmap too) of that shape."""
    return p is None or (isinstance(p, _NDARRAY) and p.shape == shape)


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
    got = _small_moments.small_moments_call(x.reshape(-1, cols), -1, False)
    if got is None:
        return None
    shape = x.shape  # (the size-1 axes after the normalized ones stay)
    kept = shape[:first] + ((1,) * (end - first) if keepdims else ()) + shape[end:]
    if not kept:  # (every axis reduced: NumPy scalars, as x.mean() gives)
        return got[0][0], got[1][0]
    return got[0].reshape(kept), got[1].reshape(kept)


def _fits(a, shape):
    """Whether a is None or a C-contiguous ndarray of that shape, read as rows without a
    copy (a broadcast one, a strided one, another shape: the general path's)."""
    return a is None or (type(a) is _NDARRAY and a.shape == shape and a.flags.c_contiguous)
