"""The backward functions on 16-bit data (bfloat16, float16): mixed-precision training
keeps activations and their gradients in 16 bits.

The result dtype is the common dtype of x, dy and grad_residual (NumPy's promotion):

- **One 16-bit dtype** (the common case): the general front (_backward_front.py) runs the
  row kernels on the 16-bit data themselves, read as their bits (cpu/_storage.py: widened
  exactly as they are loaded), computed in float32, dx rounded once as it is stored.  The
  weight is taken in float32, and dweight and dbias stay float32, as torch's autocast
  keeps parameter gradients in the parameters' float32.  Statistics are recomputed or
  given in float32, as the forward returns them for 16-bit data.
- **16-bit with float32** gives float32: the float32 call (``compute``: the public
  functions' own route), with the 16-bit arrays widened first (cpu/convert.py, at memory
  speed; NumPy's own cast runs per element).
- bfloat16 with float16 gives float32 with ml_dtypes >= 0.7 (its promotion; a float32
  call as above), and is a TypeError before it, which had no common dtype.

The fused form replaced a widen-compute-round one (three passes of their own over the
data): bfloat16 layer_norm_backward at (4096, 1024), allocating, went from 6.9 ms
(0.56x torch's bfloat16 backward) to 3.1 ms (1.56x), back to back (docs/training.md).
"""
import numpy as np

from . import _buffers, _dtypes, _threading
from ._backward_front import backward, refuse_other_backends
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
    fname, dy, x, ...) runs a float32 call."""
    # (before as_array, which would compute a dask array: refused as every backward call)
    refuse_other_backends(fname, dy, x, weight, mean, rstd, grad_residual, out)
    x, dy = as_array(x, "x"), as_array(dy, "dy")
    grad_residual = None if grad_residual is None else as_array(grad_residual,
                                                                "grad_residual")
    if _dtypes.is_half(_common_dtype(x, dy, grad_residual)):
        return backward(centered, fname, dy, x, weight, mean, rstd, axis, eps, grad_residual,
                        out, param_grads)
    x, dy, grad_residual = (_widen(a) for a in (x, dy, grad_residual))
    if isinstance(weight, np.ndarray):  # (as the float32 call would cast it: exactly)
        weight = _widen(weight)
    return compute(centered, fname, dy, x, weight, mean, rstd, axis, eps, grad_residual, out,
                   param_grads)


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
    _threading.run_kernel(convert.widen_serial, convert.widen_parallel, bits.size, bits,
                          wide.reshape(-1))
    return wide
