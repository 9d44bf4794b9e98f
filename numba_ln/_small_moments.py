"""The small-call gate of moments over the last axis (_small_front.py has the normalizing
functions' gates and says what a gate settles; other axes: _small_axes.py)."""
from . import _small_axes
from ._small_front import _LAST_AXIS, _SMALL, MAX_DIMS, not_last_axis
from ._small_values import _F32, _F64, _HALF_BITS, _NDARRAY, _empty, _half_bits
from .cpu.small import small_moments


def small_moments_call(x, axis, keepdims):
    """moments(x) over the last axis (an int; other axes: _small_axes.py): (mean, var),
    rows of one array, or None for the general path."""
    if axis is not _LAST_AXIS and not_last_axis(x, axis):
        return _small_axes.small_axes_moments_call(x, axis, keepdims)
    if type(x) is not _NDARRAY or not 0 < x.size <= _SMALL or not x.flags.c_contiguous:
        return None
    dtype = x.dtype
    if dtype is _F32 or dtype is _F64:
        xk, stats_dtype = x, dtype
    else:
        bits = _HALF_BITS.get(dtype)
        if bits is None:
            bits = _half_bits(dtype)
            if bits is None:
                return None
        xk, stats_dtype = x.view(bits), _F32
    shape = x.shape
    if not shape:
        return None  # (a 0-d array: the general path names the axis error)
    cols = shape[-1]
    rows = x.size // cols
    # (a vector as one row; a batch of higher rank as it is, a kernel variant a rank, as
    # the norms' batches: a view costs ~0.2 us of a ~2 us call)
    if xk.ndim == 1:
        xk = xk.reshape(rows, cols)
    if keepdims and x.ndim == MAX_DIMS:  # (the view below would have 65 axes)
        return None
    stats = _empty((2, rows), stats_dtype)
    if small_moments(xk, stats):
        return None
    if keepdims or x.ndim != 2:
        stats.shape = (2,) + shape[:-1] + ((1,) if keepdims else ())
    return stats[0], stats[1]
