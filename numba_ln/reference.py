"""Plain float64 NumPy oracles: the definitions every kernel is tested against.

Slow and obviously right: statistics by ``np.mean``/``np.var`` (pairwise summation) in
float64, then the formula as written.  Results stay float64; callers round if they wish.
"""
import numpy as np


def _f64(a):
    return None if a is None else np.asarray(a, dtype=np.float64)


def _param_shape(x, axes):
    """Shape that broadcasts a normalized-shape parameter against x."""
    return tuple(n if a in axes else 1 for a, n in enumerate(x.shape))


def _axes(axis, ndim):
    axis = (axis,) if np.isscalar(axis) else tuple(axis)
    return tuple(sorted(a % ndim for a in axis))


def _affine(y, x, weight, bias, axes):
    shape = _param_shape(x, axes)
    norm_shape = tuple(x.shape[a] for a in axes)
    if weight is not None:
        y = y * np.broadcast_to(_f64(weight), norm_shape).reshape(shape)
    if bias is not None:
        y = y + np.broadcast_to(_f64(bias), norm_shape).reshape(shape)
    return y


def layer_norm(x, weight=None, bias=None, axis=-1, eps=1e-5):
    """(y, mean, rstd), all float64, mean/rstd in keepdims shape."""
    x = _f64(x)
    axes = _axes(axis, x.ndim)
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    rstd = 1.0 / np.sqrt(var + eps)
    return _affine((x - mean) * rstd, x, weight, bias, axes), mean, rstd


def rms_norm(x, weight=None, axis=-1, eps=1e-6):
    """(y, rstd), float64, rstd in keepdims shape."""
    x = _f64(x)
    axes = _axes(axis, x.ndim)
    rstd = 1.0 / np.sqrt(np.mean(x * x, axis=axes, keepdims=True) + eps)
    return _affine(x * rstd, x, weight, None, axes), rstd


def moments(x, axis=-1):
    x = _f64(x)
    axes = _axes(axis, x.ndim)
    return x.mean(axis=axes), x.var(axis=axes)


def _backward(dy, x, weight, xhat, rstd, axes, grad_residual, centered):
    """dx, dweight, dbias from xhat and rstd (float64, keepdims rstd)."""
    dy = _f64(dy)
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
    x = _f64(x)
    axes = _axes(axis, x.ndim)
    if mean is None or rstd is None:
        _, mean, rstd = layer_norm(x, axis=axes, eps=eps)
    mean, rstd = _f64(mean), _f64(rstd)
    return _backward(dy, x, weight, (x - mean) * rstd, rstd, axes, grad_residual, True)


def rms_norm_backward(dy, x, weight=None, rstd=None, axis=-1, eps=1e-6, grad_residual=None):
    """(dx, dweight), float64: the gradients of rms_norm(x, weight) given dy."""
    x = _f64(x)
    axes = _axes(axis, x.ndim)
    if rstd is None:
        _, rstd = rms_norm(x, axis=axes, eps=eps)
    rstd = _f64(rstd)
    dx, dweight, _ = _backward(dy, x, weight, x * rstd, rstd, axes, grad_residual, False)
    return dx, dweight
