"""The LayerNorm backward over a single normalized element (backward.run_backward), in
NumPy: y = (x - x) * rstd * w + b does not depend on x, so dx is exactly 0
(+ grad_residual) and dweight exactly 0 for finite rows, as torch gives them.  The
kernels' formula, rstd * (g - mean(g)) - ..., with mean(g) = g rounded on another path,
left up to 2.7e-5 in float32.  Here in float64 with the cancellations exact, (g - g) and
(x - mean); NaN and inf propagate as in the kernels.

The views are the kernels' (``(buf, start, stride)``), so 16-bit data come as their bits
(_dtypes.kernel_dtype): read exactly, and written rounded as cpu/_storage.py stores them
(to float32, then to nearest even).
"""
import numpy as np

from .._dtypes import half_of_bits
from ._elements import IN_PLACE


def single_column(dx, dy, x, w, stats, grad_residual, rows, eps, dweight, dbias):
    """dx written, dweight and dbias (None: not wanted) as run_backward writes them (stats:
    the kernels' (mean, rstd, given))."""
    def at(view):  # (buffer, positions) of the rows' single elements (any row stride)
        return view[0], view[1] + np.arange(rows) * view[2]

    def column(view):
        buf, positions = at(view)
        return _values(buf[positions])

    dy_v, x_v = column(dy), column(x)
    with np.errstate(all="ignore"):  # (NaN and inf rows give NaN silently, as the kernels)
        mean = stats[0] if stats[2] else x_v
        rstd = stats[1] if stats[2] else 1.0 / np.sqrt((x_v - x_v) ** 2 + eps)
        xhat = (x_v - mean) * rstd
        g = dy_v * (1.0 if w is None else float(w[0]))
        value = rstd * ((g - g) - xhat * (g * xhat))
        dweight_sum = np.sum(dy_v * xhat)
    if grad_residual is not None:
        value += column(grad_residual)
    buf, positions = at(dy if dx is IN_PLACE else dx)
    buf[positions] = _stored(value, buf.dtype)
    if dweight is not None:
        dweight[0] = dweight_sum  # (rounded once to its dtype)
        dbias[0] = np.sum(dy_v)


def _values(elements):
    """Elements as float64 (16-bit bits read as their dtype: exactly)."""
    half = half_of_bits(elements.dtype)
    return (elements if half is None else elements.view(half)).astype(np.float64)


def _stored(value, bits):
    """float64 values as a buffer of dtype ``bits`` holds them (16-bit: rounded to float32,
    then to the 16-bit dtype to nearest even, as the kernels' store)."""
    half = half_of_bits(bits)
    if half is None:
        return value
    with np.errstate(over="ignore"):  # (float16: inf, as the kernels give)
        return value.astype(np.float32).astype(half).view(bits)
