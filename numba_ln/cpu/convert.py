"""16-bit float data to float32 and back, at memory speed: the backward functions on 16-bit
data (numba_ln/_half_backward.py) widen x and dy and round dx with these.

NumPy's own casts run per element here: float32 -> float16 took ~13 ns an element on the
development machine, more than the whole float32 backward.  These loops vectorize with
_storage's conversions (the same roundings: exact widening, round to nearest even) and
run on every thread above the serial bound.

Arguments are flat C-contiguous arrays: 16-bit data as their bits (_dtypes.kernel_dtype)
and float32.
"""
from numba import prange

from ._jit import kernel
from ._storage import load, store


@kernel()
def widen_serial(bits, out):
    for i in range(bits.size):
        out[i] = load(bits, i)


@kernel(parallel=True)
def widen_parallel(bits, out):
    for i in prange(bits.size):
        out[i] = load(bits, i)


@kernel()
def narrow_serial(values, bits):
    for i in range(values.size):
        store(bits, i, values[i])


@kernel(parallel=True)
def narrow_parallel(values, bits):
    for i in prange(values.size):
        store(bits, i, values[i])
