"""Plain float64 NumPy oracles: the definitions every kernel is tested against.

Slow and obviously right: statistics by ``np.mean`` (pairwise summation) in float64, the
mean corrected once by the mean of its residuals (_mean), then the formula as written.
Results stay float64; callers round if they wish.  eps is read with float() (a Fraction
or a NumPy scalar, as numba_ln takes it).
Bad input is refused as numba_ln refuses it (an oracle that guessed could hide a test's
mistake): arrays must be real, axes within x's dimensions and distinct.
"""
import numpy as np

from ._dtypes import is_bfloat16


def _f64(a):
    """a as a float64 array (None as None); TypeError for complex, object or string data,
    whose float64 value would drop or invent something."""
    if a is None:
        return None
    a = np.asarray(a)
    if not (a.dtype.kind in "fiub" or is_bfloat16(a.dtype)):
        raise TypeError(f"numba_ln.reference takes real arrays, got dtype {a.dtype}")
    return a.astype(np.float64)


def _data(a, name):
    """x or dy as a float64 array (_f64); TypeError for None."""
    if a is None:
        raise TypeError(f"{name} must be an array, got None")
    return _f64(a)


def _param_shape(x, axes):
    """Shape that broadcasts a normalized-shape parameter against x."""
    return tuple(n if a in axes else 1 for a, n in enumerate(x.shape))


def _axes(axis, ndim):
    """The normalized axes as sorted non-negative ints; ValueError for an axis outside
    -ndim..ndim-1 (it was wrapped: axis=5 of a 2-D x read as axis 1) or a repeated one."""
    axis = (axis,) if np.isscalar(axis) else tuple(axis)
    for a in axis:
        if not -ndim <= a < ndim:
            raise ValueError(f"axis {a} is out of bounds for an array of dimension {ndim}")
    axes = tuple(sorted(a % ndim for a in axis))
    if len(set(axes)) != len(axes):
        raise ValueError(f"repeated axis in {axis}")
    return axes


def _affine(y, x, weight, bias, axes):
    shape = _param_shape(x, axes)
    norm_shape = tuple(x.shape[a] for a in axes)
    if weight is not None:
        y = y * np.broadcast_to(_f64(weight), norm_shape).reshape(shape)
    if bias is not None:
        y = y + np.broadcast_to(_f64(bias), norm_shape).reshape(shape)
    return y


def _mean(x, axes):
    """The mean over axes (keepdims), corrected by the mean of x - mean: np.mean alone errs
    by ulps of |mean|, which far from zero are much of the spread (a float64 row of three
    0.1s had var 1.9e-34 and y = -1 at eps=0, where the formula gives NaN); corrected, a
    constant row's mean is exact."""
    mean = x.mean(axis=axes, keepdims=True)
    with np.errstate(invalid="ignore", over="ignore"):
        correction = (x - mean).mean(axis=axes, keepdims=True)
    # (an inf mean, or residuals that overflow: NumPy's mean, as numba_ln's)
    return np.where(np.isfinite(mean) & np.isfinite(correction), mean + correction, mean)


def _variance(x, mean, axes):
    d = x - mean
    return (d * d).mean(axis=axes, keepdims=True)


def layer_norm(x, weight=None, bias=None, axis=-1, eps=1e-5):
    """(y, mean, rstd), all float64, mean/rstd in keepdims shape."""
    x = _data(x, "x")
    axes = _axes(axis, x.ndim)
    mean = _mean(x, axes)
    var = _variance(x, mean, axes)
    rstd = 1.0 / np.sqrt(var + float(eps))
    return _affine((x - mean) * rstd, x, weight, bias, axes), mean, rstd


def rms_norm(x, weight=None, axis=-1, eps=1e-6):
    """(y, rstd), float64, rstd in keepdims shape."""
    x = _data(x, "x")
    axes = _axes(axis, x.ndim)
    rstd = 1.0 / np.sqrt(np.mean(x * x, axis=axes, keepdims=True) + float(eps))
    return _affine(x * rstd, x, weight, None, axes), rstd


def moments(x, axis=-1):
    """(mean, var), float64, the axes dropped; var is the biased (population) variance."""
    x = _data(x, "x")
    axes = _axes(axis, x.ndim)
    mean = _mean(x, axes)
    # ([()]: NumPy scalars over every axis, as np.mean gives and numba_ln.moments)
    return mean.squeeze(axis=axes)[()], _variance(x, mean, axes).squeeze(axis=axes)[()]


def _backward(dy, x, weight, xhat, rstd, axes, grad_residual, centered):
    """dx, dweight, dbias from xhat and rstd (float64, keepdims rstd)."""
    dy = _data(dy, "dy")
    shape = _param_shape(x, axes)
    norm_shape = tuple(x.shape[a] for a in axes)
    g = dy if weight is None else dy * np.broadcast_to(_f64(weight), norm_shape).reshape(shape)
    gx = np.mean(g * xhat, axis=axes, keepdims=True)
    inner = g - xhat * gx
    if centered:
        inner = inner - np.mean(g, axis=axes, keepdims=True)
    dx = rstd * inner
    if grad_residual is not None:
        dx = dx + _f64(grad_residual)
    batch = tuple(a for a in range(x.ndim) if a not in axes)
    dweight = np.sum(dy * xhat, axis=batch).reshape(norm_shape)
    dbias = np.sum(dy, axis=batch).reshape(norm_shape)
    return dx, dweight, dbias


def layer_norm_backward(dy, x, weight=None, mean=None, rstd=None, axis=-1, eps=1e-5,
                        grad_residual=None):
    """(dx, dweight, dbias), float64: the gradients of layer_norm(x, weight, bias) given
    the output gradient dy.  mean/rstd (keepdims) are used as given (rounded values
    included); when omitted they are computed from x in float64."""
    x = _data(x, "x")
    axes = _axes(axis, x.ndim)
    if (mean is None) != (rstd is None):
        raise ValueError("mean and rstd must be given together (or neither)")
    if mean is None:
        _, mean, rstd = layer_norm(x, axis=axes, eps=eps)
    mean, rstd = _f64(mean), _f64(rstd)
    return _backward(dy, x, weight, (x - mean) * rstd, rstd, axes, grad_residual, True)


def rms_norm_backward(dy, x, weight=None, rstd=None, axis=-1, eps=1e-6, grad_residual=None):
    """(dx, dweight), float64: the gradients of rms_norm(x, weight) given dy."""
    x = _data(x, "x")
    axes = _axes(axis, x.ndim)
    if rstd is None:
        _, rstd = rms_norm(x, axis=axes, eps=eps)
    rstd = _f64(rstd)
    dx, dweight, _ = _backward(dy, x, weight, x * rstd, rstd, axes, grad_residual, False)
    return dx, dweight


def round_to(y, dtype):
    """A float64 result rounded once, to nearest even, to dtype: the reference a 16-bit
    result is compared with.  bfloat16 goes through float32 rounded to odd, which makes
    the two roundings one (float32 keeps more than two bits beyond bfloat16's)."""
    y = _f64(y)
    dtype = np.dtype(dtype)
    if not (dtype.kind == "f" or is_bfloat16(dtype)):
        raise TypeError(f"round_to rounds to a float dtype, got {dtype}")
    if dtype.kind == "f":  # NumPy's float64 -> float16 is one correct rounding
        with np.errstate(over="ignore"):  # overflow rounds to inf
            return y.astype(dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        t = y.astype(np.float32)
        inexact = np.isfinite(y) & (t.astype(np.float64) != y)
        t = np.where(inexact & (np.abs(t) > np.abs(y)), np.nextafter(t, np.float32(0)), t)
    bits = t.view(np.uint32) | inexact.astype(np.uint32)
    return bits.view(np.float32).astype(dtype)


def ulp_distance(a, b):
    """Per element, how many representable values of their (common, 16-bit) dtype lie
    between a and b: 0 for equal values (+0 and -0 too) and for NaN against NaN, 2**16
    for NaN against a number."""
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.itemsize != 2 or not (a.dtype == np.float16
                                                     or is_bfloat16(a.dtype)):
        raise TypeError(f"ulp_distance takes two arrays of one 16-bit float dtype, got "
                        f"{a.dtype} and {b.dtype}")

    def ordered(v):
        bits = v.view(np.uint16).astype(np.int64)
        return np.where(bits >= 0x8000, 0x8000 - bits, bits)

    nan_a, nan_b = np.isnan(a.astype(np.float32)), np.isnan(b.astype(np.float32))
    d = np.abs(ordered(a) - ordered(b))
    return np.where(nan_a | nan_b, np.where(nan_a & nan_b, 0, 1 << 16), d)
