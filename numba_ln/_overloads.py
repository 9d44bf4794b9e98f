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
import functools

import numpy as np
from numba import types
from numba.core.errors import TypingError
from numba.extending import overload, register_jitable
from numba.np.numpy_support import as_dtype

from . import _api
from ._validate import SUPPORTED_DTYPES, result_dtype
from .cpu._elements import IN_PLACE
from .cpu.rows import rows_serial

# Numba compiles an overload (and any dispatcher it calls that has no specialization yet)
# with the calling function's fastmath and error_model unless they are set explicitly, and
# that compilation then serves every later caller, Python ones too.  Pinning the kernels'
# flags (cpu/_jit.py) here keeps a user's @njit(fastmath=True) from changing numba_ln's
# rounding or NaN handling, in these implementations (the rstd of return_stats) and in
# anything they compile.
_JIT_OPTIONS = {"fastmath": False, "error_model": "numpy"}


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
    try:
        return result_dtype(as_dtype(x.dtype), name)
    except Exception:  # NumPy's TypeError, or Numba's for dtypes NumPy has no name for
        _fail(fname, f"{name} has dtype {x.dtype}, which numba_ln does not support; "
                     f"supported: {SUPPORTED_DTYPES}")


def _is_view(t, dtype):
    """True when array type t goes to the kernel as it is: flattened, not copied."""
    return t.layout == "C" and t.mutable and as_dtype(t.dtype) == dtype


def _param_kind(fname, name, t, dtype):
    if _absent(t):
        return "absent"
    if isinstance(t, (types.Number, types.Boolean)) and not isinstance(t, types.Complex):
        return "scalar"
    if isinstance(t, types.Array) and t.ndim >= 1 and _real_dtype(t) is not None:
        return "view" if t.ndim == 1 and _is_view(t, dtype) else "copy"
    _fail(fname, f"{name} must be None, a real number or a real (float, int or bool) array "
                 f"broadcastable to (x.shape[-1],), got {t}")


def _check_residual(fname, t, x):
    if not isinstance(t, types.Array) or not 1 <= t.ndim <= x.ndim or _real_dtype(t) is None:
        _fail(fname, f"residual must be a real (float, int or bool) array of at most x's "
                     f"{x.ndim} dimensions, broadcastable to x's shape, got {t}")


def _output_kind(fname, name, t, x, dtype):
    """"new" (allocated here), "view" (written in place) or "temp" (written, then copied)."""
    if _absent(t):
        return "new"
    if (not isinstance(t, types.Array) or t.ndim != x.ndim or as_dtype(t.dtype) != dtype
            or not t.mutable):
        _fail(fname, f"{name} must be a writeable {dtype} array with x's {x.ndim} "
                     f"dimension(s) (the result dtype and shape), got {t}")
    return "view" if t.layout == "C" else "temp"


# --- compiled helpers, used only for the less common argument types --------------------------
# Every jitted function costs a compilation of its own (~0.2 s, and the kernel's code is
# generated again in each), so the common path is one function, ``core`` below.

# Copies loop over ``.flat`` rather than assigning ``out[...] = a``: Numba compiles that
# assignment with formatted shape-mismatch errors, ~1 s more per calling function.

@register_jitable
def _flat_copy(a, dt):
    """a's elements in C order, as a new contiguous 1-D array of dtype dt (any layout)."""
    out = np.empty(a.size, dt)
    k = 0
    for v in a.flat:
        out[k] = v
        k += 1
    return out


@register_jitable
def _copy_into(out, flat):
    """out's elements, in C order, from the contiguous 1-D array flat (out of any layout)."""
    for k in range(flat.size):
        out.flat[k] = flat[k]


@register_jitable
def _param_copy(p, cols, dt):
    for k in range(p.ndim - 1):
        if p.shape[k] != 1:
            raise ValueError("numba_ln: weight/bias does not broadcast to the normalized "
                             "shape (x.shape[-1],)")
    if p.shape[-1] != cols and p.shape[-1] != 1:
        raise ValueError("numba_ln: weight/bias does not broadcast to the normalized shape "
                         "(x.shape[-1],)")
    flat = _flat_copy(p, dt)
    if flat.size == cols:
        return flat
    return np.full(cols, flat[0], dt)


@register_jitable
def _overlaps(a, b):
    """Whether flat contiguous arrays a and b share memory."""
    if a.size == 0 or b.size == 0:
        return False
    a_lo, b_lo = a.ctypes.data, b.ctypes.data
    return a_lo < b_lo + b.size * b.itemsize and b_lo < a_lo + a.size * a.itemsize


@register_jitable
def _detach(a, o):
    """a, or a copy of it when output o overlaps it other than element for element (as
    _engine._detach_inputs does)."""
    if _overlaps(a, o) and not (a.ctypes.data == o.ctypes.data and a.size == o.size):
        return a.copy()
    return a


# --- the shared core --------------------------------------------------------------------------

def _make_core(fname, x, residual, weight, bias, eps, out, residual_out, *, centered,
               want_y, stats):
    """Check the argument types and return a jitted
    ``core(x, residual, weight, bias, eps, out, residual_out) -> (y, s, a, b)``.

    stats: None (a, b unused), "layer" (mean, rstd), "rms" (rstd, rstd), "moments" or
    "moments_keepdims" (mean, var); in the result dtype, with keepdims shape but for
    "moments".  Branches on the closure constants below are pruned by Numba before typing,
    so each call's types compile only the code they use.
    """
    dtype = _x_dtype(fname, x)
    has_r = residual is not None
    if has_r:
        _check_residual(fname, residual, x)
        dtype = result_dtype(np.result_type(dtype, _real_dtype(residual)))
    _check_eps(fname, eps)
    x_view = _is_view(x, dtype)
    r_view = has_r and _is_view(residual, dtype)
    w_kind = _param_kind(fname, "weight", weight, dtype)
    b_kind = _param_kind(fname, "bias", bias, dtype)
    w_absent, w_scalar, w_view = (w_kind == k for k in ("absent", "scalar", "view"))
    b_absent, b_scalar, b_view = (b_kind == k for k in ("absent", "scalar", "view"))
    y_kind = _output_kind(fname, "out", out, x, dtype) if want_y else None
    s_kind = _output_kind(fname, "residual_out", residual_out, x, dtype) if has_r else None
    y_new, y_view, y_temp = (y_kind == k for k in ("new", "view", "temp"))
    s_new, s_view, s_temp = (s_kind == k for k in ("new", "view", "temp"))
    y_user, s_user = y_view or y_temp, s_view or s_temp
    want_stats = stats is not None
    stats_layer, stats_rms = stats == "layer", stats == "rms"
    stats_moments, keepdims = stats in ("moments", "moments_keepdims"), stats != "moments"
    dt = dtype.type  # np.float32 or np.float64: a constant in jitted code
    may_y_in_place = not has_r and y_view and x_view
    may_s_in_place = has_r and s_view and r_view

    @register_jitable(**_JIT_OPTIONS)
    def core(x, residual, weight, bias, eps, out, residual_out):
        e = float(eps)
        if not (e >= 0.0 and e < np.inf):
            raise ValueError("numba_ln: eps must be a finite number >= 0")
        shape = x.shape
        cols = shape[-1]
        if cols == 0:
            raise ValueError("numba_ln: the normalized axis (the last) has no elements")
        rows = x.size // cols
        zero = np.int64(0)  # not a literal 0: the kernel's signature must be the Python path's

        if x_view:
            xf = x.reshape(-1)
        else:
            xf = _flat_copy(x, dt)
        empty = xf[:0]  # absent arrays are empty views: an allocation costs ~30 ns

        if not has_r:
            rf, r_stride = empty, zero
        else:
            lead = x.ndim - residual.ndim
            for k in range(residual.ndim):
                n = residual.shape[k]
                if n != 1 and n != shape[lead + k]:
                    raise ValueError("numba_ln: residual does not broadcast to x's shape")
            if residual.size == x.size or residual.size == cols:
                # x's shape, or one row read again for every row (row stride 0)
                r_stride = cols if residual.size == x.size else zero
                if r_view:
                    rf = residual.reshape(-1)
                else:
                    rf = _flat_copy(residual, dt)
            else:
                rf, r_stride = _flat_copy(np.broadcast_to(residual, shape), dt), cols

        if w_absent:
            wf = empty
        elif w_scalar:
            wf = np.full(cols, weight, dt)
        elif w_view:
            if weight.shape[0] != cols:
                raise ValueError("numba_ln: weight/bias does not broadcast to the normalized "
                                 "shape (x.shape[-1],)")
            wf = weight
        else:
            wf = _param_copy(weight, cols, dt)
        if b_absent:
            bf = empty
        elif b_scalar:
            bf = np.full(cols, bias, dt)
        elif b_view:
            if bias.shape[0] != cols:
                raise ValueError("numba_ln: weight/bias does not broadcast to the normalized "
                                 "shape (x.shape[-1],)")
            bf = bias
        else:
            bf = _param_copy(bias, cols, dt)

        if y_view or y_temp:
            if out.shape != shape:
                raise ValueError("numba_ln: out/residual_out must have x's shape")
        if y_view:
            y = out
            yf = out.reshape(-1)
        elif y_new or y_temp:
            y = np.empty(shape, dt)
            yf = y.reshape(-1)
        else:
            y = yf = empty
        if s_view or s_temp:
            if residual_out.shape != shape:
                raise ValueError("numba_ln: out/residual_out must have x's shape")
        if s_view:
            s = residual_out
            sf = residual_out.reshape(-1)
        elif s_new or s_temp:
            s = np.empty(shape, dt)
            sf = s.reshape(-1)
        else:
            s = sf = empty

        if y_user:
            xf = _detach(xf, yf)
            rf = _detach(rf, yf)
        if s_user:
            xf = _detach(xf, sf)
            rf = _detach(rf, sf)
        if y_user and s_user:
            if _overlaps(yf, sf):
                raise ValueError("numba_ln: out and residual_out must not overlap")

        if want_stats:
            first, second = np.empty(rows), np.empty(rows)
        else:
            first = second = np.empty(0)
        # Absent arrays are None for the kernel (a compile-time fact, as from Python).
        if has_r:
            s_v, r_v = (sf, zero, cols), (rf, zero, r_stride)
        else:
            s_v = r_v = None
        if want_y:
            y_v = (yf, zero, cols)
        else:
            y_v = None
        if w_absent:
            w_v = None
        else:
            w_v = wf
        if b_absent:
            b_v = None
        else:
            b_v = bf
        if want_stats:
            st = (first, second)
        else:
            st = None
        x_v = (xf, zero, cols)
        c = np.bool_(centered)
        # An output over its own input goes as IN_PLACE, as from Python (cpu/_elements):
        # the same kernel variant, hence the same bits.  Only where the types allow it.
        done = False
        if may_y_in_place:
            if yf.ctypes.data == xf.ctypes.data:
                rows_serial(IN_PLACE, s_v, x_v, r_v, w_v, b_v, st, rows, cols, e, c)
                done = True
        if may_s_in_place:
            if sf.ctypes.data == rf.ctypes.data:
                rows_serial(y_v, IN_PLACE, x_v, r_v, w_v, b_v, st, rows, cols, e, c)
                done = True
        if not done:
            rows_serial(y_v, s_v, x_v, r_v, w_v, b_v, st, rows, cols, e, c)

        if y_temp:
            _copy_into(out, yf)
            y_res = out
        else:
            y_res = y
        if s_temp:
            _copy_into(residual_out, sf)
            s_res = residual_out
        else:
            s_res = s
        keep = shape[:-1] + (1,)
        if stats_layer or stats_rms:
            # As _api: 1/sqrt in float64, then rounded once to the result dtype.
            rstd = (1.0 / np.sqrt(second + e)).astype(dt).reshape(keep)
            if stats_layer:
                a = first.astype(dt).reshape(keep)
            else:
                a = rstd
            return y_res, s_res, a, rstd
        if stats_moments:
            if keepdims:
                return y_res, s_res, first.astype(dt).reshape(keep), second.astype(dt).reshape(keep)
            return (y_res, s_res, first.astype(dt).reshape(shape[:-1]),
                    second.astype(dt).reshape(shape[:-1]))
        return y_res, s_res, first, second

    return core


# --- the overloads ------------------------------------------------------------------------------
# Keyword-only parameters are written as ordinary ones: Numba's overload machinery cannot
# bind keyword-only arguments of an implementation.

def _memoized(typing_func):
    """One implementation per argument types.  Numba types a call again in some contexts
    (a prange body is typed once more for its parallel function), and a new implementation
    function would be compiled again (~1 s)."""
    impls = {}

    @functools.wraps(typing_func)
    def typer(*args, **kws):
        key = (args, tuple(sorted(kws.items())))
        try:
            return impls[key]
        except KeyError:
            pass
        except TypeError:  # an unhashable argument: no memo
            return typing_func(*args, **kws)
        impl = impls[key] = typing_func(*args, **kws)
        return impl

    return typer


@overload(_api.layer_norm, prefer_literal=True, jit_options=_JIT_OPTIONS)
@_memoized
def _layer_norm(x, weight=None, bias=None, axis=-1, eps=1e-5, out=None, return_stats=False):
    fname = "layer_norm"
    stats = _flag(fname, "return_stats", return_stats)
    _x_dtype(fname, x)
    _check_axis(fname, axis, x.ndim)
    core = _make_core(fname, x, None, weight, bias, eps, out, None, centered=True,
                      want_y=True, stats="layer" if stats else None)
    if stats:
        def impl(x, weight=None, bias=None, axis=-1, eps=1e-5, out=None, return_stats=False):
            y, _, mean, rstd = core(x, None, weight, bias, eps, out, None)
            return y, mean, rstd
    else:
        def impl(x, weight=None, bias=None, axis=-1, eps=1e-5, out=None, return_stats=False):
            return core(x, None, weight, bias, eps, out, None)[0]
    return impl


@overload(_api.rms_norm, prefer_literal=True, jit_options=_JIT_OPTIONS)
@_memoized
def _rms_norm(x, weight=None, axis=-1, eps=1e-6, out=None, return_stats=False):
    fname = "rms_norm"
    stats = _flag(fname, "return_stats", return_stats)
    _x_dtype(fname, x)
    _check_axis(fname, axis, x.ndim)
    core = _make_core(fname, x, None, weight, None, eps, out, None, centered=False,
                      want_y=True, stats="rms" if stats else None)
    if stats:
        def impl(x, weight=None, axis=-1, eps=1e-6, out=None, return_stats=False):
            y, _, _, rstd = core(x, None, weight, None, eps, out, None)
            return y, rstd
    else:
        def impl(x, weight=None, axis=-1, eps=1e-6, out=None, return_stats=False):
            return core(x, None, weight, None, eps, out, None)[0]
    return impl


@overload(_api.add_layer_norm, prefer_literal=True, jit_options=_JIT_OPTIONS)
@_memoized
def _add_layer_norm(x, residual, weight=None, bias=None, axis=-1, eps=1e-5, out=None,
                    residual_out=None, return_stats=False):
    fname = "add_layer_norm"
    stats = _flag(fname, "return_stats", return_stats)
    _x_dtype(fname, x)
    _check_axis(fname, axis, x.ndim)
    core = _make_core(fname, x, residual, weight, bias, eps, out, residual_out,
                      centered=True, want_y=True, stats="layer" if stats else None)
    if stats:
        def impl(x, residual, weight=None, bias=None, axis=-1, eps=1e-5, out=None,
                 residual_out=None, return_stats=False):
            return core(x, residual, weight, bias, eps, out, residual_out)
    else:
        def impl(x, residual, weight=None, bias=None, axis=-1, eps=1e-5, out=None,
                 residual_out=None, return_stats=False):
            y, s, _, _ = core(x, residual, weight, bias, eps, out, residual_out)
            return y, s
    return impl


@overload(_api.add_rms_norm, prefer_literal=True, jit_options=_JIT_OPTIONS)
@_memoized
def _add_rms_norm(x, residual, weight=None, axis=-1, eps=1e-6, out=None, residual_out=None,
                  return_stats=False):
    fname = "add_rms_norm"
    stats = _flag(fname, "return_stats", return_stats)
    _x_dtype(fname, x)
    _check_axis(fname, axis, x.ndim)
    core = _make_core(fname, x, residual, weight, None, eps, out, residual_out,
                      centered=False, want_y=True, stats="rms" if stats else None)
    if stats:
        def impl(x, residual, weight=None, axis=-1, eps=1e-6, out=None, residual_out=None,
                 return_stats=False):
            y, s, _, rstd = core(x, residual, weight, None, eps, out, residual_out)
            return y, s, rstd
    else:
        def impl(x, residual, weight=None, axis=-1, eps=1e-6, out=None, residual_out=None,
                 return_stats=False):
            y, s, _, _ = core(x, residual, weight, None, eps, out, residual_out)
            return y, s
    return impl


@overload(_api.moments, prefer_literal=True, jit_options=_JIT_OPTIONS)
@_memoized
def _moments(x, axis=-1, keepdims=False):
    fname = "moments"
    keep = _flag(fname, "keepdims", keepdims)
    _x_dtype(fname, x)
    _check_axis(fname, axis, x.ndim)
    core = _make_core(fname, x, None, None, None, 0.0, None, None, centered=True,
                      want_y=False, stats="moments_keepdims" if keep else "moments")

    def impl(x, axis=-1, keepdims=False):
        _, _, mean, var = core(x, None, None, None, 0.0, None, None)
        return mean, var
    return impl
