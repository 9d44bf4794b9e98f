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
import numpy as np

from . import _dtypes, _spec
from ._backends import is_dask_array, is_gpu_array
from ._engine import NUMPY, _output_view, _same_kernel_view, same_view
from ._layout import Plan
from ._kinds import plan_for
from .cpu._elements import IN_PLACE
from .cpu.backward import run_backward

_STATS_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _refuse_other_backends(fname, arrays):
    for name, a in arrays.items():
        if a is not None and (is_dask_array(a) or is_gpu_array(a)):
            kind = "a dask array" if is_dask_array(a) else "a GPU array"
            raise TypeError(f"numba_ln.{fname} runs on the CPU with NumPy arrays only for now; "
                            f"{name} is {kind} (convert it with np.asarray, or compute it, "
                            "first)")


def _data(a, name, shape):
    """dy / grad_residual: an array of x's shape and a supported dtype (not broadcast:
    a gradient has its value's shape)."""
    a = NUMPY.input(a, name)
    _dtypes.result_dtype(a.dtype, name)
    if a.shape != shape:
        raise ValueError(f"{name} has shape {a.shape}, expected x's shape {shape}")
    return a


def _stat(s, name, geometry):
    """mean / rstd as 1-D arrays of the rows in kernel order (float32 or float64 as given)."""
    s = NUMPY.input(s, name)
    if s.dtype not in _STATS_DTYPES:
        raise TypeError(f"{name} has dtype {s.dtype}; it must be float32 or float64 (as "
                        "returned by the forward with return_stats=True)")
    keep = geometry.stats_shape()
    if s.shape != keep:
        raise ValueError(f"{name} has shape {s.shape}, expected the keepdims shape {keep} "
                         "(as the forward returns it with return_stats=True)")
    # keepdims order is the batch axes in C order: the kernels' row order.
    flat = np.ascontiguousarray(s).reshape(-1)
    return flat if flat.flags.writeable else flat.copy()  # read-only: another kernel type


def backward(centered, fname, dy, x, weight, mean, rstd, axis, eps, grad_residual, out,
             param_grads):
    """dx, dweight, dbias (dbias None for RMSNorm; both None without param_grads)."""
    _refuse_other_backends(fname, {"dy": dy, "x": x, "grad_residual": grad_residual,
                                   "out": out})
    x = NUMPY.input(x, "x")
    dtype = _dtypes.result_dtype(x.dtype, "x")
    dy = _data(dy, "dy", x.shape)
    gr = None if grad_residual is None else _data(grad_residual, "grad_residual", x.shape)
    # Each array's result dtype, then the widest: an integer or bool array (float64)
    # with a float32 one gives float64.
    dtype = np.result_type(dtype, *(_dtypes.result_dtype(a.dtype) for a in (dy, gr)
                                    if a is not None))
    axes = _spec.normalize_axes(axis, x.ndim)
    eps = _spec.check_eps(eps)
    plan = plan_for(x, axes)
    if plan.kind != "rows":  # no channels kernel: x is copied into rows order
        plan = Plan(x.shape, axes, "rows", False, False)
    if 0 in plan.norm_shape:
        raise ValueError(f"the normalized shape {plan.norm_shape} has no elements "
                         f"(axis={axes})")
    weight = _spec.check_param(NUMPY, weight, "weight", plan.norm_shape, dtype)
    if centered and (mean is None) != (rstd is None):
        given, missing = ("mean", "rstd") if rstd is None else ("rstd", "mean")
        raise ValueError(f"{given} was given without {missing}: pass both (as "
                         "layer_norm(..., return_stats=True) returns them) or neither "
                         "(they are then recomputed from x)")
    stats = None
    if rstd is not None:
        stats = (None if mean is None else _stat(mean, "mean", plan), _stat(rstd, "rstd", plan))
    given_out = out  # returned as given (an np.matrix stays one)
    if out is not None:
        out = _spec.check_output(NUMPY, out, "out", x.shape, dtype)
    if not isinstance(param_grads, (bool, np.bool_)):
        raise TypeError(f"param_grads must be True or False, got {param_grads!r}")

    # --- validated: from here on only the output is written ---------------------------
    if x.dtype != dtype:
        x = x.astype(dtype)
    if dy.dtype != dtype:
        dy = dy.astype(dtype)
    if gr is not None and gr.dtype != dtype:
        gr = gr.astype(dtype)
    # The forward's overlap rule (_spec.inputs_to_copy): inputs under out are read from
    # copies, but dy exactly under it (out=dy: each element of dy is read before dx is
    # written there).
    if out is not None:
        mean_flat, rstd_flat = (None, None) if stats is None else stats
        inputs = {"dy": dy, "x": x, "grad_residual": gr, "weight": weight, "mean": mean_flat,
                  "rstd": rstd_flat}
        copy = _spec.inputs_to_copy(inputs, {"out": out}, _spec.BACKWARD_IN_PLACE,
                                    np.may_share_memory, same_view)
        dy, x, gr, weight, mean_flat, rstd_flat = (
            a.copy() if name in copy else a for name, a in inputs.items())
        if stats is not None:
            stats = (mean_flat, rstd_flat)
    rows, cols = plan.rows, plan.cols
    if rows == 0:
        dx = out if out is not None else np.empty(x.shape, dtype)
        dweight, dbias = np.zeros(cols), np.zeros(cols) if centered else None
    else:
        dx, dx_view = _output_view(plan, out, dtype)
        dy_view, x_view = plan.kernel_input(dy), plan.kernel_input(x)
        gr_view = None if gr is None else plan.kernel_input(gr)
        if out is not None and _same_kernel_view(dx_view, dy_view):
            dx_view = IN_PLACE
        dweight, dbias = run_backward(dx_view, dy_view, x_view, plan.param(weight), stats,
                                      gr_view, rows, cols, eps, centered, bool(param_grads))
        if out is not None and dx is not out:
            np.copyto(out, dx)
    if given_out is not None:
        dx = given_out
    if not param_grads:
        return dx, None, None
    return dx, _param_grad(dweight, plan, dtype), (
        None if dbias is None else _param_grad(dbias, plan, dtype))


def _param_grad(g, plan, dtype):
    """A float64 parameter gradient in kernel column order -> normalized shape, dtype."""
    if plan.flip:
        g = g[::-1]
    return g.astype(dtype).reshape(plan.norm_shape)
