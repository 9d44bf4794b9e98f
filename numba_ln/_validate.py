"""Argument checks shared by every public function (CPU and GPU fronts).

Everything here runs before any compiled code, raises ``TypeError``/``ValueError`` whose
message names the argument, and never writes to an argument.
"""
import math
import operator

import numpy as np

SUPPORTED_DTYPES = "float32, float64, integer and bool arrays"


def result_dtype(dtype, name="x"):
    """float32 -> float32, float64 -> float64, integers and bools -> float64."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f" and dtype.itemsize in (4, 8):
        return np.dtype(np.float32) if dtype.itemsize == 4 else np.dtype(np.float64)
    if dtype.kind in "biu":
        return np.dtype(np.float64)
    raise TypeError(
        f"{name} has dtype {dtype}, which numba_ln does not support; "
        f"supported: {SUPPORTED_DTYPES}"
    )


def as_array(a, name):
    """a as a plain ndarray, with errors that name the argument (ragged lists, objects).

    ndarray subclasses (np.matrix, np.memmap, ...) are read through a plain ndarray view:
    compiled code knows only ndarray, and np.matrix's reshape keeps two dimensions.  A
    masked array is refused: normalizing its data would silently use the values under the
    mask."""
    if type(a) is np.ndarray:
        return a
    if isinstance(a, np.ma.MaskedArray):
        raise TypeError(f"{name} is a masked array, which numba_ln does not support: pass "
                        f"np.ma.getdata({name}) to normalize every value, or "
                        f"{name}.filled(value) to fill the masked ones first")
    if isinstance(a, np.ndarray):
        return a.view(np.ndarray)
    try:
        arr = np.asarray(a)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name} is not a regular array (ragged nested sequence?): {exc}") from None
    return arr


def normalize_axes(axis, ndim, name="axis"):
    """NumPy's axis argument -> sorted tuple of non-negative axes."""
    if isinstance(axis, (tuple, list)):
        items = list(axis)
        if not items:
            raise ValueError(f"{name} must name at least one axis, got {axis!r}")
    else:
        items = [axis]
    axes = []
    for item in items:
        if isinstance(item, (bool, np.bool_)):
            raise TypeError(f"{name} must be an integer or a tuple of integers, got {axis!r}")
        try:
            a = operator.index(item)
        except TypeError:
            raise TypeError(
                f"{name} must be an integer or a tuple of integers, got {axis!r}"
            ) from None
        if not -ndim <= a < ndim:
            raise ValueError(f"{name} {a} is out of bounds for an array of dimension {ndim}")
        axes.append(a % ndim)
    if len(set(axes)) != len(axes):
        raise ValueError(f"{name} contains a repeated axis: {axis!r}")
    return tuple(sorted(axes))


def check_eps(eps, name="eps"):
    if isinstance(eps, (bool, np.bool_)) or not isinstance(eps, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {type(eps).__name__}")
    value = float(eps)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {eps!r}")
    return value


def prepare_param(p, name, norm_shape, dtype):
    """weight/bias -> contiguous 1-D array of the normalized size in the result dtype."""
    if p is None:
        return None
    arr = as_array(p, name)
    if arr.dtype.kind not in "fiub" or arr.dtype.itemsize > 8:
        raise TypeError(f"{name} has dtype {arr.dtype}; it must be real (float, int or bool)")
    if arr.shape != tuple(norm_shape):
        try:
            arr = np.broadcast_to(arr, norm_shape)
        except ValueError:
            raise ValueError(
                f"{name} of shape {arr.shape} does not broadcast to the normalized shape "
                f"{tuple(norm_shape)}"
            ) from None
    flat = np.ascontiguousarray(arr, dtype=dtype).reshape(-1)
    # Kernels are compiled per array type, and read-only is a type of its own: a copy of
    # the normalized size is cheaper than compiling every kernel again.
    return flat if flat.flags.writeable else flat.copy()


def check_output(out, name, shape, dtype):
    """out= must be a writeable ndarray of the given shape and dtype; returns it as a plain
    ndarray view (see as_array; a masked array is refused)."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(out).__name__}")
    if isinstance(out, np.ma.MaskedArray):
        raise TypeError(f"{name} is a masked array, which numba_ln does not support")
    if out.shape != tuple(shape):
        raise ValueError(f"{name} has shape {out.shape}, expected {tuple(shape)}")
    if out.dtype != dtype:
        raise TypeError(f"{name} has dtype {out.dtype}, expected {dtype}")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only")
    return out if type(out) is np.ndarray else out.view(np.ndarray)
