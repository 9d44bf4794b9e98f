"""numba_ln inside ``@njit`` code: ``numba.extending.overload`` of the public functions.

Importing this module (``import numba_ln`` does) registers compiled implementations of
``layer_norm``, ``rms_norm``, ``add_layer_norm``, ``add_rms_norm`` and ``moments``, so the
same function objects work in a user's ``@njit`` (and ``@njit(parallel=True)``) code with
the same names, argument order and keywords.  Registering is cheap; nothing compiles until
a user function that calls them does.

One implementation: the compiled path calls the same serial row kernel
(``cpu.rows.rows_serial``) with the same argument types as the Python path, so the results
are identical to the last bit to a Python call that normalizes row by row (every call
except the split-row path Python takes for a few very long rows).  The statistics are
rounded to the result dtype the way ``_api`` rounds them.

Always serial: compiled code never starts a parallel region of its own, so calling
``layer_norm(x[i], w, b)`` in a user's ``prange`` loop nests nothing.  Parallelism over
many rows comes from the user's ``prange`` loop, or from calling numba_ln from Python.

What compiled code supports (anything else is a ``TypingError`` that says what is):

- ``x``: an array of 1 or more dimensions; float32 gives float32, float64, integer and bool
  give float64 (as from Python).  Any layout: C-contiguous arrays are read in place, others
  (and read-only ones) are copied once into a contiguous buffer.
- ``axis``: the last axis only, as a constant (``-1``, ``x.ndim - 1`` or ``(-1,)``).
- ``weight``/``bias``: None, a number, or an array broadcastable to ``(x.shape[-1],)``.
- ``residual``: an array broadcastable to x's shape.
- ``eps``: an int or float; ``out=``/``residual_out=``: writeable arrays of x's shape and
  the result dtype (any layout; ``out=x`` works in place).
- ``return_stats``/``keepdims``: constants True or False (the result's type depends on
  them).  The keyword-only arguments may also be passed by position in compiled code.
"""
import numpy as np
from numba import types
from numba.core.errors import TypingError
from numba.extending import overload, register_jitable
from numba.np.numpy_support import as_dtype

from . import _api
from ._validate import result_dtype
from .cpu.rows import rows_serial

# Numba compiles an overload, and every dispatcher it calls that has no specialization yet,
# with the flags of the calling function when they are not set explicitly (fastmath and
# error_model are inherited), and that compilation then serves every later caller, Python
# ones too.  Pinning the Python path's flags here keeps a user's @njit(fastmath=True) from
# changing numba_ln's rounding or NaN handling: in these implementations (the rstd of
# return_stats) and in the kernels they compile.
_JIT_OPTIONS = {"fastmath": False, "error_model": "python"}


# --- typing-time checks (plain Python, run while Numba types a user's call) -----------------

def _fail(fname, message):
    raise TypingError(f"numba_ln.{fname} in @njit code: {message}")


def _absent(t):
    """An omitted argument arrives as its Python default, an explicit None as types.none."""
    return t is None or isinstance(t, (types.NoneType, types.Omitted))


def _constant(t):
    """(True, value) for a Python default or a literal type, else (False, None)."""
    if isinstance(t, types.Omitted):
        return True, t.value
    if isinstance(t, types.Literal):
        return True, t.literal_value
    if isinstance(t, types.Type):
        return False, None
    return True, t


def _flag(fname, name, t):
    known, value = _constant(t)
    if not known or not isinstance(value, (bool, np.bool_)):
        _fail(fname, f"{name} must be a constant True or False (the type of the result "
                     f"depends on it), got {t}")
    return bool(value)


def _check_axis(fname, axis, ndim):
    known, value = _constant(axis)
    if isinstance(axis, types.BaseTuple) and len(axis) == 1:
        known, value = _constant(axis[0])
    elif known and isinstance(value, tuple) and len(value) == 1:
        value = value[0]
    if (known and isinstance(value, (int, np.integer)) and not isinstance(value, bool)
            and value in (-1, ndim - 1)):
        return
    got = value if known else axis
    _fail(fname, f"only the last axis is supported, as a constant: axis=-1 (the default) or "
                 f"{ndim - 1}; got axis={got}. Call numba_ln.{fname} from Python for other "
                 "axes.")


def _check_eps(fname, eps):
    known, value = _constant(eps)
    if known:
        ok = isinstance(value, (int, float, np.integer, np.floating))
        ok = ok and not isinstance(value, (bool, np.bool_))
    else:
        ok = isinstance(eps, (types.Integer, types.Float)) and not isinstance(eps, types.Boolean)
    if not ok:
        _fail(fname, f"eps must be a real number (int or float), got {eps}")


def _real_dtype(t):
    try:
        dtype = as_dtype(t.dtype)
    except Exception:  # records, objects: nothing numba_ln can normalize
        return None
    return dtype if dtype.kind in "fiub" and dtype.itemsize <= 8 else None


def _x_dtype(fname, x, name="x"):
    """The result dtype for array argument x, with _validate's rule."""
    if not isinstance(x, types.Array) or x.ndim == 0:
        _fail(fname, f"{name} must be a NumPy array of 1 or more dimensions, got {x}")
    dtype = _real_dtype(x)
    try:
        return result_dtype(dtype if dtype is not None else x.dtype, name)
    except TypeError as exc:
        _fail(fname, str(exc))


def _pick_input(t, dtype):
    """How an array reaches the kernel: a flat view when it can, else one contiguous copy."""
    if t.layout == "C" and t.mutable and as_dtype(t.dtype) == dtype:
        return _flat_view
    return _flat_copy


def _pick_param(fname, name, t, dtype):
    if _absent(t):
        return _param_absent
    if isinstance(t, (types.Number, types.Boolean)) and not isinstance(t, types.Complex):
        return _param_scalar
    if isinstance(t, types.Array) and t.ndim >= 1 and _real_dtype(t) is not None:
        if t.ndim == 1 and t.layout == "C" and t.mutable and as_dtype(t.dtype) == dtype:
            return _param_view
        return _param_copy
    _fail(fname, f"{name} must be None, a real number or a real (float, int or bool) array "
                 f"broadcastable to (x.shape[-1],), got {t}")


def _pick_residual(fname, t, x):
    if not isinstance(t, types.Array) or not 1 <= t.ndim <= x.ndim or _real_dtype(t) is None:
        _fail(fname, f"residual must be a real (float, int or bool) array of at most x's "
                     f"{x.ndim} dimensions, broadcastable to x's shape, got {t}")


def _pick_output(fname, name, t, x, dtype):
    """(make, finish, user_given) for out= / residual_out=."""
    if _absent(t):
        return _out_new, _finish_new, False
    if (not isinstance(t, types.Array) or t.ndim != x.ndim or as_dtype(t.dtype) != dtype
            or not t.mutable):
        _fail(fname, f"{name} must be a writeable {dtype} array with x's {x.ndim} "
                     f"dimension(s) (the result dtype and shape), got {t}")
    if t.layout == "C":
        return _out_view, _finish_view, True
    return _out_temp, _finish_copy, True


# --- compiled helpers ------------------------------------------------------------------------

@register_jitable
def _flat_view(a, dt):
    return a.reshape(-1)


@register_jitable
def _flat_copy(a, dt):
    out = np.empty(a.shape, dt)
    out[...] = a
    return out.reshape(-1)


@register_jitable
def _broadcasts(src, dst):
    """True when shape src broadcasts to shape dst (NumPy's rule, src no longer than dst)."""
    offset = len(dst) - len(src)
    for k in range(len(src)):
        if src[k] != 1 and src[k] != dst[offset + k]:
            return False
    return True


@register_jitable
def _param_absent(p, cols, dt):
    return np.empty(0, dt)


@register_jitable
def _param_scalar(p, cols, dt):
    return np.full(cols, p, dt)


@register_jitable
def _param_view(p, cols, dt):
    if p.shape[0] != cols:
        raise ValueError("numba_ln: weight/bias does not broadcast to the normalized shape "
                         "(x.shape[-1],)")
    return p


@register_jitable
def _param_copy(p, cols, dt):
    if not _broadcasts(p.shape, (cols,)):
        raise ValueError("numba_ln: weight/bias does not broadcast to the normalized shape "
                         "(x.shape[-1],)")
    flat = _flat_copy(p, dt)
    if flat.size == cols:
        return flat
    return np.full(cols, flat[0], dt)


@register_jitable
def _residual_rows(r, shape, cols, dt):
    """(flat buffer, row stride) for residual r against x's shape; stride 0 repeats a row."""
    if not _broadcasts(r.shape, shape):
        raise ValueError("numba_ln: residual does not broadcast to x's shape")
    if r.shape == shape:
        return _flat_copy(r, dt), np.int64(cols)
    if r.size == cols:  # one row, repeated: read in place with row stride 0
        return _flat_copy(r, dt), np.int64(0)
    full = np.empty(shape, dt)
    full[...] = r
    return full.reshape(-1), np.int64(cols)


@register_jitable
def _residual_rows_view(r, shape, cols, dt):
    """_residual_rows for a writeable C-contiguous r of the result dtype: no copy."""
    if not _broadcasts(r.shape, shape):
        raise ValueError("numba_ln: residual does not broadcast to x's shape")
    if r.shape == shape:
        return r.reshape(-1), np.int64(cols)
    if r.size == cols:
        return r.reshape(-1), np.int64(0)
    full = np.empty(shape, dt)
    full[...] = r
    return full.reshape(-1), np.int64(cols)


@register_jitable
def _residual_none(r, shape, cols, dt):
    return np.empty(0, dt), np.int64(0)


@register_jitable
def _out_none(out, shape, dt):
    """No such output: the kernel's empty placeholder."""
    empty = np.empty(0, dt)
    return empty, empty


@register_jitable
def _out_new(out, shape, dt):
    y = np.empty(shape, dt)
    return y, y.reshape(-1)


@register_jitable
def _out_temp(out, shape, dt):
    """out= of another layout: the kernel writes a contiguous array, copied into out."""
    if out.shape != shape:
        raise ValueError("numba_ln: out/residual_out must have x's shape")
    y = np.empty(shape, dt)
    return y, y.reshape(-1)


@register_jitable
def _out_view(out, shape, dt):
    if out.shape != shape:
        raise ValueError("numba_ln: out/residual_out must have x's shape")
    return out, out.reshape(-1)


@register_jitable
def _finish_new(out, y):
    return y


@register_jitable
def _finish_view(out, y):
    return out


@register_jitable
def _finish_copy(out, y):
    out[...] = y
    return out


@register_jitable
def _bounds(a):
    lo = a.ctypes.data
    return lo, lo + a.size * a.itemsize


@register_jitable
def _overlap(a, b):
    if a.size == 0 or b.size == 0:
        return False
    a_lo, a_hi = _bounds(a)
    b_lo, b_hi = _bounds(b)
    return a_lo < b_hi and b_lo < a_hi


@register_jitable
def _detach(a, o):
    """a, or a copy of it when output o overlaps it other than element for element (as
    _engine._detach_inputs).  Both are flat contiguous buffers."""
    if _overlap(a, o) and not (a.ctypes.data == o.ctypes.data and a.size == o.size):
        return a.copy()
    return a


@register_jitable
def _keep(a, o):
    return a


@register_jitable
def _disjoint(y, s):
    if _overlap(y, s):
        raise ValueError("numba_ln: out and residual_out must not overlap")


@register_jitable
def _no_check(y, s):
    pass


@register_jitable
def _stats_rows(rows):
    return np.empty(rows), np.empty(rows)


@register_jitable
def _stats_none(rows):
    return np.empty(0), np.empty(0)


@register_jitable
def _eps_value(eps):
    e = float(eps)
    if not (e >= 0.0 and e < np.inf):
        raise ValueError("numba_ln: eps must be a finite number >= 0")
    return e


@register_jitable
def _keepdims(stat, shape, dt):
    return stat.astype(dt).reshape(shape[:-1] + (1,))


@register_jitable
def _rstd_keepdims(second, eps, shape, dt):
    # As _api._rstd: 1/sqrt in float64, then rounded once.
    return (1.0 / np.sqrt(second + eps)).astype(dt).reshape(shape[:-1] + (1,))


# --- the shared core --------------------------------------------------------------------------

def _make_core(fname, x, residual, weight, bias, eps, out, residual_out, *, centered,
               want_y, want_stats):
    """Check the argument types and return a jitted
    ``core(x, residual, weight, bias, eps, out, residual_out) -> (y, s, mean, second, eps)``
    (mean/second float64 per row, empty unless want_stats)."""
    dtype = _x_dtype(fname, x)
    if residual is not None:
        _pick_residual(fname, residual, x)
        dtype = result_dtype(np.result_type(dtype, _real_dtype(residual)))
    _check_eps(fname, eps)
    flat_x = _pick_input(x, dtype)
    prep_w = _pick_param(fname, "weight", weight, dtype)
    prep_b = _pick_param(fname, "bias", bias, dtype)
    make_y, finish_y, user_y = _pick_output(fname, "out", out, x, dtype)
    make_s, finish_s, user_s = _pick_output(fname, "residual_out", residual_out, x, dtype)
    if residual is None:
        rows_r, make_s, finish_s = _residual_none, _out_none, _finish_new
    elif _pick_input(residual, dtype) is _flat_view:
        rows_r = _residual_rows_view
    else:
        rows_r = _residual_rows
    if not want_y:
        make_y, finish_y = _out_none, _finish_new
    detach_y = _detach if user_y else _keep
    detach_s = _detach if user_s else _keep
    disjoint = _disjoint if user_y and user_s else _no_check
    make_stats = _stats_rows if want_stats else _stats_none
    dt = dtype.type  # np.float32 or np.float64: a constant in jitted code

    @register_jitable(**_JIT_OPTIONS)
    def core(x, residual, weight, bias, eps, out, residual_out):
        e = _eps_value(eps)
        shape = x.shape
        cols = shape[-1]
        if cols == 0:
            raise ValueError("numba_ln: the normalized axis (the last) has no elements")
        rows = x.size // cols
        xf = flat_x(x, dt)
        rf, r_stride = rows_r(residual, shape, cols, dt)
        y, yf = make_y(out, shape, dt)
        s, sf = make_s(residual_out, shape, dt)
        xf = detach_s(detach_y(xf, yf), sf)
        rf = detach_s(detach_y(rf, yf), sf)
        disjoint(yf, sf)
        stats = make_stats(rows)
        zero = np.int64(0)  # not a literal 0: the kernel's signature must match Python's
        at = (zero, cols)
        rows_serial(yf, at, sf, at, xf, at, rf, (zero, r_stride), rows, cols,
                    (prep_w(weight, cols, dt), prep_b(bias, cols, dt)), e,
                    np.bool_(centered), stats)
        return finish_y(out, y), finish_s(residual_out, s), stats[0], stats[1], e

    return core, dt


# --- the overloads ------------------------------------------------------------------------------
# Keyword-only parameters are written as ordinary ones: Numba's overload machinery cannot
# bind keyword-only arguments of an implementation.

@overload(_api.layer_norm, prefer_literal=True, jit_options=_JIT_OPTIONS)
def _layer_norm(x, weight=None, bias=None, axis=-1, eps=1e-5, out=None, return_stats=False):
    fname = "layer_norm"
    stats = _flag(fname, "return_stats", return_stats)
    _x_dtype(fname, x)
    _check_axis(fname, axis, x.ndim)
    core, dt = _make_core(fname, x, None, weight, bias, eps, out, None, centered=True,
                          want_y=True, want_stats=stats)
    if stats:
        def impl(x, weight=None, bias=None, axis=-1, eps=1e-5, out=None, return_stats=False):
            y, _, mean, var, e = core(x, None, weight, bias, eps, out, None)
            return y, _keepdims(mean, x.shape, dt), _rstd_keepdims(var, e, x.shape, dt)
    else:
        def impl(x, weight=None, bias=None, axis=-1, eps=1e-5, out=None, return_stats=False):
            return core(x, None, weight, bias, eps, out, None)[0]
    return impl


@overload(_api.rms_norm, prefer_literal=True, jit_options=_JIT_OPTIONS)
def _rms_norm(x, weight=None, axis=-1, eps=1e-6, out=None, return_stats=False):
    fname = "rms_norm"
    stats = _flag(fname, "return_stats", return_stats)
    _x_dtype(fname, x)
    _check_axis(fname, axis, x.ndim)
    core, dt = _make_core(fname, x, None, weight, None, eps, out, None, centered=False,
                          want_y=True, want_stats=stats)
    if stats:
        def impl(x, weight=None, axis=-1, eps=1e-6, out=None, return_stats=False):
            y, _, _, second, e = core(x, None, weight, None, eps, out, None)
            return y, _rstd_keepdims(second, e, x.shape, dt)
    else:
        def impl(x, weight=None, axis=-1, eps=1e-6, out=None, return_stats=False):
            return core(x, None, weight, None, eps, out, None)[0]
    return impl


@overload(_api.add_layer_norm, prefer_literal=True, jit_options=_JIT_OPTIONS)
def _add_layer_norm(x, residual, weight=None, bias=None, axis=-1, eps=1e-5, out=None,
                    residual_out=None, return_stats=False):
    fname = "add_layer_norm"
    stats = _flag(fname, "return_stats", return_stats)
    _x_dtype(fname, x)
    _check_axis(fname, axis, x.ndim)
    core, dt = _make_core(fname, x, residual, weight, bias, eps, out, residual_out,
                          centered=True, want_y=True, want_stats=stats)
    if stats:
        def impl(x, residual, weight=None, bias=None, axis=-1, eps=1e-5, out=None,
                 residual_out=None, return_stats=False):
            y, s, mean, var, e = core(x, residual, weight, bias, eps, out, residual_out)
            return y, s, _keepdims(mean, x.shape, dt), _rstd_keepdims(var, e, x.shape, dt)
    else:
        def impl(x, residual, weight=None, bias=None, axis=-1, eps=1e-5, out=None,
                 residual_out=None, return_stats=False):
            y, s, _, _, _ = core(x, residual, weight, bias, eps, out, residual_out)
            return y, s
    return impl


@overload(_api.add_rms_norm, prefer_literal=True, jit_options=_JIT_OPTIONS)
def _add_rms_norm(x, residual, weight=None, axis=-1, eps=1e-6, out=None, residual_out=None,
                  return_stats=False):
    fname = "add_rms_norm"
    stats = _flag(fname, "return_stats", return_stats)
    _x_dtype(fname, x)
    _check_axis(fname, axis, x.ndim)
    core, dt = _make_core(fname, x, residual, weight, None, eps, out, residual_out,
                          centered=False, want_y=True, want_stats=stats)
    if stats:
        def impl(x, residual, weight=None, axis=-1, eps=1e-6, out=None, residual_out=None,
                 return_stats=False):
            y, s, _, second, e = core(x, residual, weight, None, eps, out, residual_out)
            return y, s, _rstd_keepdims(second, e, x.shape, dt)
    else:
        def impl(x, residual, weight=None, axis=-1, eps=1e-6, out=None, residual_out=None,
                 return_stats=False):
            y, s, _, _, _ = core(x, residual, weight, None, eps, out, residual_out)
            return y, s
    return impl


@overload(_api.moments, prefer_literal=True, jit_options=_JIT_OPTIONS)
def _moments(x, axis=-1, keepdims=False):
    fname = "moments"
    keep = _flag(fname, "keepdims", keepdims)
    _x_dtype(fname, x)
    _check_axis(fname, axis, x.ndim)
    core, dt = _make_core(fname, x, None, None, None, 0.0, None, None, centered=True,
                          want_y=False, want_stats=True)
    if keep:
        def impl(x, axis=-1, keepdims=False):
            _, _, mean, var, _ = core(x, None, None, None, 0.0, None, None)
            return _keepdims(mean, x.shape, dt), _keepdims(var, x.shape, dt)
    else:
        def impl(x, axis=-1, keepdims=False):
            _, _, mean, var, _ = core(x, None, None, None, 0.0, None, None)
            shape = x.shape[:-1]
            return mean.astype(dt).reshape(shape), var.astype(dt).reshape(shape)
    return impl
