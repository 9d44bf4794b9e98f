"""numba_ln inside ``@njit`` code: ``numba.extending.overload`` of the public functions.

Importing this module (``import numba_ln`` does) registers compiled implementations of
``layer_norm``, ``rms_norm``, ``add_layer_norm``, ``add_rms_norm`` and ``moments``, so the
same function objects work in a user's ``@njit`` (and ``@njit(parallel=True)``) code with
the same names, argument order and keywords.  Registering is cheap; nothing compiles until
a user function that calls them does.

One implementation: the compiled path calls the same row kernel, all rows as one block
(``cpu.rows.rows_block``), with the same argument types as the Python path, so the results
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
- ``eps``: an int or float (or None for the RMSNorm functions: the Python rule);
  ``out=``/``residual_out=``: writeable arrays of x's shape and the result dtype (any
  layout; ``out=x`` works in place).
- ``return_stats``/``keepdims``: constants True or False (the result's type depends on
  them).  The keyword-only arguments may also be passed by position in compiled code.
"""
import functools

from numba.extending import overload

from .. import _api
from .._variants import ADD_LAYER_NORM, ADD_RMS_NORM, LAYER_NORM, MOMENTS, RMS_NORM
from .checks import _check_axis, _flag, _x_dtype
from .core import _JIT_OPTIONS, _make_core

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
    core = _make_core(LAYER_NORM, x, None, weight, bias, eps, out, None, return_stats=stats)
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
    core = _make_core(RMS_NORM, x, None, weight, None, eps, out, None, return_stats=stats)
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
    core = _make_core(ADD_LAYER_NORM, x, residual, weight, bias, eps, out, residual_out,
                      return_stats=stats)
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
    core = _make_core(ADD_RMS_NORM, x, residual, weight, None, eps, out, residual_out,
                      return_stats=stats)
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
    core = _make_core(MOMENTS, x, None, None, None, 0.0, None, None, return_stats=True,
                      keepdims=keep)

    def impl(x, axis=-1, keepdims=False):
        _, _, mean, var = core(x, None, None, None, 0.0, None, None)
        return mean, var
    return impl


from . import backward  # noqa: F401,E402  (layer_norm_backward, rms_norm_backward; uses _memoized)
