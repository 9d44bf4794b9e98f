"""The backward's small calls over axes that are rows in memory (_small_axes.py says
which): the last-axis small backward call (_small_backward_front.small_backward_call,
which hands these axes here) on views of x, dy, grad_residual, out and the statistics as
rows, dweight/dbias viewed back in the normalized shape; without statistics or
grad_residual, with the parameter gradients, x, dy, dx and the parameters go as they are
to kernels that read them as rows (rows_backward_call)."""
from . import _config, _small_backward_front
from ._small_axes import _as_row, _axes_rows, _fits, _rows_of
from ._small_front import (_EPS_TYPES, _F32, _F64, _NDARRAY, _empty, _half_bits, _none_eps,
                           _same_dtype)
from .cpu._elements import IN_PLACE
from .cpu.small_backward import small_layer_norm_backward_rows, small_rms_norm_backward_rows


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
    if (first != ndim - 1 and mean is None and rstd is None and grad_residual is None
            and param_grads is True and 0 < x.size <= _SERIAL_MAX):
        # (x, dy, dx and the parameters as they are: rows_backward_call)
        normalized = shape[first:end]
        if weight is None or (isinstance(weight, _NDARRAY) and weight.shape == normalized):
            return rows_backward_call(centered, dy, x, weight, eps, out, cols, normalized)
        return None
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
    if xr is not x and (mean is not None or rstd is not None):  # (keepdims, one per row)
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


_SERIAL_MAX = _config.SERIAL_MAX_ELEMENTS // _config.BACKWARD_COST


def rows_backward_call(centered, dy, x, weight, eps, out, cols, normalized):
    """(dx, dweight, dbias) of the backward without statistics or grad_residual, with
    the parameter gradients, of a C-contiguous x of at most the serial bound's elements
    whose last axes, normalized together, hold cols elements each (weight None or of the
    normalized shape): x, dy, dx and the parameters go as they are to kernels that read
    them as rows (cpu/small_backward.small_layer_norm_backward_rows), dweight and dbias
    made in the normalized shape; None for the general path.  The checks are
    small_backward_call's, written out here as it inlines its own (each function call is
    ~60 ns of a ~4 us call)."""
    if type(eps) is not float:
        eps = float(eps) if type(eps) in _EPS_TYPES else _none_eps(eps, centered, x.dtype)
        if eps is None:
            return None
    dtype = x.dtype
    if dtype is _F32 or dtype is _F64:
        bits, work = None, dtype
    else:
        bits, work = _half_bits(dtype), _F32
        if bits is None:
            return None
    if type(dy) is not _NDARRAY or dy.dtype is not dtype:
        return None
    if weight is not None and (type(weight) is not _NDARRAY or weight.dtype is not work):
        if not isinstance(weight, _NDARRAY):
            return None
        weight = weight.reshape(-1)  # (a memmap stays one: _same_dtype unmaps it)
        if bits is not None and _half_bits(weight.dtype) is not None:
            weight = weight.astype(_F32)  # (16-bit data's 16-bit weight, widened exactly)
        weight = _same_dtype(weight, work)
        if weight is False:
            return None
    dx = _small_backward_front.dx_of(out, x.shape, dtype)
    if dx is None:
        return None
    dx_k = IN_PLACE if dx is dy else dx
    if bits is not None:
        x, dy = x.view(bits), dy.view(bits)
        dx_k = dx_k if dx_k is IN_PLACE else dx_k.view(bits)
    tasking = (_config.TASK_ELEMENTS, _SERIAL_MAX)
    dweight = _empty(normalized, work)
    if centered:
        dbias = _empty(normalized, work)
        declined = small_layer_norm_backward_rows(dx_k, dy, x, weight, dweight, dbias, eps,
                                                  tasking, cols)
    else:
        dbias = None
        declined = small_rms_norm_backward_rows(dx_k, dy, x, weight, dweight, eps, tasking,
                                                cols)
    return None if declined else (dx, dweight, dbias)
