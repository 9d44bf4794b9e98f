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

from ._elements import IN_PLACE

_BFLOAT16_BITS, _FLOAT16_BITS = np.dtype(np.uint16), np.dtype(np.int16)


def single_column(dx, dy, x, w, stats, grad_residual, rows, eps, param_grads):
    """dx written; returns (dweight, dbias) as float64 (run_backward's contract)."""
    def at(view):  # (buffer, positions) of the rows' single elements (any row stride)
        return view[0], view[1] + np.arange(rows) * view[2]

    def column(view):
        buf, positions = at(view)
        return _values(buf[positions])

    dy_v, x_v = column(dy), column(x)
    with np.errstate(all="ignore"):  # (NaN and inf rows give NaN silently, as the kernels)
        mean = x_v if stats is None else stats[0]
        rstd = 1.0 / np.sqrt((x_v - x_v) ** 2 + eps) if stats is None else stats[1]
        xhat = (x_v - mean) * rstd
        g = dy_v * (1.0 if w is None else float(w[0]))
        value = rstd * ((g - g) - xhat * (g * xhat))
        dweight = np.sum(dy_v * xhat)
    if grad_residual is not None:
        value += column(grad_residual)
    buf, positions = at(dy if dx is IN_PLACE else dx)
    buf[positions] = _stored(value, buf.dtype)
    if not param_grads:
        return None, None
    return np.array([dweight]), np.array([np.sum(dy_v)])


def _values(elements):
    """Elements as float64 (16-bit bits decoded exactly)."""
    if elements.dtype == _BFLOAT16_BITS:
        return (elements.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    if elements.dtype == _FLOAT16_BITS:
        return elements.view(np.float16).astype(np.float64)
    return elements.astype(np.float64)


def _stored(value, dtype):
    """float64 values as a buffer of dtype holds them (16-bit: the bits of value rounded to
    float32 and then to the 16-bit format, as the kernels' store)."""
    if dtype == _FLOAT16_BITS:
        with np.errstate(over="ignore"):
            return value.astype(np.float32).astype(np.float16).view(np.int16)
    if dtype != _BFLOAT16_BITS:
        return value
    bits = value.astype(np.float32).view(np.uint32)
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> 16) & np.uint32(1))) >> 16
    quiet_nan = (bits >> 16) | np.uint32(0x40)
    return np.where(np.isnan(value), quiet_nan, rounded).astype(np.uint16)
