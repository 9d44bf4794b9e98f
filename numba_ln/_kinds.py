"""Plan once per kind of call, check values every call: the CPU fronts' caches.

A call's *kind* is what its types and shapes decide: the function, the dtypes, shapes (and
x's strides) of x and of each optional array, the axis argument and the flags.  The first
call of a kind runs the full rules of _spec.build and _layout.make_plan; the decisions
(normalized axes, result and parameter dtypes, the layout plan of x) are kept, and a
later call of that kind checks only what can change between calls with the same types
and shapes: eps's value, whether out is writeable and free of zero strides, overlaps
(in the fronts), and the parameters' memory (read per call: values change).

Both caches are ``functools.lru_cache``s: bounded (least recently used dropped), safe
for concurrent threads, and without a Python-level lock on the hot path.  A call whose
arguments do not make a hashable kind (lists, ndarray subclasses, a list as axis) takes
the uncached rules, which give the same result and the same errors.
"""
import functools

import numpy as np
from numpy.lib.stride_tricks import as_strided

from . import _spec
from ._layout import make_plan

MAX_PLANS = 512  # kinds kept per cache; a training or decoding loop uses a handful


def _array_kind(a):
    """(dtype, shape) of an ndarray argument, None for None; False when the argument is
    not a plain ndarray (such a call is not cached)."""
    if a is None:
        return None
    if type(a) is not np.ndarray:
        return False
    return (a.dtype, a.shape)


class _Types:
    """Stands in for arrays in _spec's rules: only dtype, shape and ndim are read."""

    __slots__ = ("dtype", "shape", "ndim", "strides")

    def __init__(self, dtype, shape):
        self.dtype, self.shape, self.ndim = dtype, shape, len(shape)
        self.strides = ()  # (zero strides of an output: checked per call)


class _TypeRules:
    """_spec's adapter for the type-level pass: the checks that depend on dtypes and shapes
    only (the NumPy adapter's values-level checks run on every call)."""

    name = "numpy"

    @staticmethod
    def input(a, name):
        return a

    output = input

    @staticmethod
    def readonly(a):
        return False  # checked per call

    @staticmethod
    def overlap(a, b):
        return False  # checked per call

    @staticmethod
    def param(p, name, shape, dtype):
        return dtype  # the dtype the parameter is prepared in, per call


_TYPE_RULES = _TypeRules()


@functools.lru_cache(maxsize=MAX_PLANS)
def _typed_call(variant, want_stats, x, axis, residual, weight, bias, out, residual_out):
    """_spec.build over dtypes and shapes: a Call whose arrays are _Types, weight and bias
    their prepared dtype.  Raises _spec's errors (not cached)."""
    types = [None if k is None else _Types(*k) for k in (x, residual, weight, bias, out,
                                                         residual_out)]
    x_t, r_t, w_t, b_t, out_t, rout_t = types
    return _spec.build(variant, _TYPE_RULES, x_t, r_t, w_t, b_t, axis, 0.0, out_t, rout_t,
                       want_stats)


def call_kind(variant, x, residual, weight, bias, axis, out, residual_out, want_stats):
    """The cached type-level Call of this kind, or None when the call has no cacheable
    kind (then _spec.build checks it whole)."""
    kinds = tuple(_array_kind(a) for a in (x, residual, weight, bias, out, residual_out))
    if kinds[0] is None or False in kinds or not isinstance(axis, (int, np.integer, tuple)):
        return None
    try:
        hash(axis)
    except TypeError:  # a list inside the tuple: _spec refuses or reads it
        return None
    return _typed_call(variant, want_stats, kinds[0], axis, *kinds[1:])


def plan_for(x, axes):
    """_layout.make_plan(x, axes), kept per (shape, strides, dtype, axes): a plan is
    geometry only, a function of those."""
    return _plan(x.shape, x.strides, x.dtype, axes)


@functools.lru_cache(maxsize=MAX_PLANS)
def _plan(shape, strides, dtype, axes):
    # A stand-in with x's shape and strides over one element, never read: make_plan only
    # looks at how views of it would be laid out.
    shadow = as_strided(np.empty(1, dtype), shape, strides, writeable=False)
    return make_plan(shadow, axes)
