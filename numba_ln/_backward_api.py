"""Public backward functions: the gradients of layer_norm and rms_norm, for training in
NumPy or Numba.  The commonest calls take the small-call kernels (_small_backward_front.py), 16-bit
data are computed in float32 (_half_backward.py); the rest is validated and planned by
_backward_front.py and computed by the row kernels of cpu/backward.py (one sweep per row,
dweight/dbias summed in a fixed order)."""
from . import _half_backward
from ._backward_front import backward
from ._canonical import backward_again
from ._small_backward_front import small_backward_call


def layer_norm_backward(dy, x, weight=None, *, mean=None, rstd=None, axis=-1, eps=1e-5,
                        grad_residual=None, out=None, param_grads=True):
    """Gradients of :func:`layer_norm`: ``(dx, dweight, dbias)`` for the output gradient dy.

    With ``xhat = (x - mean) * rstd`` and ``g = dy * weight`` (``g = dy`` without a weight),
    means over the normalized axes and sums over the other axes::

        dx      = rstd * (g - mean(g) - xhat * mean(g * xhat))  [+ grad_residual]
        dweight = sum(dy * xhat)        dbias = sum(dy)

    One pass over dy and x per row, rows in parallel; dweight and dbias are summed in
    float64 partials combined in a fixed order, so every result is bitwise the same for
    any thread count.

    Parameters
    ----------
    dy : array_like
        Gradient of the loss with respect to ``y = layer_norm(x, weight, bias)``; x's shape.
    x : array_like
        The forward's input, any layout.  float32 gives float32; float64, integers and
        bools give float64 (dx, dweight and dbias alike; dy and grad_residual take part in
        the promotion).  bfloat16 and float16 are computed in float32 and give dx in the
        16-bit dtype (rounded once), dweight and dbias in float32.
    weight : array_like, optional
        The forward's weight, broadcastable to the normalized shape.  The bias does not
        enter the gradients.
    mean, rstd : ndarray, optional
        The forward's statistics, as ``layer_norm(..., return_stats=True)`` returns them
        (keepdims shape, float32 or float64), used as given.  Pass both or neither: when
        omitted they are recomputed from x in the same pass, exact at any offset.
    axis : int or tuple of ints, default -1
        The normalized axes, as in the forward.
    eps : float, default 1e-5
        The forward's eps (used only when the statistics are recomputed).
    grad_residual : array_like, optional
        An array of x's shape added to dx in the same pass: the gradient that reaches
        ``s = x + residual`` along the residual stream, for the backward of
        :func:`add_layer_norm` (dx is then the gradient of both x and residual).
    out : ndarray, optional
        Array of x's shape and the result dtype to write dx into; ``out=dy`` works in place.
    param_grads : bool, default True
        False returns ``(dx, None, None)`` and skips the dweight/dbias sums.

    Returns
    -------
    dx, dweight, dbias
        dx of x's shape; dweight and dbias of the normalized shape, returned whether or not
        the forward had a weight or bias.

    Examples
    --------
    >>> import numpy as np, numba_ln
    >>> x = np.array([[1.0, 2.0, 3.0], [2.0, 0.0, 1.0]])
    >>> dy = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    >>> dx, dweight, dbias = numba_ln.layer_norm_backward(dy, x, eps=0.0)
    >>> dx.round(6)
    array([[ 0.204124, -0.408248,  0.204124],
           [-0.408248, -0.408248,  0.816497]])
    >>> dweight.round(6), dbias
    (array([-1.224745,  0.      ,  0.      ]), array([1., 0., 1.]))
    """
    done = ((type(param_grads) is bool
             and small_backward_call(True, dy, x, weight, mean, rstd, eps, out,
                                     grad_residual, param_grads, axis))
            or backward_again(small_backward_call, True, dy, x, weight, mean, rstd, eps, out,
                              grad_residual, param_grads, axis))
    if done is not None:
        return done
    return _general_path(True, "layer_norm_backward", dy, x, weight, mean, rstd, axis, eps,
                         grad_residual, out, param_grads)


def rms_norm_backward(dy, x, weight=None, *, rstd=None, axis=-1, eps=1e-6,
                      grad_residual=None, out=None, param_grads=True):
    """Gradients of :func:`rms_norm`: ``(dx, dweight)`` for the output gradient dy.

    With ``xhat = x * rstd`` and ``g = dy * weight``::

        dx = rstd * (g - xhat * mean(g * xhat))  [+ grad_residual]     dweight = sum(dy * xhat)

    ``rstd`` is the forward's (``rms_norm(..., return_stats=True)``, keepdims shape) or,
    when omitted, recomputed from x.  Same axis, dtype, ``grad_residual`` (the backward of
    :func:`add_rms_norm`), ``out=`` and ``param_grads`` rules as
    :func:`layer_norm_backward`; ``param_grads=False`` returns ``(dx, None)``.  ``eps=None``
    as in :func:`rms_norm`.

    Examples
    --------
    >>> import numpy as np, numba_ln
    >>> dx, dweight = numba_ln.rms_norm_backward(np.array([1.0, 0.0]), np.array([3.0, 4.0]),
    ...                                          eps=0.0)
    >>> dx.round(4), dweight.round(4)
    (array([ 0.181 , -0.1358]), array([0.8485, 0.    ]))
    """
    done = ((type(param_grads) is bool
             and small_backward_call(False, dy, x, weight, None, rstd, eps, out,
                                     grad_residual, param_grads, axis))
            or backward_again(small_backward_call, False, dy, x, weight, None, rstd, eps,
                              out, grad_residual, param_grads, axis))
    if done is not None:
        return done[:2]
    dx, dweight, _ = _general_path(False, "rms_norm_backward", dy, x, weight, None, rstd, axis,
                                   eps, grad_residual, out, param_grads)
    return dx, dweight


def _compute(centered, fname, dy, x, weight, mean, rstd, axis, eps, grad_residual, out,
             param_grads):
    """(dx, dweight, dbias) of a float32 call that mixed 16-bit data were widened into
    (_half_backward calls back here): the small-call kernels when they take it, as the
    public functions try them first, else the general path."""
    if type(param_grads) is bool:
        done = small_backward_call(centered, dy, x, weight, mean, rstd, eps, out,
                                   grad_residual, param_grads, axis)
        if done is not None:
            return done
    return _general_path(centered, fname, dy, x, weight, mean, rstd, axis, eps, grad_residual,
                         out, param_grads)


def _general_path(centered, fname, dy, x, weight, mean, rstd, axis, eps, grad_residual, out,
                  param_grads):
    """(dx, dweight, dbias) of a call the small-call kernels did not take: 16-bit data
    through float32 (_compute), else the general path."""
    if _half_backward.takes(dy, x, grad_residual):
        return _half_backward.half_backward(_compute, centered, fname, dy, x, weight, mean,
                                            rstd, axis, eps, grad_residual, out, param_grads)
    return backward(centered, fname, dy, x, weight, mean, rstd, axis, eps, grad_residual, out,
                    param_grads)
