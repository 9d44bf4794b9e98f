"""The backward's small calls over axes that are rows in memory (_small_axes.py says
which): the last-axis small backward call (_small_backward_front.small_backward_call,
which hands these axes here) on views of x, dy, grad_residual, out and the statistics as
rows, dweight/dbias viewed back in the normalized shape; without statistics or
grad_residual, with the parameter gradients, x, dy, dx and the weight go as they are to
kernels that read them as rows (small_backward_call with rows)."""
from . import _config, _small_backward_front
from ._small_axes import _as_row, _axes_rows, _fits, _rows_of
from ._small_values import _NDARRAY

_SERIAL_MAX = _config.SERIAL_MAX_ELEMENTS // _config.BACKWARD_COST


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
        # (x, dy, dx and the weight as they are: small_backward_call's rows)
        normalized = shape[first:end]
        if weight is None or (isinstance(weight, _NDARRAY) and weight.shape == normalized):
            return _small_backward_front.small_backward_call(
                centered, dy, x, weight, None, None, eps, out, None, True, -1,
                (cols, normalized))
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

