"""Arrays whose dtype is an equal copy of NumPy's own dtype object: unpickled arrays'.

The small-call gates compare dtypes by identity (``x.dtype is F32``: ~15 ns, where ``==``
costs ~100 ns of a ~1.4 us call), and NumPy makes every dtype it unpickles anew
(``np.dtype.__reduce__`` rebuilds it with ``copy=True``).  So arrays that crossed a process
boundary by pickle (multiprocessing, concurrent.futures, a pickled module's parameters)
failed every gate: a (1, 768) float32 layer_norm of such arrays took the general path,
7.5 us against 1.44.  Once the gates have declined a call, the public functions try them
again with such arrays viewed under the canonical dtype object (``again``; a view costs
~0.1 us), and return the caller's own ``out=``/``residual_out=`` objects.
"""
import numpy as np

from ._dtypes import F32, F64, is_bfloat16

_NDARRAY = np.ndarray
# dtype -> NumPy's own object for it (dict lookups compare dtypes by value, so every equal
# copy finds the entry; filled on first sight, up to _CANONICAL_KEPT entries: a server
# refusing calls on ever new text or record dtypes grew it ~300 bytes a call)
_CANONICAL = {F32: F32, F64: F64}
_CANONICAL_KEPT = 64


def canonical_dtype(dtype):
    """NumPy's own dtype object equal to dtype (dtype itself when it has none)."""
    canonical = _CANONICAL.get(dtype)
    if canonical is None:
        own = np.dtype(dtype.type)  # (the registered object: float16, bfloat16, ...)
        # (a float viewed with fields compares equal to its float: it stays as it is, and
        # the general path refuses it, as it refuses it as a parameter)
        same = own == dtype and dtype.fields is None
        canonical = own if same else dtype
        # (NumPy's own float dtypes always: a float with fields is a dtype of its own)
        if len(_CANONICAL) < _CANONICAL_KEPT or (same and (own.kind == "f"
                                                          or is_bfloat16(own))):
            _CANONICAL[dtype] = canonical
    return canonical


def recast(a):
    """a viewed under NumPy's own dtype object when its dtype is an equal copy of it; a
    itself otherwise (anything but an ndarray, too)."""
    if type(a) is not _NDARRAY:
        return a
    dtype = a.dtype
    if dtype is F32 or dtype is F64:
        return a
    canonical = canonical_dtype(dtype)
    return a if canonical is dtype else a.view(canonical)


def _recast_all(arrays):
    """The arrays through recast, one view per distinct array (so that ``out is x`` stays
    true of the views), or None when none changes."""
    for a in arrays:  # (first a quick look: every call the gates decline comes here)
        if type(a) is _NDARRAY and a.dtype is not F32 and a.dtype is not F64:
            break
    else:
        return None
    views, recast_arrays, changed = {}, [], False
    for a in arrays:
        if type(a) is _NDARRAY:
            view = views.get(id(a))
            if view is None:
                view = views[id(a)] = recast(a)
                changed = changed or view is not a
            a = view
        recast_arrays.append(a)
    return recast_arrays if changed else None


def _callers_outputs(got, outputs):
    """got (a result or a tuple of them) with the caller's own output objects in place of
    the views the call wrote: outputs is ((view, given), ...) for positions 0, 1, ..."""
    parts = list(got) if type(got) is tuple else [got]
    for position, (view, given) in enumerate(outputs):
        if view is not given:
            parts[position] = given
    return tuple(parts) if type(got) is tuple else parts[0]


def again(small_call, x, weight, bias, eps, centered, out, return_stats, axis,
          residual=None, residual_out=None):
    """_small_front.small_call's result for the call with its arrays recast, or None when
    none needs it or the gates decline it still."""
    arrays = _recast_all((x, weight, bias, out, residual, residual_out))
    if arrays is None:
        return None
    x, weight, bias, out_view, residual, out_s_view = arrays
    got = small_call(x, weight, bias, eps, centered, out_view, return_stats, axis, residual,
                     out_s_view)
    if got is None:
        return None
    return _callers_outputs(got, ((out_view, out), (out_s_view, residual_out)))


def moments_again(small_moments_call, x, axis, keepdims):
    """small_moments_call's result for x recast, or None."""
    recast_x = recast(x)
    return None if recast_x is x else small_moments_call(recast_x, axis, keepdims)


def backward_again(small_backward_call, centered, dy, x, weight, mean, rstd, eps, out,
                   grad_residual, param_grads, axis):
    """small_backward_call's result for the call with its arrays recast, or None."""
    arrays = _recast_all((dy, x, weight, mean, rstd, out, grad_residual))
    if arrays is None:
        return None
    dy, x, weight, mean, rstd, out_view, grad_residual = arrays
    got = small_backward_call(centered, dy, x, weight, mean, rstd, eps, out_view,
                              grad_residual, param_grads, axis)
    return None if got is None else _callers_outputs(got, ((out_view, out),))
