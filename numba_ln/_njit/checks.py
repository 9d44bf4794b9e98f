"""Typing-time checks of numba_ln's @njit overloads: plain Python, run while Numba types a
user's call; each failure is a TypingError that says what is supported.

Why these are not _spec.py's rules: inside a user's compiled function there are no arrays
and no values at typing time, only Numba types, and a typing failure must be a
TypingError raised while typing, not a ValueError at run time.  So this module keeps only
what the types decide (array or not, dtype, rank, layout, writeability, whether axis,
eps and the flags are constants), with the dtype table of _dtypes.py; the value rules
(eps's range, lengths, shapes) are checked in compiled code by core.py, worded as _spec's
messages."""
import numpy as np
from numba import types
from numba.core.errors import TypingError
from numba.np.numpy_support import as_dtype

from .. import _dtypes
from .._spec import check_eps

SUPPORTED_DTYPES = _dtypes.SUPPORTED["cpu"]


def _fail(fname, message):
    raise TypingError(f"numba_ln.{fname} in @njit code: {message}")


def _absent(t):
    """An omitted argument arrives as its Python default, an explicit None as types.none."""
    return t is None or isinstance(t, (types.NoneType, types.Omitted))


def _constant(t):
    """(True, value) for a Python default or a literal type, else (False, None)."""
    if isinstance(t, types.Omitted):
        return True, t.value
    if isinstance(t, types.Literal):
        return True, t.literal_value
    if isinstance(t, types.Type):
        return False, None
    return True, t


def _flag(fname, name, t, ints=True):
    """A constant flag: True/False, or the integers 0 and 1 (as from Python: flag()), or
    bools only (ints=False: param_grads, as from Python)."""
    known, value = _constant(t)
    if not known or not (isinstance(value, (bool, np.bool_)) or (
            ints and isinstance(value, (int, np.integer)) and value in (0, 1))):
        _fail(fname, f"{name} must be a constant True or False{' (or 0 or 1)' if ints else ''}"
                     f" (the type of the result depends on it), got {t}")
    return bool(value)


def _check_axis(fname, axis, ndim):
    known, value = _constant(axis)
    if isinstance(axis, types.BaseTuple) and len(axis) == 1:
        known, value = _constant(axis[0])
    elif known and isinstance(value, tuple) and len(value) == 1:
        value = value[0]
    if (known and isinstance(value, (int, np.integer)) and not isinstance(value, bool)
            and value in (-1, ndim - 1)):
        return
    got = value if known else axis
    _fail(fname, f"only the last axis is supported, as a constant: axis=-1 (the default) or "
                 f"{ndim - 1}; got axis={got}. Call numba_ln.{fname} from Python for other "
                 "axes.")


def _check_eps(fname, eps, centered, dtype):
    """None, or for RMSNorm's eps=None (torch's) the float the call uses: the machine
    epsilon of the dtype it computes in (_spec.check_eps's rule); fails for a non-number."""
    known, value = _constant(eps)
    if not centered and (isinstance(eps, types.NoneType) or (known and value is None)):
        return check_eps(None, work=_dtypes.work_dtype(dtype))
    if known:
        ok = isinstance(value, (int, float, np.integer, np.floating))
        ok = ok and not isinstance(value, (bool, np.bool_))
    else:
        ok = isinstance(eps, (types.Integer, types.Float)) and not isinstance(eps, types.Boolean)
    _no_half(fname, "eps", eps)
    if not ok:
        _fail(fname, f"eps must be a real number (int or float), got {eps}")


def _real_dtype(t):
    try:
        dtype = as_dtype(t.dtype)
    except Exception:  # records, objects: nothing numba_ln can normalize
        return None
    return dtype if _dtypes.is_real(dtype) else None


def _no_half(fname, name, t):
    """16-bit float arrays are taken from Python only.  (Numba cannot type a bfloat16
    array at all: such a call fails in Numba's dispatcher, before any check here.)  A
    float16 scalar cannot even be converted (a Numba traceback, a NotImplementedError)."""
    if t == types.float16:
        _fail(fname, f"{name} is a float16 scalar, which Numba's CPU backend cannot "
                     f"compute with; pass a float or np.float32")
    if isinstance(t, types.Array) and t.dtype == types.float16:
        _fail(fname, f"{name} is a float16 array; 16-bit arrays (float16, bfloat16) are "
                     f"supported when numba_ln.{fname} is called from Python, not in @njit "
                     f"code (Numba's CPU backend has no 16-bit float type); supported here: "
                     f"{SUPPORTED_DTYPES}")


def _x_dtype(fname, x, name="x"):
    """The result dtype for array argument x, with _validate's rule."""
    if not isinstance(x, types.Array) or x.ndim == 0:
        _fail(fname, f"{name} must be a NumPy array of 1 or more dimensions, got {x}")
    _no_half(fname, name, x)
    try:
        return _dtypes.result_dtype(as_dtype(x.dtype), name)
    except Exception:  # NumPy's TypeError, or Numba's for dtypes NumPy has no name for
        _fail(fname, f"{name} has dtype {x.dtype}, which numba_ln does not support; "
                     f"supported: {SUPPORTED_DTYPES}")


def _is_view(t, dtype):
    """True when array type t goes to the kernel as it is: flattened, not copied."""
    return t.layout == "C" and t.mutable and as_dtype(t.dtype) == dtype


def _param_kind(fname, name, t, dtype):
    if _absent(t):
        return "absent"
    _no_half(fname, name, t)
    if isinstance(t, (types.Number, types.Boolean)) and not isinstance(t, types.Complex):
        return "scalar"
    if isinstance(t, types.Array) and _real_dtype(t) is not None:  # (0-d too: broadcast)
        return "view" if t.ndim == 1 and _is_view(t, dtype) else "copy"
    _fail(fname, f"{name} must be None, a real number or a real (float, int or bool) array "
                 f"broadcastable to (x.shape[-1],), got {t}")


def _check_residual(fname, t, x):
    _no_half(fname, "residual", t)
    if not isinstance(t, types.Array) or not 1 <= t.ndim <= x.ndim or _real_dtype(t) is None:
        _fail(fname, f"residual must be a real (float, int or bool) array of at most x's "
                     f"{x.ndim} dimensions, broadcastable to x's shape, got {t}")


def _output_kind(fname, name, t, x, dtype):
    """"new" (allocated here), "view" (written in place) or "temp" (written, then copied)."""
    if _absent(t):
        return "new"
    _no_half(fname, name, t)
    if (not isinstance(t, types.Array) or t.ndim != x.ndim or as_dtype(t.dtype) != dtype
            or not t.mutable):
        _fail(fname, f"{name} must be a writeable {dtype} array with x's {x.ndim} "
                     f"dimension(s) (the result dtype and shape), got {t}")
    return "view" if t.layout == "C" else "temp"
