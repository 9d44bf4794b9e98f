"""``layer_norm_backward`` and ``rms_norm_backward`` inside ``@njit`` code (last axis).

The same row kernel as a Python call (``cpu.backward.backward_block``, with the same
argument types and the same tasks, one after the other), so the results are those of the
Python path, whose parallel kernel runs the same tasks -- to a few roundings: compiled
again inside the user's function, LLVM may vectorize a sum differently (README, Same
bits).  LayerNorm over one element gives exact zeros, as from Python (_single_column).
Serial, as the forward overloads: parallelism comes from the user's ``prange`` loop or
from calling numba_ln from Python.

Supported (anything else is a ``TypingError`` that says what is):

- ``dy``, ``x``, ``grad_residual``: arrays of the same number of dimensions (at least 1),
  float32, float64, integer or bool; the shapes are checked at run time.  The result dtype
  is that of the Python path (an integer or bool array with float32 gives float64).
  C-contiguous writeable arrays of the result dtype are read in place, others copied once.
- ``weight``: None, a number, or an array broadcastable to ``(x.shape[-1],)``.
- ``mean``/``rstd``: None, or float32/float64 arrays of keepdims shape
  (``x.shape[:-1] + (1,)``, as the forward overloads return them); layer_norm_backward
  takes both or neither.
- ``axis``: the last axis only, as a constant; ``eps``: an int or float (None for
  rms_norm_backward: the Python rule).
- ``out``: a writeable array of x's shape and the result dtype (``out=dy`` in place).
- ``param_grads``: a constant True or False (the result's type depends on it).
"""
import numpy as np
from numba import types
from numba.extending import overload, register_jitable

from .. import _backward_api
from ..cpu import _partials, backward as _bw
from ..cpu._elements import IN_PLACE
from . import _memoized
from .checks import (_absent, _check_axis, _check_eps, _fail, _flag, _is_view, _output_kind,
                     _param_kind, _x_dtype)
from .core import (_JIT_OPTIONS, _copy_into, _detach, _detach_any, _flat_copy, _may_overlap,
                   _param_copy, _repeats_elements)

_task_rows = register_jitable(_bw.task_rows)  # the Python path's tasks, in compiled code
_backward_serial = _bw.backward_serial  # (and its loop over them; jitable itself)
_partial_rows, _param_grad = _partials.partial_rows, _partials.param_grad


@register_jitable(**_JIT_OPTIONS)
def _single_column(dxf, dyf, xf, wf, w_absent, st, grf, has_r, rows, e):
    """LayerNorm over one element (cpu/backward.py's _single_column, whose reasons hold
    here): dx exactly 0 (+ grad_residual) and dweight exactly 0 for finite rows, in float64
    with the cancellations exact; returns (dweight, dbias) as float64."""
    dweight = dbias = 0.0
    for i in range(rows):
        x_i, dy_i = 1.0 * xf[i], 1.0 * dyf[i]  # (read before dx, which may be dy, is written)
        if not st[2]:
            mean, rstd = x_i, 1.0 / np.sqrt((x_i - x_i) ** 2 + e)
        else:
            mean, rstd = st[0][i], st[1][i]
        xhat = (x_i - mean) * rstd
        g = dy_i if w_absent else dy_i * wf[0]
        value = rstd * ((g - g) - xhat * (g * xhat))
        if has_r:
            value += grf[i]
        dxf[i] = value
        dweight += dy_i * xhat
        dbias += dy_i
    return dweight, dbias


def _same_ndim(fname, name, t, x):
    if not _absent(t) and (not isinstance(t, types.Array) or t.ndim != x.ndim):
        _fail(fname, f"{name} must be an array with x's {x.ndim} dimension(s), got {t}")


def _stat_kind(fname, name, t, x):
    """"absent", "view" (read in place) or "copy" (to float64: exact, the same sums)."""
    if _absent(t):
        return "absent"
    if (not isinstance(t, types.Array) or t.ndim != x.ndim
            or t.dtype not in (types.float32, types.float64)):
        _fail(fname, f"{name} must be None or a float32/float64 array of keepdims shape "
                     f"(x.shape[:-1] + (1,), {x.ndim} dimension(s)), got {t}")
    # float32 statistics are widened (the Python path's kernel variant: _stand_ins)
    return "view" if t.layout == "C" and t.mutable and t.dtype == types.float64 else "copy"


def _make_backward(fname, centered, dy, x, weight, mean, rstd, eps, grad_residual, out,
                   param_grads):
    """Check a call's types; return the jitted
    ``core(dy, x, weight, mean, rstd, eps, grad_residual, out) -> (dx, dweight, dbias)``
    (dweight, dbias None when not asked for; dbias None for RMSNorm)."""
    grads = _flag(fname, "param_grads", param_grads, ints=False)
    dtype = _x_dtype(fname, x)
    _same_ndim(fname, "dy", dy, x)
    _same_ndim(fname, "grad_residual", grad_residual, x)
    has_r = not _absent(grad_residual)
    for name, t in (("dy", dy), ("grad_residual", grad_residual)):
        if not _absent(t):
            dtype = np.result_type(dtype, _x_dtype(fname, t, name))
    none_eps = _check_eps(fname, eps, centered, dtype)  # (RMSNorm's eps=None: a float)
    eps_given = none_eps is None
    w_kind = _param_kind(fname, "weight", weight, dtype)
    w_absent, w_scalar, w_view = (w_kind == k for k in ("absent", "scalar", "view"))
    m_kind = _stat_kind(fname, "mean", mean, x) if centered else "absent"
    r_kind = _stat_kind(fname, "rstd", rstd, x)
    if centered and (m_kind == "absent") != (r_kind == "absent"):
        _fail(fname, "pass mean and rstd together (as layer_norm(..., return_stats=True) "
                     "returns them) or neither (they are then recomputed from x)")
    has_stats, m_view, r_view = r_kind != "absent", m_kind == "view", r_kind == "view"
    stats_ln, stats_rms = has_stats and centered, has_stats and not centered
    dx_kind = _output_kind(fname, "out", out, x, dtype)
    dx_new, dx_view, dx_temp = (dx_kind == k for k in ("new", "view", "temp"))
    x_view, dy_view = _is_view(x, dtype), _is_view(dy, dtype)
    gr_view = has_r and _is_view(grad_residual, dtype)
    may_in_place = dx_view and dy_view
    dt = dtype.type

    @register_jitable(**_JIT_OPTIONS)
    def core(dy, x, weight, mean, rstd, eps, grad_residual, out):
        e = float(eps) if eps_given else none_eps
        if not (e >= 0.0 and e < np.inf):
            raise ValueError("numba_ln: eps must be a finite number >= 0")
        shape = x.shape
        cols = shape[-1]
        if cols == 0:
            raise ValueError("numba_ln: the normalized axis (the last) has no elements")
        rows = x.size // cols
        zero = np.int64(0)  # not a literal 0: the kernel's signature must be the Python path's
        if dy.shape != shape:
            raise ValueError("numba_ln: dy must have x's shape")
        xf = x.reshape(-1) if x_view else _flat_copy(x, dt)
        dyf = dy.reshape(-1) if dy_view else _flat_copy(dy, dt)
        empty = xf[:0]
        if not has_r:
            grf = empty
        else:
            if grad_residual.shape != shape:
                raise ValueError("numba_ln: grad_residual must have x's shape")
            grf = grad_residual.reshape(-1) if gr_view else _flat_copy(grad_residual, dt)

        if w_absent:
            wf = empty
        elif w_scalar:
            wf = np.full(cols, weight, dt)
        elif w_view and weight.shape[0] == cols:
            wf = weight
        else:  # a copy, or one element broadcast; ValueError unless it broadcasts
            wf = _param_copy(weight, cols, dt)

        keep = shape[:-1] + (1,)
        if has_stats:
            if rstd.shape != keep:
                raise ValueError("numba_ln: rstd must have the keepdims shape "
                                 "x.shape[:-1] + (1,)")
            rf = rstd.reshape(-1) if r_view else _flat_copy(rstd, np.float64)
        if stats_ln:
            if mean.shape != keep:
                raise ValueError("numba_ln: mean must have the keepdims shape "
                                 "x.shape[:-1] + (1,)")
            mf = mean.reshape(-1) if m_view else _flat_copy(mean, np.float64)

        if dx_view or dx_temp:
            if out.shape != shape:
                raise ValueError("numba_ln: out must have x's shape")
        if dx_temp:  # (a C-contiguous one has no zero stride)
            if _repeats_elements(out):
                raise ValueError("numba_ln: out has a zero stride (a broadcast view): several "
                                 "of its elements are one memory location")
        if dx_view:
            dxf = out.reshape(-1)
        else:
            dxf = np.empty(x.size, dt)
        if dx_view or dx_temp:
            # Inputs under out are read from copies, but dy exactly under it (in place).
            if _may_overlap(xf, dxf):
                xf = xf.copy()
            if _may_overlap(grf, dxf):
                grf = grf.copy()
            dyf = _detach(dyf, dxf)
            wf = _detach_any(wf, dxf)
            if has_stats:
                rf = _detach_any(rf, dxf)
            if stats_ln:
                mf = _detach_any(mf, dxf)

        per_task = _task_rows(rows, cols)
        tasks = (rows + per_task - 1) // per_task
        if grads:
            dweight = np.empty(cols, dt)
            if centered:
                dbias = np.empty(cols, dt)
            else:
                dbias = None
        else:
            dweight = dbias = None
        # (the Python path's partial rows and their sum: _partials)
        p64w, p64b = _partial_rows(tasks, cols, 0.0, dweight, dbias)
        pw, pb = _partial_rows(tasks, cols, dt(0), dweight, dbias)
        # Absent arrays are None for the kernel (a compile-time fact, as from Python).
        if w_absent:
            w_v = None
        else:
            w_v = wf
        if has_r:
            gr_v = (grf, zero, cols)
        else:
            gr_v = None
        # (mean, rstd, given), as the Python path forms them (cpu/backward.run_backward)
        if stats_ln:
            st = _bw.given_stats(mf, rf)
        elif stats_rms:  # (a zero mean, as the Python path passes: _stand_ins)
            st = _bw.given_stats(np.zeros(rows), rf)
        else:
            st = _bw.recomputed_stats()
        c = np.bool_(centered)
        dy_v, x_v = (dyf, zero, cols), (xf, zero, cols)
        done = False
        dw1 = db1 = 0.0
        if centered and cols == 1:
            dw1, db1 = _single_column(dxf, dyf, xf, wf, w_absent, st, grf, has_r, rows, e)
            done = True
        elif may_in_place:
            if dxf.ctypes.data == dyf.ctypes.data:
                _backward_serial((IN_PLACE, dy_v, x_v, gr_v), (w_v, e, c), st,
                                 (p64w, p64b, pw, pb), rows, cols, per_task)
                done = True
        if not done:
            _backward_serial(((dxf, zero, cols), dy_v, x_v, gr_v), (w_v, e, c), st,
                             (p64w, p64b, pw, pb), rows, cols, per_task)

        if dx_view:
            dx = out
        elif dx_temp:
            _copy_into(out, dxf)
            dx = out
        else:
            dx = dxf.reshape(shape)
        if not grads:
            return dx, None, None
        if centered and cols == 1:
            dweight[0] = dw1
            dbias[0] = db1
        else:
            _param_grad(p64w, tasks, cols, dweight)
            _param_grad(p64b, tasks, cols, dbias)
        return dx, dweight, dbias

    return core


@overload(_backward_api.layer_norm_backward, prefer_literal=True, jit_options=_JIT_OPTIONS)
@_memoized
def _layer_norm_backward(dy, x, weight=None, mean=None, rstd=None, axis=-1, eps=1e-5,
                         grad_residual=None, out=None, param_grads=True):
    fname = "layer_norm_backward"
    _x_dtype(fname, x)
    _check_axis(fname, axis, x.ndim)
    core = _make_backward(fname, True, dy, x, weight, mean, rstd, eps, grad_residual, out,
                          param_grads)

    def impl(dy, x, weight=None, mean=None, rstd=None, axis=-1, eps=1e-5,
             grad_residual=None, out=None, param_grads=True):
        return core(dy, x, weight, mean, rstd, eps, grad_residual, out)
    return impl


@overload(_backward_api.rms_norm_backward, prefer_literal=True, jit_options=_JIT_OPTIONS)
@_memoized
def _rms_norm_backward(dy, x, weight=None, rstd=None, axis=-1, eps=1e-6, grad_residual=None,
                       out=None, param_grads=True):
    fname = "rms_norm_backward"
    _x_dtype(fname, x)
    _check_axis(fname, axis, x.ndim)
    core = _make_backward(fname, False, dy, x, weight, None, rstd, eps, grad_residual, out,
                          param_grads)

    def impl(dy, x, weight=None, rstd=None, axis=-1, eps=1e-6, grad_residual=None, out=None,
             param_grads=True):
        dx, dweight, _ = core(dy, x, weight, None, rstd, eps, grad_residual, out)
        return dx, dweight
    return impl
