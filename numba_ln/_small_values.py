"""The argument values the small-call gates convert or pass on (_small_front.py and its
siblings): eps as a float, 16-bit data as the integer bits the kernels read, weight/bias
as the kernels take them, and a fresh or given output."""
import numpy as np

from . import _dtypes, _rstd
from ._spec import check_eps
from .cpu.convert import narrow_serial

_F32, _F64, _F16 = _dtypes.F32, _dtypes.F64, _dtypes.F16
# eps as users write it: a NumPy scalar from a config or a checkpoint is a float here (the
# general path reads it with float() too, so the result is the same).  Not bool, and not a
# Python int, which float() may not take (_other_eps).
_EPS_TYPES = frozenset({np.float64, np.float32, np.float16, np.int64, np.int32})
# RMSNorm's eps=None (torch's): the machine epsilon of the dtype a call computes in, by x's
# dtype (filled on first sight; _spec.check_eps gives the general path the same value)
_NONE_EPS = {}
# 16-bit dtypes -> the integer dtype the kernels read them as (bfloat16 added on sight:
# numba_ln never imports ml_dtypes itself)
_HALF_BITS = {_F16: np.dtype(np.int16)}
# (module globals: a global name is found in one dict lookup, np.ndarray in two)
_NDARRAY, _MEMMAP, _empty = np.ndarray, np.memmap, np.empty
_F32_MAX = float(np.finfo(np.float32).max)


def _other_eps(eps, centered, dtype):
    """An eps the gates do not convert inline as a float: a Python int within float's
    range, or RMSNorm's eps=None as the float it stands for; None for the general path
    (which raises the proper error for anything else, an int past float's range too)."""
    if type(eps) is int:
        try:
            return float(eps)
        except OverflowError:
            return None
    if eps is not None or centered:
        return None
    value = _NONE_EPS.get(dtype)
    if value is None and _dtypes.is_real(dtype):
        value = _NONE_EPS[dtype] = check_eps(None, work=_dtypes.work_dtype(
            _dtypes.result_dtype(dtype, backend="numpy")))
    return value


def _half_bits(dtype):
    """The kernels' integer dtype for 16-bit float data, or None for any other dtype."""
    bits = _HALF_BITS.get(dtype)
    if bits is None and _dtypes.is_bfloat16(dtype):
        bits = _HALF_BITS[dtype] = _dtypes.kernel_dtype(dtype)
    return bits


def _unmapped(p):
    """A memory-mapped weight or bias (``np.load(path, mmap_mode="r")``) as a plain ndarray
    view of the same memory (~0.1 us; the general path's checks of a memmap cost ~18
    us); anything else as it is."""
    return p.view(_NDARRAY) if type(p) is _MEMMAP else p


def _same_dtype(p, dtype):
    """weight/bias for float32/float64 data (the backward gate's): None, or a 1-D array of
    x's dtype (parameters of any other real dtype are cast, as the general path casts them:
    float64 or 16-bit weights from a checkpoint on float32 data; a 16-bit one took the
    general path, 47 against 3.4 us at (1, 768)); False when the general path must take
    the call."""
    p = _unmapped(p)
    if p is None or (type(p) is _NDARRAY and p.dtype is dtype):
        return p
    if type(p) is not _NDARRAY or p.ndim != 1 or (
            p.dtype is not _F32 and p.dtype is not _F64 and not _dtypes.is_real(p.dtype)):
        return False
    if p.dtype is _F64 and dtype is _F32 and p.flags.c_contiguous:
        narrow = _empty(p.shape, _F32)  # (silently, as the forward's kernels round them)
        narrow_serial(p, narrow)
        return narrow
    return _rstd.narrowed(p, dtype)


def _kernel_param(p, x=None):
    """weight/bias as the forward's kernels read them, for data of any dtype they take:
    None; float32/float64 as they are (a memmap's through _unmapped); 16-bit as their bits
    (a bfloat16 checkpoint's: the kernels widen them exactly, cpu/small_params.work_param,
    where the general path widens them in NumPy: the same values); a Python number as a
    row of it (_number_row); False for the general path."""
    if type(p) is _NDARRAY:  # (a 16-bit checkpoint's parameter, in few steps: ~0.2 us)
        bits = _HALF_BITS.get(p.dtype)
        if bits is not None and p.ndim == 1:
            return p.view(bits)
    if p is None:
        return None
    p = _unmapped(p)
    if type(p) is not _NDARRAY or p.ndim != 1:
        return False if type(p) is _NDARRAY or x is None else _number_row(p, x)
    if p.dtype is _F32 or p.dtype is _F64:
        return p
    bits = _half_bits(p.dtype)
    return False if bits is None else p.view(bits)


def _number_row(p, x, dtype=None):
    """A Python float weight/bias (or an int that float64 holds exactly) as a row of x's
    width in the work dtype (dtype, or float32 but for float64 data): the general path's
    value, NumPy's (the number as float64, then the work dtype), without its uncached
    rules for a non-array (~40 us against ~2 at (1, 768)); False for anything else."""
    if not (type(p) is float or (type(p) is int and -2**53 <= p <= 2**53)) or x.ndim == 0:
        return False
    if dtype is None:
        dtype = _F64 if x.dtype is _F64 else _F32
    row = _empty(x.shape[-1], dtype)
    if dtype is _F32 and not -_F32_MAX <= p <= _F32_MAX:  # (inf, silently, as the kernels
        with np.errstate(over="ignore"):                  # round a float64 one)
            row.fill(p)
    else:
        row.fill(p)  # (np.full's Python steps cost ~0.5 us more)
    return row


def _output(out, shape, dtype):
    """A fresh output, or out itself when it is an ndarray of the result dtype; None for
    the general path (Numba cannot even type a byte-swapped array)."""
    if out is None:
        return _empty(shape, dtype)
    return out if type(out) is _NDARRAY and out.dtype is dtype else None
