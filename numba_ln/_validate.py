"""Reading arguments as NumPy arrays, for the CPU backend's array adapter (_engine.py) and
the GPU backend's host-side arguments; the rules themselves are in _spec.py.

Everything here raises ``TypeError``/``ValueError`` whose message names the argument, and
never writes to an argument.
"""
import numpy as np


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
    except (ValueError, TypeError, RuntimeError) as exc:
        if isinstance(a, (list, tuple)):
            raise ValueError(f"{name} is not a regular array (ragged nested sequence?): "
                             f"{exc}") from None
        # (another library's object that refuses NumPy: a torch tensor that requires grad
        # raised torch's RuntimeError, a bfloat16 one was called ragged)
        raise TypeError(f"{name} could not be read as a NumPy array ({type(a).__name__}: "
                        f"{exc})") from None
    if arr.dtype.kind in "OSU":  # None, strings, bytes, dicts, objects: not numbers at all
        got = type(a).__name__
        if isinstance(a, (list, tuple)):
            got += f" of {arr.dtype}"
        raise TypeError(f"{name} must be an array of real numbers, got {got}")
    return arr


def prepare_param(arr, name, norm_shape, dtype):
    """weight/bias (an ndarray the spec checked) -> contiguous 1-D array of the normalized
    size in the kernels' dtype (the array itself when it already is one)."""
    if (arr.shape == norm_shape and arr.ndim == 1 and arr.dtype == dtype
            and arr.flags.writeable and arr.flags.c_contiguous):
        return arr  # (the commonest case, without the calls below: every call pays them)
    if arr.shape != norm_shape:
        arr = np.broadcast_to(arr, norm_shape)
    flat = np.ascontiguousarray(arr, dtype=dtype).reshape(-1)
    # Kernels are compiled per array type, and read-only is a type of its own: a copy of
    # the normalized size is cheaper than compiling every kernel again.
    return flat if flat.flags.writeable else flat.copy()


def output_array(out, name):
    """out=/residual_out= as a plain ndarray view: an ndarray (any subclass but a masked
    array) or TypeError."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(out).__name__}")
    if isinstance(out, np.ma.MaskedArray):
        raise TypeError(f"{name} is a masked array, which numba_ln does not support")
    return out if type(out) is np.ndarray else out.view(np.ndarray)


def flag(value, name):
    """A bool argument (return_stats, keepdims) as a bool: True/False, NumPy's bools, or
    the integers 0 and 1; TypeError for anything else (a string, None, an array), which
    truthiness would read silently -- "no" as True."""
    if type(value) is bool:
        return value
    if isinstance(value, (int, np.integer, np.bool_)) and value in (0, 1):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {value!r}")


def count_or_none(value, name, minimum):
    """A setting that is None or an integer >= minimum (NumPy's integers too, not bools),
    as an int; TypeError for another type, ValueError below minimum, naming the setting."""
    if value is None:
        return None
    message = f"{name} must be an int >= {minimum} or None, got {value!r}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(message)
    if value < minimum:
        raise ValueError(message)
    return int(value)


def converted(a, dtype):
    """a in dtype (an input the kernels read in another dtype: integers, a byte-swapped or
    16-bit array of float32 results).  A broadcast view (a zero stride) is converted over
    its distinct elements only and broadcast again: the kernels read it where it lies, as
    they read a broadcast view of the result dtype, without a copy of its logical size
    (np.broadcast_to(row, (2**16, 2**16)) as int8 took 32 GiB in float64)."""
    if 0 not in a.strides or a.size == 0:
        return a.astype(dtype)
    distinct = a[tuple(slice(0, 1) if step == 0 else slice(None) for step in a.strides)]
    return np.broadcast_to(distinct.astype(dtype), a.shape)
