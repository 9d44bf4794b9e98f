"""Axes -> kernel views.  The one place where an ``axis`` choice and an array layout become
the flat, unit-stride buffers the CPU kernels read.

Two kernel shapes cover every case (see numba_ln/cpu/):

``rows``      (rows, cols), cols contiguous: trailing axes of C-ordered arrays, sliced rows,
              negative strides.  A reversed column axis is read forwards (x, out, weight
              and bias all flipped together).
``channels``  (outer, chans, inner), inner contiguous: a normalized axis that is not
              innermost (axis=1 of NCHW, axis=-1 of a Fortran matrix).

Only when neither exists as a strided view of x (e.g. x[::2, ::2], axes (0, 2) of a 3-D
array with an odd layout) is x copied once into rows order.
"""
import functools
import math

import numpy as np
from numpy.lib.stride_tricks import as_strided

from . import _buffers
from .cpu.transpose import swapped


def _view(a, shape):
    """a.reshape(shape) when that is a view, else None."""
    try:
        return a.reshape(shape, copy=False)
    except ValueError:
        return None


def flat(view):
    """The kernel view ``(buf, start, *steps)`` of an array view whose last axis has unit
    stride: element [i, j, k] of the view is ``buf[start + i*steps[0] + j*steps[1] + k]``.
    None when strides are not whole elements or the last axis is not unit-stride -- a
    broadcast (stride 0) last axis included: the kernels walk it with step 1, so such a
    view must reach them as a copy (Plan.kernel_input makes one).  Zero steps on the other
    axes are fine: a row read again for every row is just a row stride of 0."""
    item = view.itemsize
    if view.flags.c_contiguous:  # the common case, without as_strided's cost
        steps = [0 if n == 1 else s // item for n, s in zip(view.shape, view.strides)]
        return (view.reshape(-1), 0, *steps[:-1])
    steps = []
    start = 0
    base = view
    for axis, (n, stride) in enumerate(zip(view.shape, view.strides)):
        if n == 1:
            stride = 0
        step, rem = divmod(stride, item)
        if rem:
            return None
        if step < 0:  # read from the lowest address; `start` points back at element 0
            start += (n - 1) * -step
            index = [slice(None)] * view.ndim
            index[axis] = slice(None, None, -1)
            base = base[tuple(index)]
        steps.append(step)
    if steps[-1] != 1 and view.shape[-1] > 1:
        return None
    span = 1 + sum((n - 1) * abs(s) for n, s in zip(view.shape, steps))
    buf = as_strided(base, shape=(span,), strides=(item,), writeable=view.flags.writeable)
    return (buf, start, *steps[:-1])


class Geometry:
    """Normalizing an array of `shape` over `axes`, seen as (rows, cols): the batch axes
    first, then the normalized ones (``perm``).  Shared by the CPU plans and the GPU
    front; shapes only, no arrays."""

    def __init__(self, shape, axes):
        self.shape = shape
        self.axes = axes
        self.batch = tuple(a for a in range(len(shape)) if a not in axes)
        self.perm = self.batch + axes
        self.trailing = self.perm == tuple(range(len(shape)))
        self.norm_shape = tuple(shape[a] for a in axes)
        self.cols = math.prod(self.norm_shape)
        self.rows = math.prod(shape[a] for a in self.batch)
        self.inverse = tuple(int(i) for i in np.argsort(self.perm))  # undoes perm
        self._stats_shape = tuple(1 if a in axes else n for a, n in enumerate(shape))
        self.reduced_shape = tuple(n for a, n in enumerate(shape) if a not in axes)

    def stats_shape(self):
        """keepdims shape of per-row statistics."""
        return self._stats_shape


class Plan(Geometry):
    """How arrays of x's shape map onto one kernel's index space."""

    def __init__(self, shape, axes, kind, flip, via_rows):
        super().__init__(shape, axes)
        self.kind = kind  # "rows" or "channels"
        self.flip = flip  # reverse the contiguous axis of every view
        self.via_rows = via_rows  # channels seen through the transposed (rows, cols) view
        if kind == "channels" and not via_rows:
            first, last = axes[0], axes[-1]
            self.outer = math.prod(shape[:first])
            self.inner = math.prod(shape[last + 1:])
        elif kind == "channels":
            self.outer, self.inner = 1, self.rows
        self.kernel_shape = ((self.rows, self.cols) if kind == "rows"
                             else (self.outer, self.cols, self.inner))

    def arrange(self, a, copy_ok=True):
        """a (x's shape) in kernel order; None if that needs a copy and copy_ok is False."""
        if self.kind == "channels" and not self.via_rows:
            v = a.reshape(self.kernel_shape) if copy_ok else _view(a, self.kernel_shape)
        else:
            t = a.transpose(self.perm)
            rows_cols = (self.rows, self.cols)
            v = t.reshape(rows_cols) if copy_ok else _view(t, rows_cols)
            if v is not None and self.kind == "channels":
                v = v.T[None]
        if v is not None and self.flip:
            v = v[..., ::-1]
        return v

    def kernel_input(self, a):
        """The kernel view of an input array, copying it only when its layout needs it."""
        swap = self.swap(a)
        if swap:  # (channels-first into rows: a tiled copy, cpu/transpose.py)
            return flat(swapped(a, swap[0], self.cols, swap[1]).reshape(self.rows, self.cols))
        v = self.arrange(a)
        got = flat(v)
        if got is None:
            got = flat(np.ascontiguousarray(v))
        return got

    def swap(self, a):
        """(outer, inner) when a, of x's shape, reaches a rows plan by swapping its block of
        normalized axes with the `inner` elements of the axes after them (more than one),
        being C-contiguous with native 2-, 4- or 8-byte elements; else None."""
        axes = self.axes
        if not (self.kind == "rows" and not self.flip and not self.trailing
                and axes[-1] - axes[0] + 1 == len(axes) and a.flags.c_contiguous and a.dtype.isnative
                and a.dtype.itemsize in (2, 4, 8) and a.size > 0):
            return None
        inner = math.prod(self.shape[axes[-1] + 1:])
        return (math.prod(self.shape[:axes[0]]), inner) if inner > 1 else None

    def kernel_output(self, out):
        """The kernel view writing straight into out, or None when out's layout does not allow it."""
        v = self.arrange(out, copy_ok=False)
        return None if v is None else flat(v)

    def empty(self, dtype):
        """A new array of x's shape whose kernel view is contiguous."""
        return self._in_x_order(_buffers.empty(self.kernel_shape, dtype))

    def fresh(self, dtype, bits=None):
        """(a new array of x's shape, its kernel view): what ``empty`` and
        ``kernel_output`` give together, without deriving the view again -- the kernel
        view of a fresh output is its contiguous kernel-order buffer (read as ``bits``,
        for 16-bit floats: _dtypes.kernel_dtype)."""
        buf = _buffers.empty((self.rows * self.cols,), dtype)
        if self.trailing and self.kind == "rows" and not self.flip:
            y = buf.reshape(self.shape)  # (the common case in one reshape)
        else:
            y = self._in_x_order(buf.reshape(self.kernel_shape))
        return y, (buf if bits is None else buf.view(bits), 0, *self.fresh_steps)

    @functools.cached_property
    def fresh_steps(self):
        """The steps of a contiguous kernel-order buffer's view (0 along a size-1 axis, as
        ``flat`` gives them)."""
        shape = self.kernel_shape
        steps, size = [], 1
        for axis in range(len(shape) - 1, 0, -1):
            size *= shape[axis]
            steps.append(0 if shape[axis - 1] == 1 else size)
        return tuple(reversed(steps))

    def _in_x_order(self, t):
        """A contiguous kernel-order array seen in x's shape (undoes ``arrange``)."""
        if self.flip:
            t = t[..., ::-1]
        if self.kind == "channels" and not self.via_rows:
            return t.reshape(self.shape)
        if self.kind == "channels":
            t = t[0].T
        permuted = tuple(self.shape[a] for a in self.perm)
        return t.reshape(permuted).transpose(self.inverse)

    def param(self, p):
        """weight/bias (1-D, normalized order) in the kernel's column order."""
        if p is not None and self.flip and self.kind == "rows":
            return np.ascontiguousarray(p[::-1])
        return p

    def stats_to_keepdims(self, flat_stats):
        """Per-row statistics in kernel order -> keepdims array."""
        if self.kind == "channels" and self.flip:
            flat_stats = flat_stats.reshape(self.outer, self.inner)[:, ::-1]
        return flat_stats.reshape(self.stats_shape())


def make_plan(x, axes):
    """Choose the kernel shape for normalizing x over axes (sorted, non-negative)."""
    shape = x.shape
    item = x.itemsize
    plan = Plan(shape, axes, "rows", False, False)
    view = _view(x.transpose(plan.perm), (plan.rows, plan.cols))
    if view is not None:
        row_stride, col_stride = view.strides
        if plan.cols == 1 or col_stride == item:
            return plan
        if col_stride == -item:
            return Plan(shape, axes, "rows", True, False)
        if plan.rows > 1 and abs(row_stride) == item:
            return Plan(shape, axes, "channels", row_stride < 0, True)
    if axes == tuple(range(axes[0], axes[-1] + 1)):
        plan = Plan(shape, axes, "channels", False, False)
        view = _view(x, plan.kernel_shape)
        if view is not None and plan.inner > 1 and abs(view.strides[2]) == item:
            return Plan(shape, axes, "channels", view.strides[2] < 0, False)
    return Plan(shape, axes, "rows", False, False)  # kernel_input copies x into rows order
