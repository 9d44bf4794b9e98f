"""The backward functions on 16-bit data (bfloat16, float16): mixed-precision training
keeps activations and their gradients in 16 bits.

Computed in float32: x, dy and grad_residual are widened (exact), the float32 backward
runs (``compute``: the public functions' own route, small-call kernels or
_backward_front.backward, with their rules, kernels and accuracy; statistics recomputed or
given in float32, as the forward returns them for 16-bit data), and dx is rounded once to
the 16-bit result dtype.  dweight and dbias stay float32, as torch's autocast keeps
parameter gradients in the parameters' float32.

The result dtype is the common dtype of x, dy and grad_residual (NumPy's promotion):
16-bit with the same 16-bit dtype stays 16-bit, 16-bit with float32 gives float32 (the
float32 call, with the 16-bit arrays widened).  bfloat16 with float16 has no common dtype.

Cost: the widened copies and the rounding are three passes of their own besides the
kernel's (cpu/convert.py, at memory speed), so this runs below the float32 backward's
speed (README, Training).
"""
import numpy as np

from . import _buffers, _dtypes, _spec, _threading
from ._engine import NUMPY
from ._validate import as_array
from .cpu import convert

F32 = _dtypes.F32


def takes(dy, x, grad_residual):
    """Whether a backward call has 16-bit float data (NumPy arrays)."""
    return any(isinstance(a, np.ndarray) and a.dtype.itemsize == 2 and _dtypes.is_half(a.dtype)
               for a in (dy, x, grad_residual))


def half_backward(compute, centered, fname, dy, x, weight, mean, rstd, axis, eps,
                  grad_residual, out, param_grads):
    """(dx, dweight, dbias) of a call with 16-bit data (module docstring); compute(centered,
    fname, dy, x, ...) runs the float32 call."""
    x, dy = as_array(x, "x"), as_array(dy, "dy")
    grad_residual = None if grad_residual is None else as_array(grad_residual,
                                                                "grad_residual")
    dtype = _common_dtype(x, dy, grad_residual)
    x, dy, grad_residual = (_widen(a) for a in (x, dy, grad_residual))
    if isinstance(weight, np.ndarray):  # (as the float32 call would cast it: exactly)
        weight = _widen(weight)
    if not _dtypes.is_half(dtype):  # e.g. bfloat16 x with a float32 dy: a float32 call
        return compute(centered, fname, dy, x, weight, mean, rstd, axis, eps, grad_residual,
                       out, param_grads)
    if out is not None:  # (checked before anything runs; written last, from dx)
        out = _spec.check_output(NUMPY, out, "out", x.shape, dtype)
    dx, dweight, dbias = compute(centered, fname, dy, x, weight, mean, rstd, axis, eps,
                                 grad_residual, None, param_grads)
    dx = _round(dx, dtype)
    if out is None:
        return dx, dweight, dbias
    out[...] = dx  # (into any layout)
    return out, dweight, dbias


def _common_dtype(x, dy, grad_residual):
    """The result dtype: each array's (integers and bools give float64), then NumPy's
    common dtype; a TypeError naming the arrays when there is none."""
    arrays = {"x": x, "dy": dy, "grad_residual": grad_residual}
    dtypes = [_dtypes.result_dtype(a.dtype, name, "numpy") for name, a in arrays.items()
              if a is not None]
    try:
        return np.result_type(*dtypes)
    except TypeError:
        names = ", ".join(f"{name} ({a.dtype})" for name, a in arrays.items() if a is not None)
        raise TypeError(f"{names} have no common dtype (np.result_type refuses them); cast "
                        "them to one dtype first") from None


def _widen(a):
    """A 16-bit float array as float32 (exact); any other array, or None, as it is."""
    if a is None or a.dtype.itemsize != 2 or not _dtypes.is_half(a.dtype):
        return a
    if not (a.flags.c_contiguous and a.dtype.isnative):
        return a.astype(F32)
    wide = _buffers.empty(a.shape, F32)  # (pooled: fresh pages cost more than the pass)
    bits = a.reshape(-1).view(_dtypes.kernel_dtype(a.dtype))
    _run(convert.widen_serial, convert.widen_parallel, bits, wide.reshape(-1))
    return wide


def _round(a, dtype):
    """float32 a rounded once to the 16-bit dtype."""
    if not a.flags.c_contiguous:
        return a.astype(dtype)
    rounded = _buffers.empty(a.shape, dtype)
    _run(convert.narrow_serial, convert.narrow_parallel, a.reshape(-1),
         rounded.reshape(-1).view(_dtypes.kernel_dtype(dtype)))
    return rounded


def _run(serial, parallel, *args):
    if _threading.runs_serial(args[0].size):
        serial(*args)
    else:
        _threading.launch(parallel, *args)
