"""rstd from float64 second moments (the variance, or RMSNorm's mean square), as the CPU
front (_engine) and the dask blocks return it: 1 / sqrt(second + eps) in float64, rounded
once to the statistics dtype; and other float64 values rounded as the kernels round them
(narrowed)."""
import contextlib

import numpy as np

# Below this eps a constant row's rstd, 1 / sqrt(eps), passes float32's largest value
# (1 / 3.4e38**2 ~ 8.6e-78): only then can rounding it to float32 overflow
_OVERFLOW_EPS = 1e-76


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


def rounded(rstd, dtype, eps):
    """float64 rstd in the statistics dtype: inf where it passes float32's range (a constant
    row with an eps under 1e-76), silently, as the small calls' float32 rstd is (NumPy's
    cast warned, from the general path and dask only)."""
    if eps >= _OVERFLOW_EPS:
        return quietly(rstd, dtype)
    with _silent():
        return rstd.astype(dtype, copy=False)


def quietly(a, dtype):
    """a in dtype, where the cast cannot overflow: NumPy's settings warn of nothing else
    by default, and a user's np.seterr(under="raise") is met by one more cast, silent (a
    subnormal rstd of float32 data spread past 8e37, a mean or variance of data spread
    under 1e-19, raised FloatingPointError from the general path and dask only)."""
    try:
        return a.astype(dtype, copy=False)
    except FloatingPointError:
        with _silent():
            return a.astype(dtype, copy=False)


def _silent():
    """The cast's own warnings (or errors, under the user's np.seterr) off: overflow to
    inf and underflow to subnormals or 0 are the rounding the kernels do silently."""
    return np.errstate(over="ignore", under="ignore")


def narrowed(a, dtype):
    """a (float64 statistics, or a float64 weight/bias for float32 work) in dtype, inf
    where it passes dtype's range, silently, as the small calls' kernels round them in
    compiled code: a variance of float32 data past 3.4e38, or a weight of 1e300, warned
    from the general path and dask only, for the same result.  (np.errstate costs ~1 us:
    only for casts that narrow.)"""
    if a.dtype.itemsize <= np.dtype(dtype).itemsize:
        return a.astype(dtype, copy=False)
    with _silent():
        return a.astype(dtype, copy=False)


def narrowing(params, dtype):
    """A context in which the forward's general path casts weight/bias (ndarrays or None)
    to dtype as narrowed does: silent only where one narrows."""
    for p in params:
        if p is not None and getattr(p, "dtype", dtype).itemsize > dtype.itemsize:
            return _silent()
    return _NOTHING


_NOTHING = contextlib.nullcontext()
