"""rstd from float64 second moments (the variance, or RMSNorm's mean square), as the CPU
front (_engine) and the dask blocks return it: 1 / sqrt(second + eps) in float64, rounded
once to the statistics dtype; and float64 values rounded as the kernels round them
(narrowed, narrowing)."""
import contextlib

import numpy as np


def of_second(second, eps, out=None):
    """rstd = 1 / sqrt(second + eps) of float64 statistics, into out (second itself when
    the caller owns it; a new array by default).  A constant row with eps=0 has rstd inf,
    silently, as the kernels give it (np.errstate costs ~1 us: only where the division
    can be by 0)."""
    rstd = np.add(second, eps, out=out)
    np.sqrt(rstd, out=rstd)
    if eps == 0:
        with np.errstate(divide="ignore"):
            return np.divide(1.0, rstd, out=rstd)
    return np.divide(1.0, rstd, out=rstd)


def _silent():
    """NumPy's floating-point settings off for numba_ln's own casts (~1 us): overflow to
    inf and underflow to subnormals or 0 are the rounding the kernels do silently, whatever
    the user set with np.seterr (a "warn", "raise" or "call" there made the same call warn
    or raise by its path)."""
    return np.errstate(over="ignore", under="ignore")


def narrowed(a, dtype):
    """a (float64 statistics, or a float64 weight/bias for float32 work) in dtype, inf
    where it passes dtype's range and a subnormal or 0 below it, silently whatever NumPy's
    settings, as the small calls' kernels round them in compiled code: a variance of
    float32 data past 3.4e38, an rstd of data spread past 8e37, or a weight of 1e300,
    warned or raised from the general path and dask only, for the same result.
    (np.errstate costs ~1 us: only for casts that narrow.)"""
    if a.dtype.itemsize <= np.dtype(dtype).itemsize:
        return a.astype(dtype, copy=False)
    with _silent():
        return a.astype(dtype, copy=False)


def narrowing(arrays, dtype):
    """A context in which casts of these arrays (ndarrays or None: weight/bias, float64
    statistics) to dtype are silent as narrowed's are: silent only where one narrows."""
    for a in arrays:
        if a is not None and getattr(a, "dtype", dtype).itemsize > dtype.itemsize:
            return _silent()
    return _NOTHING


_NOTHING = contextlib.nullcontext()
