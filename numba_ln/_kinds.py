"""Plan once per kind of call, check values every call: the CPU fronts' cache.

A call's *kind* is what its types and shapes decide: the function, the flags, the axis
argument, and the dtype, shape and strides of x and of each optional array.  The first
call of a kind runs the full rules of _spec.build and _layout.make_plan and keeps their
decisions in a ``Kind``: the normalized axes, the result and parameter dtypes, the layout
plan, and whether the call can run *direct* -- every array read and written where it
lies -- with the steps of x's kernel view.  A later call of that kind checks only
what can change between calls with the same types and shapes: eps's value, whether out is
writeable, overlaps, and the parameters' memory (read per call: values change).

The cache is a ``functools.lru_cache``: bounded (least recently used dropped), safe for
concurrent threads, and without a Python-level lock on the hot path.  A call whose
arguments do not make a plain kind (lists, ndarray subclasses, NumPy or bool axes) takes
the uncached rules, which give the same result and the same errors.
"""
import functools
from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

from . import _dtypes, _spec
from ._layout import flat, make_plan

MAX_PLANS = 512  # kinds kept; a training or decoding loop uses a handful


class Kind(NamedTuple):
    typed: _spec.Call  # _spec.build's Call over stand-ins (weight/bias: their dtype)
    plan: object       # _layout.Plan of x
    # (start, *steps) of x's kernel view over x.reshape(-1) when the call can run direct:
    # x in the result dtype and laid out so that the kernels read it where it lies, a
    # residual laid out as x or one row broadcast over its rows (residual_steps), and
    # out=/residual_out= (if any) laid out as x, so read and written through views with
    # the same steps (weight and bias are prepared per call as always; the outputs'
    # overlaps are checked per call).  None: the general steps (_engine.normalize).
    direct: tuple
    # (start, *steps) of the residual's kernel view over residual.reshape(-1) for a direct
    # call: direct itself for a residual laid out as x, a row step of 0 for one row
    # broadcast over x's rows; None without a residual or a direct call.
    residual_steps: tuple = None
    # Whether the call can take the lean lane (_lean.py; moments: _lean.moments): direct
    # rows, and weight/bias (if any) used as they are or as their flat view
    # (C-contiguous, of the normalized shape and the parameters' dtype: prepare_param's
    # own test, but for writeability, which the lane checks per call).
    lean: bool = False
    # The dtype the kernels read x's elements as (16-bit floats: their bits; None for
    # the others), and the returned statistics' dtype.
    bits: np.dtype = None
    stats_dtype: np.dtype = None


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


def _signature(a):
    """(dtype, shape, strides) of a plain ndarray; None for None."""
    if a is None:
        return None
    if type(a) is not np.ndarray:
        raise _NotPlain
    return (a.dtype, a.shape, a.strides)


class _NotPlain(Exception):
    """An argument with no plain kind: the call takes the uncached rules."""


def _axis_key(axis):
    """The axis argument as a key: Python and NumPy integers and tuples of them (a bool
    equals 1 as a key, so it never becomes one: _spec refuses it)."""
    if type(axis) is int:
        return axis
    if isinstance(axis, np.integer):
        return int(axis)
    if type(axis) is tuple and all(type(a) is int for a in axis):
        return axis
    raise _NotPlain


def forward_kind(variant, x, residual, weight, bias, axis, out, residual_out, want_stats):
    """The cached Kind of a forward call, or None when it has no plain kind (then
    _spec.build checks it whole).  Raises _spec's type-level errors."""
    if type(x) is not np.ndarray:
        return None
    try:
        # (an absent array's None inlined: a call of _signature is ~70 ns)
        key = (variant, want_stats, _axis_key(axis), x.dtype, x.shape, x.strides,
               None if residual is None else _signature(residual), _signature(weight),
               _signature(bias), None if out is None else _signature(out),
               None if residual_out is None else _signature(residual_out))
    except _NotPlain:
        return None
    return _forward_kind(key)


def _shadow(signature):
    """An array of this (dtype, shape, strides) over one element, never read: the rules
    and plans only look at how it and its views are laid out."""
    dtype, shape, strides = signature
    return as_strided(np.empty(1, dtype), shape, strides, writeable=False)


@functools.lru_cache(maxsize=MAX_PLANS)
def _forward_kind(key):
    variant, want_stats, axis, x_dtype, x_shape, x_strides, r, w, b, out, r_out = key
    x_t, r_t, w_t, b_t, out_t, r_out_t = (
        None if s is None else _Types(s[0], s[1]) for s in ((x_dtype, x_shape), r, w, b, out,
                                                            r_out))
    typed = _spec.build(variant, _TYPE_RULES, x_t, r_t, w_t, b_t, axis, 0.0, out_t, r_out_t,
                        want_stats)
    x_sig = (x_dtype, x_shape, x_strides)
    plan = _plan(*x_sig, typed.axes)
    direct = r_steps = None
    if (x_dtype == typed.dtype and out in (None, x_sig) and (r_out is None or r_out == x_sig)
            and (r is None or plan.kind == "rows")):
        direct = _direct_steps(x_sig, plan)
        if direct is not None and r is not None:
            r_steps = (direct if r == x_sig
                       else _direct_steps(r, plan, x_shape) if r[0] == x_dtype else None)
            direct = None if r_steps is None else direct
    lean = (direct is not None and plan.kind == "rows"
            and _as_they_are(w, typed.weight, typed.norm_shape)
            and _as_they_are(b, typed.bias, typed.norm_shape))
    if not lean:
        return Kind(typed, plan, direct, r_steps)
    bits = _dtypes.kernel_dtype(x_dtype) if _dtypes.is_half(x_dtype) else None
    return Kind(typed, plan, direct, r_steps, lean, bits, _dtypes.stats_dtype(typed.dtype))


def _as_they_are(sig, dtype, norm_shape):
    """Whether parameters of this signature (None: absent) are used as they are, or as
    their one row (prepare_param returns them, or their flat view, when writeable:
    C-contiguous, of the normalized shape and the parameters' dtype)."""
    return sig is None or (sig[0] == dtype and sig[1] == norm_shape
                           and _shadow(sig).flags.c_contiguous)


def _direct_steps(sig, plan, x_shape=None):
    """(start, *steps) of the kernel view over a.reshape(-1) of a C-contiguous array a of
    this signature: x itself, or (x_shape given) a residual broadcast to x's shape, which
    the kernels walk in place when it is one row read again for each row (row step 0).
    None when it must be copied (a broadcast along the normalized axis, or over some batch
    axes and not others), is read through another base (not C-contiguous, or a reversed
    axis), or the plan has no rows."""
    shadow = _shadow(sig)
    if not shadow.flags.c_contiguous or plan.flip or plan.rows == 0:
        return None
    if x_shape is not None:
        shadow = np.broadcast_to(shadow, x_shape)
    view = plan.arrange(shadow, copy_ok=False)
    got = None if view is None else flat(view)
    # Strides all >= 0 (no flip): the lowest address flat() starts from is a's first
    # element, so start is 0 (checked: the kernels read a.reshape(-1) from there).
    return None if got is None or got[1] != 0 else tuple(got[1:])


def plan_for(x, axes):
    """_layout.make_plan(x, axes), kept per (dtype, shape, strides, axes): a plan is
    geometry only, a function of those."""
    return _plan(x.dtype, x.shape, x.strides, axes)


@functools.lru_cache(maxsize=MAX_PLANS)
def _plan(dtype, shape, strides, axes):
    return make_plan(_shadow((dtype, shape, strides)), axes)


class BackwardKind(NamedTuple):
    checked: object  # _backward_front.Checked over stand-ins (weight: its dtype)
    plan: object     # x's plan as rows (_backward_front.rows_plan)
    direct: tuple    # as Kind.direct: dy, x (and grad_residual, out=) laid out alike


def backward_kind(centered, dy, x, weight, mean, rstd, axis, grad_residual, out):
    """The cached BackwardKind of a backward call, or None when it has no plain kind.
    Raises the type-level errors of _backward_front.check."""
    if type(x) is not np.ndarray or type(dy) is not np.ndarray:
        return None
    try:
        key = (centered, _axis_key(axis), x.dtype, x.shape, x.strides, _signature(dy),
               _signature(weight), _signature(mean), _signature(rstd),
               _signature(grad_residual), _signature(out))
    except _NotPlain:
        return None
    return _backward_kind(key)


@functools.lru_cache(maxsize=MAX_PLANS)
def _backward_kind(key):
    from ._backward_front import check, rows_plan

    centered, axis, x_dtype, x_shape, x_strides, dy, w, mean, rstd, gr, out = key
    x_sig = (x_dtype, x_shape, x_strides)
    dy_t, x_t, w_t, mean_t, rstd_t, gr_t, out_t = (
        None if s is None else _Types(s[0], s[1]) for s in (dy, x_sig, w, mean, rstd, gr, out))
    checked = check(_TYPE_RULES, centered, dy_t, x_t, w_t, mean_t, rstd_t, axis, gr_t, out_t)
    plan = rows_plan(_shadow(x_sig), checked.geometry.axes)
    direct = None
    if x_dtype == checked.dtype and dy == x_sig and gr in (None, x_sig) and out in (None, x_sig):
        direct = _direct_steps(x_sig, plan)
    return BackwardKind(checked, plan, direct)
