"""The gate of the backward functions (_small_front.py has the forward's small-call gate,
_small_values.py the helpers they share): the commonest backward calls, of any size, go
straight to cpu/small_backward.py's checks and kernels, which run what the general path
runs, so the same bits.  Up to the serial bound the small kernels run the call in this
thread; above it small_backward_fits checks it and ``_in_threads`` launches the general
path's parallel kernel from Python.

Calls above the forward gates' bound (131072 elements) took the general path until
2026-12-08, whose Python -- the kind table, the spec's checks, the overlap rule, the
plan's views -- cost 5-13 us a call more than this gate at (192..512, 1024) on the Zen 4
(in one process, interleaved: 0.78-0.96 of the time), for the same kernels and bits."""

from . import _buffers, _config
from ._small_front import _LAST_AXIS, _SMALL, not_last_axis
from ._small_values import (_EPS_TYPES, _F32, _F64, _HALF_BITS, _NDARRAY, _empty, _half_bits,
                            _number_row, _other_eps, _same_dtype)
from .cpu._elements import IN_PLACE
from .cpu.backward import run_backward
from .cpu.small_backward import (small_backward_any, small_backward_fits,
                                 small_layer_norm_backward, small_layer_norm_backward_rows,
                                 small_layer_norm_backward_stats, small_rms_norm_backward,
                                 small_rms_norm_backward_rows, small_rms_norm_backward_stats)


def small_backward_call(centered, dy, x, weight, mean, rstd, eps, out, grad_residual,
                        param_grads, axis, rows=None):
    """(dx, dweight, dbias) -- dbias None for RMSNorm, both None without param_grads (a
    bool) -- for the commonest backward calls (the last axis, -1 or x.ndim - 1, of a
    C-contiguous x of any size, dy and grad_residual (or None) of x's dtype, statistics
    None or of the work dtype), or None for the general path.  16-bit data go as their
    bits, with a float32 weight (16-bit ones widened, as the general path widens them),
    and give float32 dweight/dbias.  rows: None, or (cols, normalized) from
    _small_axes_backward, whose x holds rows of cols elements along its last axes,
    normalized together, with a weight of the normalized shape: x, dy, dx and the weight
    then go as they are to the rows kernels, dweight/dbias made in the normalized shape
    (only without statistics or grad_residual, with param_grads, within the serial bound:
    the caller checks)."""
    # (the tests inlined, as small_call's, and float32 weights of 16-bit data tested before
    # _half_bits: a function call is ~60 ns of a ~2.7 us call)
    if axis is not _LAST_AXIS and not_last_axis(x, axis):
        return _small_axes_backward.small_axes_backward_call(
            centered, dy, x, weight, mean, rstd, eps, out, grad_residual, param_grads, axis)
    if type(x) is not _NDARRAY or not x.size or not x.flags.c_contiguous:
        return None
    if type(eps) is not float:
        if type(eps) in _EPS_TYPES:
            eps = float(eps)
        else:
            eps = _other_eps(eps, centered, x.dtype)
            if eps is None:
                return None
    # _threading.runs_serial(x.size, BACKWARD_COST), inlined as _SMALL is: above it
    # small_backward_fits checks the call and _in_threads launches the parallel kernel
    # from Python, never compiled code (a cached caller of a parallel kernel can crash a
    # later process: _small_front's _SMALL comment says how; reproduced with backward
    # calls of 4096 and 64 rows too).
    serial_max = _config.SERIAL_MAX_ELEMENTS // _config.BACKWARD_COST
    dtype = x.dtype
    if dtype is _F32 or dtype is _F64:
        bits = None
        work = dtype
    else:
        bits = _HALF_BITS.get(dtype)
        if bits is None:
            bits = _half_bits(dtype)  # (bfloat16's first call, or not 16-bit)
            if bits is None:
                return None
        work = _F32
        if (type(weight) is _NDARRAY and weight.dtype is not _F32
                and _half_bits(weight.dtype) is not None):
            weight = weight.astype(_F32)
    if type(dy) is not _NDARRAY or dy.dtype is not dtype:
        return None
    gr = grad_residual
    if gr is not None and (type(gr) is not _NDARRAY or gr.dtype is not dtype):
        return None
    if rstd is not None and (_not_of(rstd, work) or (mean is not None and _not_of(mean, work))):
        return None
    if mean is not None and rstd is None:
        return None  # (the general path names the error)
    if weight is not None and (type(weight) is not _NDARRAY or weight.dtype is not work):
        # (a rows call's weight of the normalized shape as a row: _same_dtype takes rows;
        # a memmap stays one, and _same_dtype unmaps it)
        weight = (_same_dtype(weight if rows is None else weight.reshape(-1), work)
                  if isinstance(weight, _NDARRAY) else _number_row(weight, x, work))
        if weight is False:
            return None
    if out is None:  # (large ones pooled, as the general path's: _buffers)
        dx = _empty(x.shape, dtype) if x.size <= _SMALL else _buffers.empty(x.shape, dtype)
    elif type(out) is _NDARRAY and out.dtype is dtype and out.flags.c_contiguous:
        dx = out
    else:
        return None  # (a strided out would only compile a kernel variant that declines it)
    dx_k = IN_PLACE if dx is dy else dx
    # (a batch of sequences, (B, T, C), the statistics recomputed or given as return_stats
    # gave them: the kernels read x, dy, dx, grad_residual and the statistics as they are,
    # rows along x's last axis of any rank, a variant a rank, where views of them as rows
    # cost ~2 us of a ~6 us call; a strided dy, which they decline, then takes the general
    # path.  Other ranks as 2-D views: one kernel variant for every rank.)
    if x.ndim != 2 and rows is None and not (
            x.ndim > 2 and (weight is None or weight.ndim == 1)
            and (gr is None or gr.flags.c_contiguous)
            and (rstd is None or (rstd.flags.c_contiguous
                                  and (mean is None or mean.flags.c_contiguous)))):
        arrays = _as_rows(x, dy, dx_k, mean, rstd, gr, out is None)
        if arrays is None:
            return None
        x, dy, dx_k, mean, rstd, gr = arrays
    if bits is not None:
        x, dy = x.view(bits), dy.view(bits)
        dx_k = dx_k if dx_k is IN_PLACE else dx_k.view(bits)
        if gr is not None:
            gr = gr.view(bits)
    tasking = (_config.TASK_ELEMENTS, serial_max)
    # (the parameter gradients allocated here: boxing arrays the kernel allocated costs
    # more; one kernel a form: a None or bool argument costs the dispatcher ~65 ns)
    if rows is None:
        cols = grads_shape = x.shape[-1]
    else:
        cols, grads_shape = rows
    if param_grads:
        dweight = _empty(grads_shape, work)
        dbias = _empty(grads_shape, work) if centered else None
    else:
        dweight = dbias = None
    if x.size > serial_max:
        if small_backward_fits(dx_k, dy, x, gr, weight, mean, rstd, dweight, dbias, eps,
                               centered):
            return None
        return _in_threads(centered, dx, dx_k, dy, x, gr, weight, mean, rstd, eps, dweight,
                           dbias)
    if gr is not None or not param_grads:
        if small_backward_any(dx_k, dy, x, gr, weight, mean, rstd, dweight, dbias, eps,
                              centered, tasking):
            return None
        return dx, dweight, dbias
    if rows is not None:
        declined = (small_layer_norm_backward_rows(dx_k, dy, x, weight, dweight, dbias, eps,
                                                   tasking, cols)
                    if centered else
                    small_rms_norm_backward_rows(dx_k, dy, x, weight, dweight, eps, tasking,
                                                 cols))
    elif centered:
        declined = (small_layer_norm_backward(dx_k, dy, x, weight, dweight, dbias, eps,
                                              tasking)
                    if rstd is None else
                    small_layer_norm_backward_stats(dx_k, dy, x, weight, mean, rstd, dweight,
                                                    dbias, eps, tasking))
    else:
        declined = (small_rms_norm_backward(dx_k, dy, x, weight, dweight, eps, tasking)
                    if rstd is None else
                    small_rms_norm_backward_stats(dx_k, dy, x, weight, rstd, dweight, eps,
                                                  tasking))
    if declined:
        return None
    return dx, dweight, dbias


def _in_threads(centered, dx, dx_k, dy, x, gr, weight, mean, rstd, eps, dweight, dbias):
    """(dx, dweight, dbias) of a call small_backward_fits passed, which runs in threads:
    the general path's run_backward on the kernels' row views, without the general
    path's planning (~13 us of a threaded (64, 1024) call's ~35, when that size ran in
    threads).  The same kernels and arguments as the general path's, so the same bits."""
    cols = x.shape[-1]
    rows = x.size // cols
    if weight is not None and not weight.flags.writeable:
        weight = weight.copy()  # (as the general path: read-only is a kernel type of its own)
    stats = None
    if rstd is not None:
        stats = (None if mean is None else mean.reshape(-1), rstd.reshape(-1))
    dx_view = dx_k if dx_k is IN_PLACE else (dx_k.reshape(-1), 0, cols)
    gr_view = None if gr is None else (gr.reshape(-1), 0, cols)
    run_backward(dx_view, (dy.reshape(-1), 0, cols), (x.reshape(-1), 0, cols), weight, stats,
                 gr_view, rows, cols, eps, centered,
                 None if dweight is None else (dweight, dbias))
    return dx, dweight, dbias


def _not_of(a, dtype):
    return type(a) is not _NDARRAY or a.dtype is not dtype


def _as_rows(x, dy, dx, mean, rstd, gr, fresh):
    """x, dy, dx (an array or IN_PLACE; fresh: allocated by the gate, of x's shape), gr (or
    None) as (rows, cols) views and the statistics as (rows, 1) views, when their shapes
    agree with x's and the views need no copy; None otherwise (the general path then says
    what is wrong: a 0-d x too).  (No generator or any(): ~0.4 us of a ~4 us call.)"""
    shape = x.shape
    if not shape:
        return None
    cols = shape[-1]
    if dy.shape != shape or not dy.flags.c_contiguous:
        return None
    if gr is not None and (gr.shape != shape or not gr.flags.c_contiguous):
        return None
    if not fresh and dx is not IN_PLACE and (dx.shape != shape or not dx.flags.c_contiguous):
        return None
    if rstd is not None:  # (mean is None when rstd is: the gate checked)
        keep = shape[:-1] + (1,)
        if rstd.shape != keep or not rstd.flags.c_contiguous or (
                mean is not None and (mean.shape != keep or not mean.flags.c_contiguous)):
            return None
        rstd = rstd.reshape(-1, 1)
        if mean is not None:
            mean = mean.reshape(-1, 1)
    return (x.reshape(-1, cols), dy.reshape(-1, cols),
            dx if dx is IN_PLACE else dx.reshape(-1, cols), mean, rstd,
            None if gr is None else gr.reshape(-1, cols))


# (imported last: _small_axes_backward calls back into this module's gate for the views it
# makes)
from . import _small_axes_backward  # noqa: E402
