"""The dtype table: which storage dtypes each backend takes, what a call returns for them
and what its kernels compute in.  The one place a dtype rule is written; a new dtype is
one entry here (plus its loads and stores in the kernels of the backends that take it).

result  dtype of y and s (and, on the CPU, of the statistics)
work    precision the kernels compute in; on the GPU also of weight, bias and statistics
Integers and bools give float64 on every backend.
"""
from typing import NamedTuple

import numpy as np

F16, F32, F64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)


class Storage(NamedTuple):
    result: np.dtype
    work: np.dtype
    backends: frozenset


TABLE = {
    F32: Storage(F32, F32, frozenset({"cpu", "cuda"})),
    F64: Storage(F64, F64, frozenset({"cpu", "cuda"})),
    F16: Storage(F16, F32, frozenset({"cuda"})),
}

# How each backend's error message lists what it takes (kept word for word).
SUPPORTED = {
    "cpu": "float32, float64, integer and bool arrays",
    "cuda": "float16, float32, float64, integer and bool arrays",
}
_WHERE = {"cpu": "", "cuda": " on the GPU"}


def result_dtype(dtype, name="x", backend="cpu"):
    """The dtype a call on `backend` returns for x of `dtype`; TypeError naming `name`."""
    dtype = np.dtype(dtype)
    storage = TABLE.get(dtype if dtype.isnative else dtype.newbyteorder("="))
    if storage is not None and backend in storage.backends:
        return storage.result
    if dtype.kind in "biu":
        return F64
    raise TypeError(f"{name} has dtype {dtype}, which numba_ln does not support"
                    f"{_WHERE[backend]}; supported: {SUPPORTED[backend]}")


def work_dtype(result):
    """The kernels' precision for a result dtype (float32 for float16 and float32)."""
    return TABLE[np.dtype(result)].work


def is_real(dtype):
    """Whether an array of this dtype may serve as weight, bias or residual: a float, an
    integer or a bool NumPy knows (complex, objects, strings, long double are not)."""
    dtype = np.dtype(dtype)
    return dtype.kind in "fiub" and dtype.itemsize <= 8
