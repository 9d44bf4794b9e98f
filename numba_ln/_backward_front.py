"""The CPU front of the backward functions (_backward_api.py): validation by the forward's
rules (_spec.py, _validate.py, _dtypes.py), the forward's plans (_layout.py) and its output
handling (_engine.py), then the row kernels of cpu/backward.py.

The kernels take rows only (``(buf, start, stride)`` views, cols contiguous): any layout
the forward would run as rows (trailing axes, sliced rows, reversed columns) is read in
place; the others -- channels-first, axes that are not a view -- are copied once into
rows order by ``Plan.kernel_input``, and dx is written back into ``out`` (or returned in
x's layout) from a contiguous buffer.

Everything that can fail is checked before the kernel runs, and nothing is written on an
error.
"""
import math
from typing import NamedTuple

import numpy as np

from . import _dtypes, _rstd, _spec
from ._backends import is_dask_array, is_gpu_array
from ._engine import NUMPY, _output_view, _same_kernel_view, kernel_view, same_view
from ._kinds import backward_kind, plan_for
from ._layout import Geometry, Plan
from ._validate import converted, prepare_param
from .cpu._elements import IN_PLACE
from .cpu.backward import run_backward
from .cpu.transpose import swapped

_STATS_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


_ARRAY_ARGUMENTS = ("dy", "x", "weight", "mean", "rstd", "grad_residual", "out")


def refuse_other_backends(fname, *arrays):
    """A TypeError naming the first dask or GPU array among a backward call's array
    arguments (dy, x, weight, mean, rstd, grad_residual, out, in that order)."""
    for name, a in zip(_ARRAY_ARGUMENTS, arrays):
        if a is not None and (is_dask_array(a) or is_gpu_array(a)):
            kind = "a dask array" if is_dask_array(a) else "a GPU array"
            raise TypeError(f"numba_ln.{fname} runs on the CPU with NumPy arrays only for now; "
                            f"{name} is {kind} (convert it with np.asarray, or compute it, "
                            "first)")


class Checked(NamedTuple):
    """A backward call after the type-level rules: its arrays as the adapter read them
    (stand-ins in _kinds' type pass), weight as the adapter's param() made it."""
    dy: object
    x: object
    grad_residual: object
    weight: object
    mean: object
    rstd: object
    out: object
    dtype: np.dtype
    geometry: Geometry  # x's shape over the normalized axes


def check(arrays, centered, dy, x, weight, mean, rstd, axis, grad_residual, out):
    """The backward's rules over dtypes and shapes (no values: eps and param_grads are
    checked by the caller), in the order of their messages."""
    x = arrays.input(x, "x")
    dtype = _dtypes.result_dtype(x.dtype, "x", "numpy")
    dy = _data(arrays, dy, "dy", x.shape)
    gr = None if grad_residual is None else _data(arrays, grad_residual, "grad_residual",
                                                  x.shape)
    # Each array's result dtype, then the widest: an integer or bool array (float64)
    # with a float32 one gives float64.
    dtype = np.result_type(dtype, *(_dtypes.result_dtype(a.dtype, backend="numpy")
                                    for a in (dy, gr) if a is not None))
    geometry = Geometry(tuple(x.shape), _spec.normalize_axes(axis, len(x.shape)))
    if 0 in geometry.norm_shape:
        raise ValueError(f"the normalized shape {geometry.norm_shape} has no elements "
                         f"(axis={geometry.axes})")
    weight = _spec.check_param(arrays, weight, "weight", geometry.norm_shape, dtype,
                               silently=True)  # (as the forward rounds it)
    if centered and (mean is None) != (rstd is None):
        given, missing = ("mean", "rstd") if rstd is None else ("rstd", "mean")
        raise ValueError(f"{given} was given without {missing}: pass both (as "
                         "layer_norm(..., return_stats=True) returns them) or neither "
                         "(they are then recomputed from x)")
    if rstd is not None:
        mean = None if mean is None else _stat(arrays, mean, "mean", geometry)
        rstd = _stat(arrays, rstd, "rstd", geometry)
    if out is not None:
        out = _spec.check_output(arrays, out, "out", x.shape, dtype)
    return Checked(dy, x, gr, weight, mean, rstd, out, dtype, geometry)


def _data(arrays, a, name, shape):
    """dy / grad_residual: an array of x's shape and a supported dtype (not broadcast:
    a gradient has its value's shape)."""
    a = arrays.input(a, name)
    _dtypes.result_dtype(a.dtype, name, "numpy")
    if tuple(a.shape) != tuple(shape):
        raise ValueError(f"{name} has shape {tuple(a.shape)}, expected x's shape "
                         f"{tuple(shape)}")
    return a


def _stat(arrays, s, name, geometry):
    """mean / rstd: float32 or float64, in the keepdims shape."""
    s = arrays.input(s, name)
    if s.dtype.fields is not None or (s.dtype not in _STATS_DTYPES
                                      and s.dtype.newbyteorder("=") not in _STATS_DTYPES):
        # (byte-swapped ones too, as x and dy may be: _flat_stat reads them natively; not
        # a float viewed with fields, which compares equal to its float)
        raise TypeError(f"{name} has dtype {s.dtype}; it must be float32 or float64 (as "
                        "returned by the forward with return_stats=True)")
    keep = geometry.stats_shape()
    if tuple(s.shape) != keep:
        raise ValueError(f"{name} has shape {tuple(s.shape)}, expected the keepdims shape "
                         f"{keep} (as the forward returns it with return_stats=True)")
    return s


def _flat_stat(s):
    """mean / rstd as 1-D arrays of the rows in kernel order (keepdims order is the batch
    axes in C order: the kernels' row order), in their own dtype."""
    if s is None:
        return None
    if s.ndim == 1 and s.flags.c_contiguous and s.flags.writeable and s.dtype.isnative:
        return s
    flat = np.ascontiguousarray(s, dtype=s.dtype.newbyteorder("=")).reshape(-1)
    return flat if flat.flags.writeable else flat.copy()  # read-only: another kernel type


def backward(centered, fname, dy, x, weight, mean, rstd, axis, eps, grad_residual, out,
             param_grads):
    """dx, dweight, dbias (dbias None for RMSNorm; both None without param_grads)."""
    kind = backward_kind(centered, dy, x, weight, mean, rstd, axis, grad_residual, out)
    given_out = out  # returned as given (an np.matrix stays one)
    if kind is None:
        refuse_other_backends(fname, dy, x, weight, mean, rstd, grad_residual, out)
        checked = check(NUMPY, centered, dy, x, weight, mean, rstd, axis, grad_residual, out)
        dy, x, gr, weight, mean, rstd, out = checked[:7]
        plan, direct = rows_plan(x, checked.geometry.axes), None
    else:
        checked, plan, direct = kind.checked, kind.plan, kind.direct
        gr = grad_residual
        if weight is not None:
            with _rstd.narrowing((weight,), checked.weight):  # (silently, as the forward)
                weight = prepare_param(weight, "weight", plan.norm_shape, checked.weight)
    dtype = checked.dtype
    if not (type(eps) is float and 0.0 <= eps < math.inf):  # (check_eps' own fast test,
        # made here so that RMSNorm's work dtype is looked up only for another eps)
        eps = _spec.check_eps(eps, work=None if centered else _dtypes.work_dtype(dtype))
    if out is not None:
        _spec.check_writable(NUMPY, out, "out")
    if not isinstance(param_grads, (bool, np.bool_)):
        raise TypeError(f"param_grads must be True or False, got {param_grads!r}")
    half = _dtypes.is_half(dtype)  # (16-bit: the kernels read the bits, weight float32)
    if half and weight is not None:
        weight = weight.astype(np.float32, copy=False)
    stats = None if rstd is None else (_flat_stat(mean), _flat_stat(rstd))

    # --- validated: from here on only the output is written ---------------------------
    grads = None
    if param_grads:  # (in kernel column order; 16-bit: float32, as torch's autocast)
        param_dtype = np.float32 if half else dtype
        grads = (np.empty(plan.cols, param_dtype),
                 np.empty(plan.cols, param_dtype) if centered else None)
    if direct is not None and out is not None and _inputs_to_copy(
            _inputs(dy, x, gr, weight, stats), out):
        direct = None  # (out over an input it does not replace: _general reads a copy)
    if direct is not None:  # (_kinds: every array read and written where it lies)
        views = [None if a is None else (a.reshape(-1), *direct) for a in (dy, x, gr, out)]
        if half:
            views = [kernel_view(v) for v in views]
        if out is None:
            dx, dx_view = plan.fresh(dtype, _dtypes.kernel_dtype(dtype) if half else None)
        else:  # (laid out as dy: exactly over it is in place, as in _general)
            dx, dx_view = out, IN_PLACE if same_view(out, dy) else views[3]
        run_backward(dx_view, *views[:2], weight, stats, views[2], plan.rows, plan.cols, eps,
                     centered, grads)
    else:
        dx = _general(plan, dtype, dy, x, gr, weight, stats, out, eps, centered, grads)
    if given_out is not None:
        dx = given_out
    if grads is None:
        return dx, None, None
    dweight, dbias = grads
    return dx, _param_grad(dweight, plan), None if dbias is None else _param_grad(dbias, plan)


def _general(plan, dtype, dy, x, gr, weight, stats, out, eps, centered, grads):
    """dx (in out when given; the parameter gradients into grads): any layout, dtype
    conversion and overlap."""
    if x.dtype != dtype:
        x = converted(x, dtype)
    if dy.dtype != dtype:
        dy = converted(dy, dtype)
    if gr is not None and gr.dtype != dtype:
        gr = converted(gr, dtype)
    # The forward's overlap rule (_spec.inputs_to_copy): inputs under out are read from
    # copies, but dy exactly under it (out=dy: each element of dy is read before dx is
    # written there).
    if out is not None:
        inputs = _inputs(dy, x, gr, weight, stats)
        copy = _inputs_to_copy(inputs, out)
        dy, x, gr, weight, mean_flat, rstd_flat = (
            a.copy() if name in copy else a for name, a in inputs.items())
        if stats is not None:
            stats = (mean_flat, rstd_flat)
    rows, cols = plan.rows, plan.cols
    if rows == 0:
        run_backward(None, None, None, None, None, None, 0, cols, eps, centered, grads)
        return out if out is not None else np.empty(x.shape, dtype)
    dx, dx_view = _output_view(plan, out, dtype)
    dy_view, x_view = plan.kernel_input(dy), plan.kernel_input(x)
    gr_view = None if gr is None else plan.kernel_input(gr)
    if out is not None and _same_kernel_view(dx_view, dy_view):
        dx_view = IN_PLACE
    if _dtypes.is_half(dtype):  # (the kernels read 16-bit floats as their bits)
        dx_view, dy_view, x_view, gr_view = map(kernel_view, (dx_view, dy_view, x_view, gr_view))
    run_backward(dx_view, dy_view, x_view, plan.param(weight), stats, gr_view, rows, cols, eps,
                 centered, grads)
    if out is not None and dx is not out:
        swap = plan.swap(out)
        if swap:  # (dx's rows into a channels-first out, tiled; out has dx's dtype)
            swapped(plan.arrange(dx, copy_ok=False), swap[0], swap[1], cols, out)
        else:
            np.copyto(out, dx)
    return dx


def _inputs(dy, x, gr, weight, stats):
    """The arrays the kernels read, by name (the statistics as flat rows, or None)."""
    mean, rstd = (None, None) if stats is None else stats
    return {"dy": dy, "x": x, "grad_residual": gr, "weight": weight, "mean": mean,
            "rstd": rstd}


def _inputs_to_copy(inputs, out):
    """The names of the inputs the kernels must read from a copy: _spec's overlap rule
    (the forward's), with the backward's in-place form, out=dy."""
    return _spec.inputs_to_copy(inputs, {"out": out}, _spec.BACKWARD_IN_PLACE,
                                np.may_share_memory, same_view)


def rows_plan(x, axes):
    """x's plan as rows: there is no channels backward kernel, so such a layout is copied
    into rows order (Plan.kernel_input)."""
    plan = plan_for(x, axes)
    return plan if plan.kind == "rows" else Plan(x.shape, axes, "rows", False, False)


def _param_grad(g, plan):
    """A parameter gradient in kernel column order -> the normalized shape."""
    if plan.flip:
        g = g[::-1].copy()
    return g.reshape(plan.norm_shape)
