"""Public functions: each written once, with its docstring.  A call goes to the small-call
kernels when it is the commonest kind (checked by the kernels themselves, cpu/small.py),
else to the backend its array's type picks (_backends.py), which validates it by the
call spec (_spec.py) and runs it."""
import numpy as np

from . import _config
from ._backends import backend_for
from ._variants import ADD_LAYER_NORM, ADD_RMS_NORM, LAYER_NORM, MOMENTS, RMS_NORM
from .cpu._elements import IN_PLACE
from .cpu.small import small_add_norm, small_norm

_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)
# The small-call kernels are serial: _threading.runs_serial's bound, inlined (a call costs
# ~0.1 us of a ~1 us call)
_SMALL = _config.SERIAL_MAX_ELEMENTS
# eps as users write it: a NumPy scalar from a config or a checkpoint is a float here (the
# general path reads it with float() too, so the result is the same).  Not bool.
_EPS_TYPES = frozenset({int, np.float64, np.float32, np.float16, np.int64, np.int32})


def _small_call(x, weight, bias, eps, centered, out, residual=None, residual_out=None,
                return_stats=False):
    """y (or (y, s) with a residual; (y, mean, rstd) or (y, rstd) with return_stats and no
    residual) for the commonest calls, or None to take the general path.  Gates only what
    the kernel cannot (cpu/small.py checks the rest and returns 1, having written nothing,
    for anything it does not take).  Runs before anything else,
    even the GPU check: at (1, 768) every attribute test costs ~30 ns of a ~1 us call."""
    if type(x) is not np.ndarray or not 0 < x.size <= _SMALL or not x.flags.c_contiguous:
        return None
    if type(eps) is not float:
        if type(eps) not in _EPS_TYPES:
            return None
        eps = float(eps)
    dtype = x.dtype
    if dtype is not _F32 and dtype is not _F64:
        return None
    weight, bias = _same_dtype(weight, dtype), _same_dtype(bias, dtype)
    if weight is False or bias is False:
        return None
    # Output dtypes are gated here: Numba cannot even type a byte-swapped array.
    if out is None:
        y = np.empty(x.shape, dtype)
    elif type(out) is np.ndarray and out.dtype is dtype:
        y = out
    else:
        return None
    if residual is None:
        mean = rstd = None
        if return_stats:  # keepdims, in x's dtype (the stats dtype of float32/float64)
            rstd = np.empty(x.shape[:-1] + (1,), dtype)
            mean = np.empty(x.shape[:-1] + (1,), dtype) if centered else None
        if small_norm(IN_PLACE if y is x else y, x, weight, bias, eps, centered, mean, rstd):
            return None
        if not return_stats:
            return y
        return (y, mean, rstd) if centered else (y, rstd)
    if return_stats:
        return None
    if type(residual) is not np.ndarray or residual.dtype is not dtype:
        return None
    if residual_out is None:
        s = np.empty(x.shape, dtype)
    elif type(residual_out) is np.ndarray and residual_out.dtype is dtype:
        s = residual_out
    else:
        return None
    if small_add_norm(y, IN_PLACE if s is residual else s, x, residual, weight, bias, eps,
                      centered):
        return None
    return y, s


def _same_dtype(p, dtype):
    """weight/bias for the small-call kernels: None, or a 1-D array of x's dtype (float32
    or float64 parameters are cast, as the general path casts them: float64 weights from a
    checkpoint on float32 data); False when the general path must take the call."""
    if p is None or (type(p) is np.ndarray and p.dtype is dtype):
        return p
    if type(p) is not np.ndarray or p.ndim != 1 or (p.dtype is not _F32 and p.dtype is not _F64):
        return False
    return p.astype(dtype)


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
    if type(axis) is int and axis == -1 and type(return_stats) is bool:
        y = _small_call(x, weight, bias, eps, True, out, return_stats=return_stats)
        if y is not None:
            return y
    return backend_for(x).run(LAYER_NORM, x, None, weight, bias, axis, eps, out, None,
                              return_stats)


def rms_norm(x, weight=None, *, axis=-1, eps=1e-6, out=None, return_stats=False):
    """RMS normalization: ``y = x / sqrt(mean(x**2) + eps) * weight``.

    Same axis, dtype, ``out=`` and error rules as :func:`layer_norm`.  Returns y, or
    ``(y, rstd)`` with ``rstd = 1 / sqrt(mean(x**2) + eps)`` in keepdims shape.

    Examples
    --------
    >>> import numpy as np, numba_ln
    >>> numba_ln.rms_norm(np.array([3.0, 4.0]), eps=0.0)
    array([0.84852814, 1.13137085])
    """
    if type(axis) is int and axis == -1 and type(return_stats) is bool:
        y = _small_call(x, weight, None, eps, False, out, return_stats=return_stats)
        if y is not None:
            return y
    return backend_for(x).run(RMS_NORM, x, None, weight, None, axis, eps, out, None,
                              return_stats)


def add_layer_norm(x, residual, weight=None, bias=None, *, axis=-1, eps=1e-5, out=None,
                   residual_out=None, return_stats=False):
    """Fused residual add and LayerNorm: ``s = x + residual``, ``y = layer_norm(s)``.

    One pass over memory.  ``residual`` has x's shape or broadcasts to it.  Returns
    ``(y, s)``, or ``(y, s, mean, rstd)``.  ``residual_out=residual`` updates a residual
    stream in place and ``out=x`` overwrites the input.  Matches onnxruntime's
    SkipLayerNormalization (output and input+skip sum).

    Examples
    --------
    >>> import numpy as np, numba_ln
    >>> y, s = numba_ln.add_layer_norm(np.array([1.0, 2.0]), np.array([1.0, 4.0]), eps=0.0)
    >>> y, s
    (array([-1.,  1.]), array([2., 6.]))
    """
    if not return_stats and type(axis) is int and axis == -1 and residual is not None:
        done = _small_call(x, weight, bias, eps, True, out, residual, residual_out)
        if done is not None:
            return done
    return backend_for(x).run(ADD_LAYER_NORM, x, residual, weight, bias, axis, eps, out,
                              residual_out, return_stats)


def add_rms_norm(x, residual, weight=None, *, axis=-1, eps=1e-6, out=None, residual_out=None,
                 return_stats=False):
    """Fused residual add and RMSNorm: ``s = x + residual``, ``y = rms_norm(s)``.

    Returns ``(y, s)``, or ``(y, s, rstd)``.  Matches onnxruntime's
    SkipSimplifiedLayerNormalization.  Same rules as :func:`add_layer_norm`.
    """
    if not return_stats and type(axis) is int and axis == -1 and residual is not None:
        done = _small_call(x, weight, None, eps, False, out, residual, residual_out)
        if done is not None:
            return done
    return backend_for(x).run(ADD_RMS_NORM, x, residual, weight, None, axis, eps, out,
                              residual_out, return_stats)


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
    return backend_for(x).run(MOMENTS, x, None, None, None, axis, 0.0, None, None, True,
                              keepdims)
