"""Public functions: argument parsing, the GPU hand-off, and the small-input fast path."""
import numpy as np

from . import _buffers, _config
from ._engine import normalize, run_rows
from .cpu._elements import IN_PLACE
from .cpu.small import small_add_norm, small_norm
from ._validate import as_array, check_eps, normalize_axes, result_dtype

_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)
_INF = float("inf")
_SMALL = _config.SERIAL_MAX_ELEMENTS


def _is_gpu_array(a):
    """CuPy, torch CUDA and Numba device arrays, and the CUDA simulator's fake arrays."""
    if isinstance(a, np.ndarray):
        return False
    return hasattr(a, "__cuda_array_interface__") or type(a).__name__ == "FakeCUDAArray"


def _gpu():
    from . import cuda  # imported on the first GPU array only: `import numba_ln` needs no CUDA

    return cuda


def _rstd(second, eps, dtype):
    return (1.0 / np.sqrt(second + eps)).astype(dtype, copy=False)


def _small_call(x, weight, bias, eps, centered, out, residual=None, residual_out=None):
    """y (or (y, s) with a residual) for the commonest call, or None to take the general
    path.  Gates only what the kernel cannot (cpu/small.py checks the rest and returns 1,
    having written nothing, for anything it does not take).  Runs before anything else,
    even the GPU check: at (1, 768) every attribute test costs ~30 ns of a ~1 us call."""
    if (type(x) is not np.ndarray or type(eps) is not float
            or not 0 < x.size <= _SMALL or not x.flags.c_contiguous):
        return None
    dtype = x.dtype
    if ((dtype is not _F32 and dtype is not _F64)
            or (weight is not None and (type(weight) is not np.ndarray
                                        or weight.dtype is not dtype))
            or (bias is not None and (type(bias) is not np.ndarray or bias.dtype is not dtype))):
        return None
    # Output dtypes are gated here: Numba cannot even type a byte-swapped array.
    if out is None:
        y = np.empty(x.shape, dtype)
    elif type(out) is np.ndarray and out.dtype is dtype:
        y = out
    else:
        return None
    if residual is None:
        if small_norm(IN_PLACE if y is x else y, x, weight, bias, eps, centered):
            return None
        return y
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


def _fast_param(p, dtype, cols):
    """p when it can go to the kernel unchecked (dtype objects of native floats are
    singletons, so `is` suffices; None stays None), else False."""
    if p is None:
        return None
    if type(p) is np.ndarray and p.dtype is dtype and p.shape == (cols,) and p.flags.c_contiguous:
        return p
    return False


def _fast_outputs(x, out, residual, residual_out):
    """(y, s) the kernel may write unchecked (s None without a residual), new arrays for
    None, or None when the call needs the general path: residual not of x's shape, dtype
    and C layout; an output not C-contiguous, writeable, of x's shape and dtype; an output
    overlapping an input other than by being it, or overlapping the other output."""
    inputs = (x,)
    if residual is not None:
        if (type(residual) is not np.ndarray or residual.dtype is not x.dtype
                or residual.shape != x.shape or not residual.flags.c_contiguous):
            return None
        inputs = (x, residual)
    y = _fast_output(out, x, inputs)
    if y is None or residual is None:
        return None if y is None else (y, None)
    s = _fast_output(residual_out, x, inputs)
    if s is None or np.may_share_memory(s, y):
        return None
    return y, s


def _fast_output(out, x, inputs):
    """A new array for None; out when the kernel may write it unchecked; else None."""
    if out is None:
        return _buffers.empty(x.shape, x.dtype)
    if (type(out) is not np.ndarray or out.dtype is not x.dtype or out.shape != x.shape
            or not out.flags.c_contiguous or not out.flags.writeable
            or not _clear_of(out, inputs)):
        return None
    return out


def _fast_path(x, weight, bias, eps, centered, out, want_stats, residual=None,
               residual_out=None):
    """(y, s, mean, second) for the common call, or None to take the general path.

    The common call: a C-contiguous float32/float64 ndarray normalized over its last axis,
    parameters (and residual) of the same dtype and layout, outputs absent or C-contiguous
    arrays of the same dtype, each one either an input itself or clear of all the inputs.
    Cheap attribute tests only: a (1, 768) token normalizes in well under a microsecond,
    and planning a layout would cost several.
    """
    if type(x) is not np.ndarray:
        return None
    dtype = x.dtype
    if (dtype is not _F32 and dtype is not _F64) or not x.flags.c_contiguous or x.ndim == 0:
        return None
    if type(eps) is not float or not 0.0 <= eps < _INF:
        return None
    cols = x.shape[-1]
    w = _fast_param(weight, dtype, cols)
    b = _fast_param(bias, dtype, cols)
    if w is False or b is False or cols == 0:
        return None
    outputs = _fast_outputs(x, out, residual, residual_out)
    if outputs is None:
        return None
    y, s = outputs

    rows = x.size // cols
    stats = (np.empty(rows), np.empty(rows)) if want_stats else None
    s_view = r_view = None
    if residual is not None:
        s_view = IN_PLACE if s is residual else (s.reshape(-1), 0, cols)
        r_view = (residual.reshape(-1), 0, cols)
    y_view = IN_PLACE if y is x else (y.reshape(-1), 0, cols)
    if rows:
        run_rows(y_view, s_view, (x.reshape(-1), 0, cols), r_view, w, b, stats, rows, cols,
                 eps, centered)
    if not want_stats:
        return y, s, None, None
    keepdims = x.shape[:-1] + (1,)
    return y, s, stats[0].reshape(keepdims), stats[1].reshape(keepdims)


def _clear_of(output, inputs):
    """An output may be one of the inputs itself (same elements) or overlap none of them."""
    for a in inputs:  # a loop, not all(generator): this runs on every small call with out=
        if output is not a and np.may_share_memory(output, a):
            return False
    return True


def _normalize(x, weight, bias, axis, eps, out, want_stats, centered, residual=None,
               residual_out=None):
    """The CPU path shared by the public functions: the fast path when the call allows it,
    else full validation and the general engine.  Returns (y, s, mean, second, eps)."""
    done = type(axis) is int and axis == -1 and _fast_path(
        x, weight, bias, eps, centered, out, want_stats, residual, residual_out)
    if done:
        return (*done, eps)
    x = as_array(x, "x")
    if residual is not None:
        residual = _residual(residual, x)
    axes = normalize_axes(axis, x.ndim)
    eps = check_eps(eps)
    return (*normalize(x, axes, weight, bias, eps, centered=centered, out=out,
                       residual=residual, residual_out=residual_out, want_stats=want_stats),
            eps)


def layer_norm(x, weight=None, bias=None, *, axis=-1, eps=1e-5, out=None, return_stats=False):
    """Layer normalization over the given axes.

    ``y = (x - mean) / sqrt(var + eps) * weight + bias`` with the mean and the biased
    (population) variance taken over ``axis`` for every other index.

    Parameters
    ----------
    x : array_like
        Input of any layout.  float32 gives float32; float64, integers and bools give
        float64.  float32 data are accumulated and normalized in float64, then rounded.
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
    if not return_stats and type(axis) is int and axis == -1:
        y = _small_call(x, weight, bias, eps, True, out)
        if y is not None:
            return y
    if _is_gpu_array(x):
        return _gpu().layer_norm(x, weight, bias, axis=axis, eps=eps, out=out,
                                 return_stats=return_stats)
    y, _, mean, var, eps = _normalize(x, weight, bias, axis, eps, out, return_stats, True)
    if not return_stats:
        return y
    return y, mean.astype(y.dtype), _rstd(var, eps, y.dtype)


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
    if not return_stats and type(axis) is int and axis == -1:
        y = _small_call(x, weight, None, eps, False, out)
        if y is not None:
            return y
    if _is_gpu_array(x):
        return _gpu().rms_norm(x, weight, axis=axis, eps=eps, out=out, return_stats=return_stats)
    y, _, _, second, eps = _normalize(x, weight, None, axis, eps, out, return_stats, False)
    return (y, _rstd(second, eps, y.dtype)) if return_stats else y


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
    if _is_gpu_array(x):
        return _gpu().add_layer_norm(x, residual, weight, bias, axis=axis, eps=eps, out=out,
                                     residual_out=residual_out, return_stats=return_stats)
    y, s, mean, var, eps = _normalize(x, weight, bias, axis, eps, out, return_stats, True,
                                      _required(residual), residual_out)
    if not return_stats:
        return y, s
    return y, s, mean.astype(y.dtype), _rstd(var, eps, y.dtype)


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
    if _is_gpu_array(x):
        return _gpu().add_rms_norm(x, residual, weight, axis=axis, eps=eps, out=out,
                                   residual_out=residual_out, return_stats=return_stats)
    y, s, _, second, eps = _normalize(x, weight, None, axis, eps, out, return_stats, False,
                                      _required(residual), residual_out)
    return (y, s, _rstd(second, eps, y.dtype)) if return_stats else (y, s)


def _required(residual):
    """The fused functions' residual (None would silently mean "no residual" below)."""
    if residual is None:
        raise TypeError("residual must be an array, got None")
    return residual


def _residual(residual, x):
    residual = as_array(residual, "residual")
    if residual.dtype.kind not in "fiub" or residual.dtype.itemsize > 8:
        raise TypeError(f"residual has dtype {residual.dtype}, which numba_ln does not support")
    try:
        shape = np.broadcast_shapes(residual.shape, x.shape)
    except ValueError:
        shape = None
    if shape != x.shape:
        raise ValueError(f"residual of shape {residual.shape} does not broadcast to x's shape "
                         f"{x.shape}")
    return residual


def moments(x, axis=-1, *, keepdims=False):
    """Mean and (population) variance over ``axis`` in one pass: ``(mean, var)``.

    A parallel, numerically stable replacement for ``np.mean`` + ``np.var``: float64
    accumulation, exact for constant data, result dtype as :func:`layer_norm`'s.

    Examples
    --------
    >>> import numpy as np, numba_ln
    >>> numba_ln.moments(np.array([[1.0, 2.0, 3.0, 4.0]]))
    (array([2.5]), array([1.25]))
    """
    if _is_gpu_array(x):
        return _gpu().moments(x, axis, keepdims=keepdims)
    x = as_array(x, "x")
    axes = normalize_axes(axis, x.ndim)
    _, _, mean, var = normalize(x, axes, None, None, 0.0, centered=True, want_y=False,
                                want_stats=True)
    dtype = result_dtype(x.dtype)
    mean, var = mean.astype(dtype), var.astype(dtype)
    if not keepdims:
        mean, var = mean.reshape(_squeezed(x.shape, axes)), var.reshape(_squeezed(x.shape, axes))
    return mean, var


def _squeezed(shape, axes):
    return tuple(n for a, n in enumerate(shape) if a not in axes)
