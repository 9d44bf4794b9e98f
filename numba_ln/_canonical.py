"""Arrays whose dtype is an equal copy of NumPy's own dtype object: unpickled arrays'.

The small-call gates compare dtypes by identity (``x.dtype is F32``: ~15 ns, where ``==``
costs ~100 ns of a ~1.4 us call), and NumPy makes every dtype it unpickles anew
(``np.dtype.__reduce__`` rebuilds it with ``copy=True``).  So arrays that crossed a process
boundary by pickle (multiprocessing, concurrent.futures, a pickled module's parameters)
failed every gate: a (1, 768) float32 layer_norm of such arrays took the general path,
7.5 us against 1.44.  Once the gates have declined a call, the public functions try them
again with such arrays viewed under the canonical dtype object (``again``; a view costs
~0.1 us), and return the caller's own ``out=``/``residual_out=`` objects.

The same retry takes NumPy scalars where the gates take Python ones (``_plain``):
``return_stats``/``keepdims``/``param_grads`` as ``np.True_``, an axis as ``np.int64(-1)``
(an ``arr.ndim - 1`` or a value read from an array), a 0-d float array as eps, and a NumPy
float or integer weight or bias (the general path gives them the values and result dtype
of the Python number).  Each took the general path: 10-31 us a (1, 768) call against
1.5.  A call the gates decline again goes to the general path with its own arguments,
which raises the same errors as before.

An ndarray larger than the forward gates' bound (_small_front._SMALL) is not retried:
they decline every call of that size, recast or not, and the retry took ~0.9 us of the
general path's ~13 us of Python (a (192, 1024) float32 ``layer_norm(out=)``, 2026-12-08).
The backward's gate takes calls of any size, so its retry is made at any size.
"""
import numpy as np

from . import _config
from ._dtypes import F32, F64, is_bfloat16
from ._small_front import _SMALL

_NDARRAY = np.ndarray
_NP_BOOL = np.bool_
_NP_NUMBERS = (np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64,
               np.uint8, np.uint16, np.uint32, np.uint64)
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


class _Plain:
    """NumPy scalars as the Python scalars the gates take; ``changed`` tells whether any
    was converted."""

    def __init__(self):
        self.changed = False

    def flag(self, value):
        """np.True_/np.False_ as True/False; NOT_A_FLAG for anything else but a bool."""
        if type(value) is bool:
            return value
        if type(value) is _NP_BOOL:
            self.changed = True
            return bool(value)
        return NOT_A_FLAG

    def axis(self, axis):
        """A NumPy integer, or a tuple holding some, as Python ints."""
        if type(axis) in _NP_NUMBERS and axis.dtype.kind in "iu":
            self.changed = True
            return int(axis)
        if type(axis) is tuple and any(type(a) in _NP_NUMBERS for a in axis):
            self.changed = True
            return tuple(int(a) if type(a) in _NP_NUMBERS and a.dtype.kind in "iu" else a
                         for a in axis)
        return axis

    def eps(self, eps):
        """A 0-d float array as its float."""
        if type(eps) is _NDARRAY and eps.ndim == 0 and eps.dtype.kind == "f" and (
                type(eps[()]) in _NP_NUMBERS):
            self.changed = True
            return float(eps)
        return eps

    def number(self, p):
        """A NumPy float or integer scalar weight/bias as the Python number."""
        if type(p) in _NP_NUMBERS:
            self.changed = True
            return p.item()
        return p


def _too_large(x, fused=False):
    """Whether x is an ndarray the gates decline for its size alone, recast or not (a
    subclass is retried: the test is ~60 ns of a ~4 us retry); fused: with a residual,
    whose gate takes half as many elements (the bound read per call, as the gate does)."""
    if type(x) is not _NDARRAY:
        return False
    if fused:
        return x.size * _config.FUSED_COST > _config.SERIAL_MAX_ELEMENTS
    return x.size > _SMALL


NOT_A_FLAG = object()


def again(small_call, x, weight, bias, eps, centered, out, return_stats, axis,
          residual=None, residual_out=None):
    """_small_front.small_call's result for the call with its arrays recast and its NumPy
    scalars plain, or None when none needs it or the gates decline it still."""
    if _too_large(x, residual is not None):
        return None
    plain = _Plain()
    return_stats = plain.flag(return_stats)
    if return_stats is NOT_A_FLAG:
        return None
    axis, eps = plain.axis(axis), plain.eps(eps)
    weight, bias = plain.number(weight), plain.number(bias)
    arrays = _recast_all((x, weight, bias, out, residual, residual_out))
    if arrays is None:
        if not plain.changed:
            return None
        arrays = (x, weight, bias, out, residual, residual_out)
    x, weight, bias, out_view, residual, out_s_view = arrays
    got = small_call(x, weight, bias, eps, centered, out_view, return_stats, axis, residual,
                     out_s_view)
    if got is None:
        return None
    return _callers_outputs(got, ((out_view, out), (out_s_view, residual_out)))


def moments_again(small_moments_call, x, axis, keepdims):
    """small_moments_call's result for x recast and the NumPy scalars plain, or None."""
    if _too_large(x):
        return None
    plain = _Plain()
    keepdims = plain.flag(keepdims)
    if keepdims is NOT_A_FLAG:
        return None
    axis, recast_x = plain.axis(axis), recast(x)
    if recast_x is x and not plain.changed:
        return None
    return small_moments_call(recast_x, axis, keepdims)


def backward_again(small_backward_call, centered, dy, x, weight, mean, rstd, eps, out,
                   grad_residual, param_grads, axis):
    """small_backward_call's result for the call with its arrays recast and its NumPy
    scalars plain, or None."""
    plain = _Plain()
    param_grads = plain.flag(param_grads)
    if param_grads is NOT_A_FLAG:
        return None
    axis, eps = plain.axis(axis), plain.eps(eps)
    arrays = _recast_all((dy, x, weight, mean, rstd, out, grad_residual))
    if arrays is None:
        if not plain.changed:
            return None
        arrays = (dy, x, weight, mean, rstd, out, grad_residual)
    dy, x, weight, mean, rstd, out_view, grad_residual = arrays
    got = small_backward_call(centered, dy, x, weight, mean, rstd, eps, out_view,
                              grad_residual, param_grads, axis)
    return None if got is None else _callers_outputs(got, ((out_view, out),))
