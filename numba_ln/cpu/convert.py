"""16-bit float data to float32, at memory speed: the backward functions widen 16-bit
arrays that meet float32 ones with these (numba_ln/_half_backward.py).  And float64
weights narrowed to float32 work for the backward's small calls, silently (narrow_serial).

NumPy's own casts run per element here (~13 ns an element on the development machine,
more than the whole float32 backward).  These loops vectorize with _storage's exact
widening and run on every thread above the serial bound.

Arguments are flat C-contiguous arrays: 16-bit data as their bits (_dtypes.kernel_dtype)
and float32.
"""
from numba import prange

from ._jit import kernel
from ._storage import load


@kernel()
def widen_serial(bits, out):
    for i in range(bits.size):
        out[i] = load(bits, i)


@kernel(parallel=True)
def widen_parallel(bits, out):
    for i in prange(bits.size):
        out[i] = load(bits, i)


@kernel()
def narrow_serial(wide, out):
    """float64 to float32, rounded as NumPy's cast rounds them (the nearest, ties to even),
    but silently, as the forward's kernels round float64 weights: past float32's range to
    inf, below it to subnormals or 0.  NumPy's cast warned of the overflow (an error under
    -W error) and raised under np.seterr(all="raise"); np.errstate around it costs ~1 us
    of a ~4 us backward call, this as much as the cast."""
    for i in range(wide.size):
        out[i] = wide[i]
