"""The small-call gates: the commonest calls of every public function go straight to the
kernels that check their own arguments (cpu/small.py, cpu/small_backward.py).

A (1, 768) token normalizes in ~0.3 us, so each Python-level test here costs a visible
share of the call (~30 ns each).  A gate settles only what the kernels cannot -- that x is
a small C-contiguous ndarray of a dtype they take, what each output is, how eps and the
parameters reach them -- and returns None for anything else, or when the kernel returns
status 1 (it wrote nothing): the call then takes the general path, which raises the
proper error or handles the unusual form.  Every call these gates take runs the kernel
the general path would run with the same argument types, so the bits are the same.

Taken: the last axis (an int: -1 or x.ndim - 1), x float32/float64/float16/bfloat16
(16-bit data as their bits, _dtypes.kernel_dtype) of any rank but 0 (C-contiguous, or
2-D rows a whole number of elements apart with fresh outputs), eps a float or a
NumPy scalar, weight/bias None or 1-D ndarrays, read-only or memory-mapped ones too (of
the other float dtype for float32/float64 data: cast to x's dtype in compiled code, as
the general path casts them; for 16-bit data float32 ones as they are, float64 ones
rounded and 16-bit ones, as their bits, widened to float32 in compiled code),
out/residual_out None or
ndarrays of the result dtype, statistics or not, at most SERIAL_MAX_ELEMENTS elements
(half of that for the fused forms, twice the work an element, and a third for the
backward, three times: _config.FUSED_COST, BACKWARD_COST); every small-call kernel runs
in the calling thread.
"""
from . import _config
from ._small_values import (_EPS_TYPES, _F32, _F64, _HALF_BITS, _NDARRAY, _empty, _half_bits,
                            _kernel_param, _other_eps, _output)
from .cpu._elements import IN_PLACE
from .cpu.small import (small_add_layer_norm, small_add_layer_norm_stats, small_add_rms_norm,
                        small_add_rms_norm_stats, small_layer_norm, small_layer_norm_stats,
                        small_rms_norm, small_rms_norm_stats)

# The calls the gates take: at most _threading.runs_serial's bound, inlined (a call costs
# ~0.1 us of a ~1 us call).  The fused forms do twice a plain call's work an element
# (_config.FUSED_COST; the backward three times): their gates take calls up to half (a
# third) of it, and the kernels run them in the calling thread.  Above the bounds the
# general path launches threads from Python, never compiled code: Numba caches a kernel
# that calls a parallel kernel with a reference to that kernel's loop function which
# only a process that loaded the parallel kernel itself can resolve, and a later process
# that loads the caller first crashes (numba#8578; reproduced here: a fused call of 4096
# rows, then one of 100 rows in a second process and again in a third).
_SMALL = _config.SERIAL_MAX_ELEMENTS
_LAST_AXIS = -1
MAX_DIMS = 64  # NumPy's most dimensions (2.x): a keepdims statistics view of such an x has 65


def not_last_axis(x, axis):
    """Whether axis is anything but an int naming x's last axis (-1, or x.ndim - 1 of an
    ndarray): the gates hand those calls to _small_axes.py."""
    return type(axis) is not int or (
        axis != -1 and not (type(x) is _NDARRAY and axis == x.ndim - 1))


def small_call(x, weight, bias, eps, centered, out, return_stats=False, axis=-1,
               residual=None, residual_out=None):
    """y (or (y, s) with a residual), followed by (mean, rstd) or (rstd,) with return_stats,
    for the commonest forward calls, or None to take the general path.  Runs before
    anything else, even the GPU check, with the public function's arguments as given:
    axis -1 or x.ndim - 1 (another int or a tuple: _small_axes.py; anything else, a NumPy
    integer included, the general path), return_stats a bool.  (The callers
    pass every argument by position, and the gate's tests, the parameter checks and
    _output are inlined where the commonest calls meet them: a keyword or a function call
    is ~50 ns of a ~1.2 us call.)"""
    # (the int -1 is one object in CPython: one identity test for the commonest calls;
    # not_last_axis inlined, for axis=1 on rows: a call is ~40 ns of its ~1.3 us)
    if axis is not _LAST_AXIS and (type(axis) is not int or (
            axis != -1 and not (type(x) is _NDARRAY and axis == x.ndim - 1))):
        return _small_axes.small_axes_call(x, weight, bias, eps, centered, out, return_stats,
                                           axis, residual, residual_out)
    if return_stats is not False and return_stats is not True:
        return None  # (truthy objects: the general path)
    if type(x) is not _NDARRAY or not 0 < x.size <= _SMALL:
        return None
    if not x.flags.c_contiguous and (x.ndim != 2 or out is not None or residual is not None):
        return None  # (strided rows with fresh outputs: the kernels check their strides)
    if type(eps) is not float:
        if type(eps) in _EPS_TYPES:  # (inlined: a call is ~50 ns of a ~1.2 us call)
            eps = float(eps)
        else:
            eps = _other_eps(eps, centered, x.dtype)
            if eps is None:
                return None
    # weight/bias: float32/float64 ndarrays as they are, for data of any dtype (the kernels
    # cast one not of the work dtype, in compiled code: cpu/small_params.work_param);
    # anything else through _kernel_param (a call is ~0.1 us)
    if weight is not None and (type(weight) is not _NDARRAY
                               or (weight.dtype is not _F32 and weight.dtype is not _F64)):
        weight = _kernel_param(weight, x)
        if weight is False:
            return None
    if bias is not None and (type(bias) is not _NDARRAY
                             or (bias.dtype is not _F32 and bias.dtype is not _F64)):
        bias = _kernel_param(bias, x)
        if bias is False:
            return None
    dtype = x.dtype
    if dtype is _F32 or dtype is _F64:
        bits, stats_dtype = None, dtype
        # the commonest calls, in few Python steps: rows, a vector and a batch of sequences
        # (B, T, C) as they are (a decoder that holds one token as a 1-D array makes every
        # call so, and two reshapes cost ~0.8 us of ~2; a batch with 1-D parameters, which
        # the kernels read along its last axis)
        ndim = x.ndim
        if not return_stats and (ndim == 2 or ndim == 1 or (
                ndim > 2 and (weight is None or weight.ndim == 1)
                and (bias is None or bias.ndim == 1))):
            if residual is None:
                if out is None:
                    y = yk = _empty(x.shape, dtype)
                else:
                    y = _output(out, x.shape, dtype)
                    if y is None:
                        return None
                    yk = IN_PLACE if y is x else y
                if (small_layer_norm(yk, x, weight, bias, eps) if centered
                        else small_rms_norm(yk, x, weight, eps)):
                    return None
                return y
            if (out is None and residual_out is None and type(residual) is _NDARRAY
                    and residual.dtype is dtype
                    and x.size * _config.FUSED_COST <= _config.SERIAL_MAX_ELEMENTS):
                # a residual stream's fused step, both outputs fresh: (1, 768) 1.83 -> 1.69
                # us a call against the general gate below
                y, s = _empty(x.shape, dtype), _empty(x.shape, dtype)
                if (small_add_layer_norm(y, s, x, residual, weight, bias, eps) if centered
                        else small_add_rms_norm(y, s, x, residual, weight, eps)):
                    return None
                return y, s
    else:
        bits, stats_dtype = _HALF_BITS.get(dtype), _F32  # (_half_bits inlined)
        if bits is None:
            bits = _half_bits(dtype)  # (bfloat16's first call, or not 16-bit)
            if bits is None:
                return None
    if residual is not None and x.size * _config.FUSED_COST > _config.SERIAL_MAX_ELEMENTS:
        return None  # (read here, not frozen as _SMALL: the tests lower the bound)
    if out is None:
        y = _empty(x.shape, dtype)
    elif type(out) is _NDARRAY and out.dtype is dtype:  # (_output inlined)
        y = out
    else:
        return None
    # x as it is -- a batch of sequences (B, T, C), and a vector (a decoder's token) but
    # for its statistics: the kernels read rows along its last axis, a variant a rank,
    # and check the outputs' and the residual's shapes and layouts (views of x, y, the
    # residual and s as rows cost ~0.2 us each, ~1 us of a ~3 us (1, 1, 768) fused call);
    # 1-D parameters only (the kernels take no others, and the general path names the
    # error).  A vector's statistics as a (1, cols) row: the 2-D kernel variant, where
    # each rank compiles its own (~0.6 s a form on first use, and tens of variants in the
    # suite).  (The views of the bits inlined: a call is ~50 ns.)
    ndim = x.ndim
    vector_stats = ndim == 1 and return_stats  # (read as a (1, cols) row)
    if ndim == 2 or (ndim and (weight is None or weight.ndim == 1)
                     and (bias is None or bias.ndim == 1)):
        yk, xk = (y, x) if not vector_stats else (y.reshape(1, -1), x.reshape(1, -1))
        if bits is not None:
            yk, xk = yk.view(bits), xk.view(bits)
    else:
        return None
    if residual is None:
        if y is x:
            yk = IN_PLACE
        if not return_stats:
            if (small_layer_norm(yk, xk, weight, bias, eps) if centered
                    else small_rms_norm(yk, xk, weight, eps)):
                return None
            return y
        # (mean, rstd) or (rstd,): keepdims, in the statistics dtype, one allocation
        if ndim == MAX_DIMS:  # (the general path's statistics take no such view)
            return None
        rows = xk.shape[0] if ndim == 2 else x.size // x.shape[-1]
        stats = _empty((2 if centered else 1, rows, 1), stats_dtype)
        if (small_layer_norm_stats(yk, xk, weight, bias, eps, stats) if centered
                else small_rms_norm_stats(yk, xk, weight, eps, stats)):
            return None
        if ndim != 2:
            stats.shape = stats.shape[:1] + x.shape[:-1] + (1,)
        return (y, stats[0], stats[1]) if centered else (y, stats[0])
    if type(residual) is not _NDARRAY or residual.dtype is not dtype:
        return None
    s = _output(residual_out, x.shape, dtype)
    if s is None:
        return None
    sk, rk = ((s, residual) if not vector_stats
              else (s.reshape(1, -1), residual.reshape(1, -1)))
    if bits is not None:
        sk, rk = sk.view(bits), rk.view(bits)
    if s is residual:
        sk = IN_PLACE
    if not return_stats:
        if (small_add_layer_norm(yk, sk, xk, rk, weight, bias, eps) if centered
                else small_add_rms_norm(yk, sk, xk, rk, weight, eps)):
            return None
        return y, s
    if ndim == MAX_DIMS:
        return None
    rows = x.size // x.shape[-1]  # (x.size > 0)
    stats = _empty((2 if centered else 1, rows, 1), stats_dtype)  # (as above)
    if (small_add_layer_norm_stats(yk, sk, xk, rk, weight, bias, eps, stats) if centered
            else small_add_rms_norm_stats(yk, sk, xk, rk, weight, eps, stats)):
        return None
    if ndim != 2:
        stats.shape = stats.shape[:1] + x.shape[:-1] + (1,)
    return (y, s, stats[0], stats[1]) if centered else (y, s, stats[0])


# (imported last: _small_axes calls back into this module's gates for the views it makes)
from . import _small_axes  # noqa: E402
