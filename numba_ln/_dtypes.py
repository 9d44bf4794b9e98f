"""The dtype table: which storage dtypes each backend takes, what a call returns for them
and what its kernels compute in.  The one place a dtype rule is written; a new dtype is
one entry here (plus its loads and stores in the kernels of the backends that take it:
numba_ln/cpu/_storage.py on the CPU).

result    dtype of y and s
work      precision the kernels compute in; on the GPU also of weight, bias and statistics
stats     dtype of mean, rstd and moments on the CPU (float32 for 16-bit data, as ONNX
          LayerNormalization's default stash_type)
kernel    dtype the CPU kernels see the storage as: 16-bit floats as 16-bit integer views
          of their bits (Numba's CPU backend has no 16-bit float type), uint16 for
          bfloat16 and int16 for float16 -- the integer type is the storage tag
backends  where the dtype is taken:
          ``numpy``  the forward functions on NumPy arrays (the CPU engine, _engine.py)
          ``dask``   the same on dask arrays
          ``cpu``    every other CPU path: @njit code, the backward functions
          ``cuda``   the GPU
Integers and bools give float64 on every backend.

bfloat16 is ml_dtypes' dtype, which numba_ln never imports itself (importing ml_dtypes
takes ~0.5 s, more than numba_ln's own import): a bfloat16 array exists only once its
owner imported ml_dtypes, and the table takes the dtype in on first sight (``_storage``).
"""
import sys
from typing import NamedTuple

import numpy as np

F16, F32, F64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)


class Storage(NamedTuple):
    result: np.dtype
    work: np.dtype
    stats: np.dtype
    kernel: np.dtype
    backends: frozenset


_ALL = frozenset({"numpy", "dask", "cpu", "cuda"})
TABLE = {
    F32: Storage(F32, F32, F32, F32, _ALL),
    F64: Storage(F64, F64, F64, F64, _ALL),
    F16: Storage(F16, F32, F32, np.dtype(np.int16), frozenset({"numpy", "dask", "cuda"})),
}
_BF16_BACKENDS = frozenset({"numpy", "dask"})

# How each backend's error message lists what it takes (kept word for word).
SUPPORTED = {
    "numpy": "float16, bfloat16, float32, float64, integer and bool arrays",
    "cpu": "float32, float64, integer and bool arrays",
    "cuda": "float16, float32, float64, integer and bool arrays",
}
SUPPORTED["dask"] = SUPPORTED["numpy"]
_WHERE = {"numpy": "", "dask": "", "cpu": " here", "cuda": " on the GPU"}


def is_bfloat16(dtype):
    """Whether dtype is ml_dtypes.bfloat16 (without importing ml_dtypes)."""
    if dtype.kind != "V" or dtype.itemsize != 2 or "ml_dtypes" not in sys.modules:
        return False
    return dtype == np.dtype(sys.modules["ml_dtypes"].bfloat16)


def is_half(dtype):
    """float16 or bfloat16."""
    return dtype == F16 or is_bfloat16(dtype)


def native(dtype):
    """dtype in this machine's byte order (a byte-swapped array's values' dtype)."""
    return dtype if dtype.isnative else dtype.newbyteorder("=")


def _storage(dtype):
    dtype = native(dtype)
    storage = TABLE.get(dtype)
    if storage is None and is_bfloat16(dtype):
        storage = TABLE[dtype] = Storage(dtype, F32, F32, np.dtype(np.uint16), _BF16_BACKENDS)
    return storage


def result_dtype(dtype, name="x", backend="cpu"):
    """The dtype a call on `backend` returns for x of `dtype`; TypeError naming `name`."""
    dtype = np.dtype(dtype)
    storage = _storage(dtype)
    if storage is not None and backend in storage.backends:
        return storage.result
    if dtype.kind in "biu":
        return F64
    hint = ""
    if storage is not None:
        hint = (" (16-bit float data are taken by every public function on NumPy arrays and "
                "by the forward ones on dask arrays"
                + (", and float16 on the GPU" if dtype == F16 else "") + ")")
    elif dtype.kind == "V" and dtype.itemsize == 2:  # bfloat16 through an array interface
        hint = (" (2-byte void data, as bfloat16 arrays appear through __array_interface__ "
                "and __cuda_array_interface__, which have no bfloat16 typestr)")
    raise TypeError(f"{name} has dtype {dtype}, which numba_ln does not support"
                    f"{_WHERE[backend]}; supported: {SUPPORTED[backend]}{hint}")


def half_of_bits(bits):
    """The 16-bit float dtype a CPU kernel reads as ``bits`` (kernel_dtype's inverse for
    16-bit floats: float16 for int16, bfloat16 for uint16 once seen), or None."""
    bits = np.dtype(bits)
    for dtype, storage in TABLE.items():
        if storage.kernel == bits and dtype != bits:
            return dtype
    return None


def work_dtype(result):
    """The kernels' precision for a result dtype (float32 for 16-bit and float32)."""
    return _storage(np.dtype(result)).work


def stats_dtype(result):
    """The dtype of a CPU call's mean/rstd/moments for a result dtype."""
    return _storage(np.dtype(result)).stats


def kernel_dtype(dtype):
    """The dtype a CPU kernel reads an array of `dtype` as (see the table)."""
    storage = _storage(np.dtype(dtype))
    return np.dtype(dtype) if storage is None else storage.kernel


def result_type(x, residual):
    """np.result_type of x's and residual's dtypes; a TypeError naming residual when NumPy
    has no common dtype (bfloat16 with float16 or with 64-bit integers)."""
    try:
        return np.result_type(x, residual)
    except TypeError:
        raise TypeError(f"x ({np.dtype(x)}) and residual ({np.dtype(residual)}) have no "
                        "common dtype (np.result_type refuses them); cast residual first"
                        ) from None


def is_real(dtype):
    """Whether an array of this dtype may serve as weight, bias or residual: a float, an
    integer or a bool NumPy knows, or bfloat16, in either byte order (complex, objects,
    strings, long double are not, nor a float viewed with fields, which compares equal to
    its float)."""
    dtype = np.dtype(dtype)
    if dtype.fields is not None:
        return False
    return (dtype.kind in "fiub" and dtype.itemsize <= 8) or is_bfloat16(native(dtype))
