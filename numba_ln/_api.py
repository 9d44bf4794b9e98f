"""Public functions: each written once, with its docstring.  A call goes to the small-call
kernels when it is the commonest kind (_small_front.py; the kernels check the rest
themselves, cpu/small.py), else to the backend its array's type picks (_backends.py),
which validates it by the call spec (_spec.py) and runs it."""
from . import _canonical
from ._backends import backend_for
from ._small_front import small_call
from ._small_moments import small_moments_call
from ._validate import flag
from ._variants import ADD_LAYER_NORM, ADD_RMS_NORM, LAYER_NORM, MOMENTS, RMS_NORM


def layer_norm(x, weight=None, bias=None, *, axis=-1, eps=1e-5, out=None, return_stats=False):
    """Layer normalization over the given axes.

    ``y = (x - mean) / sqrt(var + eps) * weight + bias`` with the mean and the biased
    (population) variance taken over ``axis`` for every other index.

    Parameters
    ----------
    x : array_like
        Input of any layout.  float32 gives float32; float64, integers and bools give
        float64.  float32 data are computed at float32 SIMD width with statistics exact to
        float64 quality (see README, Accuracy), then rounded once.
    weight, bias : array_like, optional
        Broadcastable to the normalized shape (x's sizes along ``axis``, in axis order).
    axis : int or tuple of ints, default -1
        The axes normalized over, with NumPy's meaning.
    eps : float, default 1e-5
        Added to the variance; finite and >= 0.
    out : ndarray, optional
        Array of x's shape and the result dtype to write into; ``out=x`` works in place.
    return_stats : bool, default False
        Also return ``mean`` and ``rstd = 1 / sqrt(var + eps)`` in keepdims shape.

    Returns
    -------
    y, or (y, mean, rstd)

    Examples
    --------
    >>> import numpy as np, numba_ln
    >>> x = np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]], dtype=np.float32)
    >>> numba_ln.layer_norm(x)
    array([[-1.2247357,  0.       ,  1.2247357],
           [ 0.       ,  0.       ,  0.       ]], dtype=float32)
    """
    y = small_call(x, weight, bias, eps, True, out, return_stats, axis)
    if y is not None:
        return y
    y = _canonical.again(small_call, x, weight, bias, eps, True, out, return_stats, axis)
    if y is not None:  # (unpickled arrays: _canonical.py)
        return y
    return backend_for(x).run(LAYER_NORM, x, None, weight, bias, axis, eps, out, None,
                              flag(return_stats, "return_stats"))


def rms_norm(x, weight=None, *, axis=-1, eps=1e-6, out=None, return_stats=False):
    """RMS normalization: ``y = x / sqrt(mean(x**2) + eps) * weight``.

    Same axis, dtype, ``out=`` and error rules as :func:`layer_norm`.  Returns y, or
    ``(y, rstd)`` with ``rstd = 1 / sqrt(mean(x**2) + eps)`` in keepdims shape.
    ``eps=None`` is torch's: the machine epsilon of the dtype the call computes in
    (float32's for float32 and 16-bit data, float64's for float64 and integers).

    Examples
    --------
    >>> import numpy as np, numba_ln
    >>> numba_ln.rms_norm(np.array([3.0, 4.0]), eps=0.0)
    array([0.84852814, 1.13137085])
    """
    y = small_call(x, weight, None, eps, False, out, return_stats, axis)
    if y is not None:
        return y
    y = _canonical.again(small_call, x, weight, None, eps, False, out, return_stats, axis)
    if y is not None:
        return y
    return backend_for(x).run(RMS_NORM, x, None, weight, None, axis, eps, out, None,
                              flag(return_stats, "return_stats"))


def add_layer_norm(x, residual, weight=None, bias=None, *, axis=-1, eps=1e-5, out=None,
                   residual_out=None, return_stats=False):
    """Fused residual add and LayerNorm: ``s = x + residual``, ``y = layer_norm(s)``.

    One pass over memory.  ``residual`` has x's shape or broadcasts to it.  Returns
    ``(y, s)``, or ``(y, s, mean, rstd)``.  ``residual_out=residual`` updates a residual
    stream in place and ``out=x`` overwrites the input.  Matches onnxruntime's
    SkipLayerNormalization (output and input+skip sum); for 16-bit data y normalizes the
    rounded s, where onnxruntime normalizes the float32 sum (docs/half.md).

    Examples
    --------
    >>> import numpy as np, numba_ln
    >>> y, s = numba_ln.add_layer_norm(np.array([1.0, 2.0]), np.array([1.0, 4.0]), eps=0.0)
    >>> y, s
    (array([-1.,  1.]), array([2., 6.]))
    """
    if residual is not None:
        done = small_call(x, weight, bias, eps, True, out, return_stats, axis, residual,
                          residual_out)
        if done is not None:
            return done
        done = _canonical.again(small_call, x, weight, bias, eps, True, out, return_stats, axis,
                                residual, residual_out)
        if done is not None:
            return done
    return backend_for(x).run(ADD_LAYER_NORM, x, residual, weight, bias, axis, eps, out,
                              residual_out, flag(return_stats, "return_stats"))


def add_rms_norm(x, residual, weight=None, *, axis=-1, eps=1e-6, out=None, residual_out=None,
                 return_stats=False):
    """Fused residual add and RMSNorm: ``s = x + residual``, ``y = rms_norm(s)``.

    Returns ``(y, s)``, or ``(y, s, rstd)``.  Matches onnxruntime's
    SkipSimplifiedLayerNormalization (16-bit data: as :func:`add_layer_norm`).  Same rules
    as :func:`add_layer_norm`; ``eps=None`` as in :func:`rms_norm`.
    """
    if residual is not None:
        done = small_call(x, weight, None, eps, False, out, return_stats, axis, residual,
                          residual_out)
        if done is not None:
            return done
        done = _canonical.again(small_call, x, weight, None, eps, False, out, return_stats, axis,
                                residual, residual_out)
        if done is not None:
            return done
    return backend_for(x).run(ADD_RMS_NORM, x, residual, weight, None, axis, eps, out,
                              residual_out, flag(return_stats, "return_stats"))


def moments(x, axis=-1, *, keepdims=False):
    """Mean and (population) variance over ``axis`` in one pass: ``(mean, var)``.

    A parallel, numerically stable replacement for ``np.mean`` + ``np.var``: exact
    shifted sums with float64 totals, exact for constant data, result dtype as
    :func:`layer_norm`'s.

    Examples
    --------
    >>> import numpy as np, numba_ln
    >>> numba_ln.moments(np.array([[1.0, 2.0, 3.0, 4.0]]))
    (array([2.5]), array([1.25]))
    """
    done = small_moments_call(x, axis, keepdims) if type(keepdims) is bool else None
    if done is None:
        done = _canonical.moments_again(small_moments_call, x, axis, keepdims)
    if done is not None:
        return done
    return backend_for(x).run(MOMENTS, x, None, None, None, axis, 0.0, None, None, True,
                              flag(keepdims, "keepdims"))
