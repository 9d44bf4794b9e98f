"""The CPU backend: a call on NumPy arrays, validated by the spec (_spec.py), planned
(_layout.py) and run on the kernels of numba_ln/cpu/.

``run`` is the backend's entry point (the registry in _backends.py sends ndarrays and
anything else NumPy can read here).  A call of a kind planned before (_kinds.py) checks
only its values: the commonest kinds in the lean lane (_lean.py), the others in
``_with_values``; one whose arrays lie where the kernels read them --
outputs given laid out as x and apart from the inputs, or fresh ones -- then runs
*direct* (``_run_direct``: views from the planned steps), any other takes
``normalize``'s general steps.  This module owns
what is NumPy-specific: reading arguments as arrays, dtype conversion, copying inputs an
output overlaps, the IN_PLACE marker for outputs over their own input, kernel selection
(serial / parallel rows / split rows / channels, by _threading.runs_serial) and the
statistics' keepdims shapes.
"""
import numba
import numpy as np

from . import _config, _dtypes, _kinds, _lean, _rstd, _spec, _stand_ins, _threading
from ._validate import as_array, converted, output_array, prepare_param
from ._variants import STATS_MEAN_VAR, STATS_RSTD
from .cpu import channels as _channels
from .cpu import narrow as _narrow
from .cpu import rows as _rows
from .cpu._stream import LINE, streams
from .cpu.rows import FIRST_ROW, rows_block
from .cpu._elements import IN_PLACE
from .cpu._indirect import run_blocks


class _NumpyArrays:
    """The spec's array adapter for NumPy arrays (see _spec.py)."""

    name = "numpy"
    input = staticmethod(as_array)
    output = staticmethod(output_array)
    param = staticmethod(prepare_param)
    overlap = staticmethod(_spec.numpy_overlap)

    @staticmethod
    def readonly(a):
        return not a.flags.writeable


NUMPY = _NumpyArrays()


def run(variant, x, residual, weight, bias, axis, eps, out, residual_out, return_stats,
        keepdims=True):
    """One public call on the CPU: validate, normalize, and return what the public
    function returns (see _variants.Variant.results)."""
    want_stats = return_stats or not variant.want_y
    kind = _kinds.forward_kind(variant, x, residual, weight, bias, axis, out, residual_out,
                               want_stats)
    if kind is not None and kind.lean:
        got = (_lean.run(kind, x, weight, bias, eps, out, residual, residual_out)
               if variant.want_y else _lean.moments(kind, x, keepdims))
        if got is not None:
            return got
    if kind is None:
        call = _spec.build(variant, NUMPY, x, residual, weight, bias, axis, eps, out,
                           residual_out, want_stats)
        plan, direct = _kinds.plan_for(call.x, call.axes), None
    else:
        call = _with_values(kind.typed, x, residual, weight, bias, eps, out, residual_out)
        plan, direct = kind.plan, kind.direct
    if direct is not None and (out is not None or residual_out is not None) and (
            _inputs_to_copy(_inputs(x, residual, call), out, residual_out)):
        direct = None  # (an output over an input it does not replace: normalize copies it)
    if direct is not None:
        y, s, mean, second = _run_direct(call, plan, direct, kind.residual_steps)
    else:
        y, s, mean, second = normalize(call, plan)
    # The caller's own out=/residual_out= objects are returned (a memmap stays a memmap).
    y = y if out is None else out
    s = s if residual_out is None else residual_out
    if not want_stats:
        return variant.results(y, s, None, None, False)
    dtype = _dtypes.stats_dtype(call.dtype)
    # rounded once from float64 (rstd in place: second is ours), silently (_rstd.narrowing)
    if variant.stats == STATS_MEAN_VAR:
        with _rstd.narrowing((mean, second), dtype):
            mean, second = mean.astype(dtype, copy=False), second.astype(dtype, copy=False)
        if not keepdims:  # (every axis reduced: NumPy scalars, as x.mean() and the small
            mean, second = mean.reshape(plan.reduced_shape), second.reshape(plan.reduced_shape)
            if mean.ndim == 0:                                          # calls give them)
                return mean[()], second[()]
        return mean, second
    rstd = _rstd.of_second(second, call.eps, out=second)
    with _rstd.narrowing((rstd, mean), dtype):
        rstd = rstd.astype(dtype, copy=False)
        if variant.stats == STATS_RSTD:
            return variant.results(y, s, rstd, None, True)
        return variant.results(y, s, mean.astype(dtype, copy=False), rstd, True)


def _with_values(typed, x, residual, weight, bias, eps, out, residual_out):
    """The Call of a cached kind (_kinds) for this call's arrays: the checks of _spec.build
    that depend on more than dtypes and shapes, in its order."""
    eps = _spec.check_eps(eps, work=None if typed.variant.centered else typed.work)
    if out is not None:
        _spec.check_writable(NUMPY, out, "out")
    if residual_out is not None:
        _spec.check_writable(NUMPY, residual_out, "residual_out")
        _spec.check_outputs_apart(NUMPY, out, residual_out)
    norm_shape = typed.norm_shape
    work = typed.weight if typed.weight is not None else typed.bias
    with _rstd.narrowing((weight, bias), work):  # (as the small calls round them)
        if weight is not None:
            weight = prepare_param(weight, "weight", norm_shape, typed.weight)
        if bias is not None:
            bias = prepare_param(bias, "bias", norm_shape, typed.bias)
    return _spec.Call(typed.variant, x, residual, weight, bias, out, residual_out, typed.axes,
                      norm_shape, eps, typed.dtype, typed.work, typed.want_stats)


def _run_direct(call, plan, direct, residual_steps):
    """normalize() for a kind planned direct (_kinds.Kind): x (and a residual laid out as
    x, or one row broadcast over x's rows: residual_steps) read where they lie, outputs
    given laid out as x written where they lie (apart from the inputs, or exactly over the
    one they replace: the caller checked), fresh ones otherwise, weight/bias as prepared.
    The same kernel and views as normalize() would pass, derived without it."""
    dtype = call.dtype
    bits = _dtypes.kernel_dtype(dtype) if _dtypes.is_half(dtype) else None
    x_view = (_buffer(call.x, bits), *direct)
    r_view = s = s_view = None
    if call.residual is not None:
        r_view = (_buffer(call.residual, bits), *residual_steps)
        s, s_view = _direct_output(plan, call.residual_out, call.residual, dtype, bits, direct)
    y = y_view = None
    if call.variant.want_y:  # (out=x is IN_PLACE without a residual, as normalize has it)
        over = call.x if call.residual is None else None
        y, y_view = _direct_output(plan, call.out, over, dtype, bits, direct)
    stats = (np.empty(plan.rows), np.empty(plan.rows)) if call.want_stats else None
    _pick_kernel(plan, dtype, y_view, s_view, x_view, r_view, call.weight, call.bias, call.eps,
                 call.variant.centered, stats)
    if stats is None:
        return y, s, None, None
    return y, s, plan.stats_to_keepdims(stats[0]), plan.stats_to_keepdims(stats[1])


def _direct_output(plan, out, over, dtype, bits, direct):
    """(output, kernel view) of a direct call: a fresh one, IN_PLACE when out is exactly
    the input ``over`` (same first element, same strides: out has x's layout) of a rows
    plan, else out written through x's steps (as normalize's views: _engine, IN_PLACE)."""
    if out is None:
        return plan.fresh(dtype, bits)
    if over is not None and plan.kind == "rows" and same_view(out, over):
        return out, IN_PLACE  # (the channels kernels read and write through one view)
    return out, (_buffer(out, bits), *direct)


def _buffer(a, bits):
    """A C-contiguous array's elements as the kernels read them (16-bit floats as bits)."""
    flat = a.reshape(-1)
    return flat if bits is None else flat.view(bits)


def normalize(call, plan=None):
    """Run a validated call (plan: x's, when known).  Returns (y, s, mean, second): y None
    without an output, s None without a residual, mean/second float64 keepdims arrays (or
    None)."""
    dtype, axes = call.dtype, call.axes
    x, residual, out, residual_out = call.x, call.residual, call.out, call.residual_out
    if x.dtype != dtype:
        x = converted(x, dtype)
    if residual is not None:
        if residual.dtype != dtype:
            residual = converted(residual, dtype)
        if residual.shape != x.shape:
            # Read through a broadcast view: a residual broadcast along rows is walked with
            # row stride 0 in place; one broadcast along the normalized (contiguous) axis
            # has no unit-stride row view, and Plan.kernel_input materializes it.
            residual = np.broadcast_to(residual, x.shape)
    inputs = _inputs(x, residual, call)
    copy = _inputs_to_copy(inputs, out, residual_out)
    x, residual, weight, bias = (a.copy() if name in copy else a for name, a in inputs.items())

    if plan is None or x is not call.x:  # (a converted or copied x: its own layout)
        plan = _kinds.plan_for(x, axes)
    want_y, want_stats = call.variant.want_y, call.want_stats
    if plan.rows == 0:
        y = (out if out is not None else np.empty(x.shape, dtype)) if want_y else None
        s = None
        if residual is not None:
            s = residual_out if residual_out is not None else np.empty(x.shape, dtype)
        empty_stats = np.empty(plan.stats_shape()) if want_stats else None
        return y, s, empty_stats, empty_stats

    # Every output is allocated before anything is written: a MemoryError leaves the
    # caller's arrays as they were (an in-place residual stream is not added to twice).
    y, y_view = _output_view(plan, out, dtype) if want_y else (None, None)
    stats = (np.empty(plan.rows), np.empty(plan.rows)) if want_stats else _stand_ins.stats(
        plan.rows)  # (the scratch rows too: fresh beyond 65536 rows or after a release)
    s = s_view = r_view = None
    if residual is not None and plan.kind == "channels":
        # The fused add kernel reads rows; for other layouts form s in one NumPy pass.
        s, s_view = _output_view(plan, residual_out, dtype)
        np.add(x, residual, out=s)
        x, residual = s, None
    elif residual is not None:
        s, s_view = _output_view(plan, residual_out, dtype, read_back=True)
        r_view = plan.kernel_input(residual)
    x_view = plan.kernel_input(x)
    if plan.kind == "rows":  # outputs over their own input go as IN_PLACE (cpu/_elements)
        # (a fresh output is never its input: the address test only for a given one)
        if r_view is None and out is not None and _same_kernel_view(y_view, x_view):
            y_view = IN_PLACE
        if (r_view is not None and residual_out is not None
                and _same_kernel_view(s_view, r_view)):
            s_view = IN_PLACE

    _run_kernel(plan, dtype, y_view, s_view if r_view is not None else None, x_view, r_view,
                plan.param(weight), plan.param(bias), call.eps, call.variant.centered, stats)

    if out is not None and y is not out:
        np.copyto(out, y)
        y = out
    if residual_out is not None and s is not residual_out:
        np.copyto(residual_out, s)
        s = residual_out
    if not want_stats:
        return y, s, None, None
    return y, s, plan.stats_to_keepdims(stats[0]), plan.stats_to_keepdims(stats[1])


def _inputs(x, residual, call):
    """The arrays the kernels read, by name (weight and bias as the call prepared them)."""
    return {"x": x, "residual": residual, "weight": call.weight, "bias": call.bias}


def _inputs_to_copy(inputs, out, residual_out):
    """The names of the inputs the kernels must read from a copy: _spec's overlap rule,
    with the forward's in-place forms."""
    return _spec.inputs_to_copy(inputs, {"out": out, "residual_out": residual_out},
                                _spec.FORWARD_IN_PLACE, np.may_share_memory, same_view)


def run_rows(y, s, x, r, w, b, stats, rows, cols, eps, centered):
    """Run the rows kernel that suits the shape: serial below the work threshold (no
    thread start-up), split rows for a few rows of several pieces, else rows in parallel
    in tasks of about TASK_ELEMENTS.  Every choice depends on the shape alone, never on
    the thread count, so neither do the results (one thread runs the same kernel, with the
    same tasks, one after the other).  y/s/x/r are row views (buf, start, stride) or None."""
    arrays, norm = (y, s, x, r), (w, b, eps, centered)
    per_task = _threading.row_launch(rows, cols, 1 if r is None else _config.FUSED_COST)
    if per_task is None:
        return rows_block(arrays, norm, stats, cols, FIRST_ROW, rows, False)
    if per_task is _threading.SPLIT:
        return _threading.launch(_rows.rows_split, arrays, norm, stats, rows, cols)
    # (narrow rows in blocks: rows_parallel's bits but bfloat16's (README), faster; the
    # fused forms only while their arrays are small, _config.NARROW_FUSED_MAX_BYTES)
    row_bytes = cols * x[0].itemsize
    narrow = row_bytes <= _config.NARROW_ROW_BYTES and (
        r is None or rows * row_bytes <= _config.NARROW_FUSED_MAX_BYTES)
    if narrow:
        return run_blocks(_narrow.narrow_parallel, _narrow.narrow_block,
                          lambda: (arrays, norm, stats, cols, FIRST_ROW, FIRST_ROW),
                          arrays, norm, stats, rows, cols, per_task)
    stream = _streams(y, s, r, rows, cols)
    return run_blocks(_rows.rows_parallel, _rows.rows_block,
                      lambda: (arrays, norm, stats, cols, FIRST_ROW, FIRST_ROW, stream),
                      arrays, norm, stats, rows, cols, per_task, stream)


def _streams(y, s, r, rows, cols):
    """Whether rows_parallel streams y and s (cpu/_stream.py): the call moves x and y,
    and r and s when fused."""
    arrays = 2 if r is None else 4
    return (streams(y, rows * cols, cols, arrays)
            or streams(s, rows * cols, cols, arrays))


def _run_kernel(plan, dtype, y, s, x, r, w, b, eps, centered, stats):
    """Pick the kernel for the plan's shape and run it.  y/s/x/r are views or None."""
    if _dtypes.is_half(dtype):
        y, s, x, r = (kernel_view(v) for v in (y, s, x, r))
    return _pick_kernel(plan, dtype, y, s, x, r, w, b, eps, centered, stats)


def _pick_kernel(plan, dtype, y, s, x, r, w, b, eps, centered, stats):
    """_run_kernel once the views read 16-bit data as bits.  Statistics nobody asked for
    go to scratch rows (_stand_ins: one kernel variant fewer)."""
    if stats is None:
        stats = _stand_ins.stats(plan.rows)
    if plan.kind == "rows":
        return run_rows(y, s, x, r, w, b, stats, plan.rows, plan.cols, eps, centered)
    tile = _config.TILE_BYTES // (plan.cols * dtype.itemsize)
    tile = max(_config.TILE_MIN_BYTES // dtype.itemsize, min(_config.TILE_MAX_POSITIONS, tile))
    lanes = LINE // dtype.itemsize  # (whole cache lines: the tiles start on y's lines)
    tile = min(max(lanes, tile - tile % lanes), plan.inner)
    args = (y, x, (w, b, eps, centered), stats, plan.outer, plan.cols, plan.inner, tile)
    # (one thread: the serial kernel, as the per-position sums give the same bits)
    if _threading.runs_serial(plan.rows * plan.cols) or numba.get_num_threads() == 1:
        return _channels.channels_serial(*args)
    stream = streams(y, plan.rows * plan.cols, tile, 2)
    return run_blocks(_channels.channels_parallel, _channels.tile_task,
                      lambda: _channels.tile_task_args(y, x, args[2], stats, plan.cols,
                                                       plan.inner, tile, stream),
                      *args, stream)


def kernel_view(view):
    """A view (buf, start, *steps) with buf as the kernels read it: 16-bit floats as their
    bits (_dtypes.kernel_dtype, cpu/_storage.py); None and IN_PLACE as they are."""
    if view is None or view is IN_PLACE:
        return view
    return (view[0].view(_dtypes.kernel_dtype(view[0].dtype)),) + tuple(view[1:])


def _output_view(plan, out, dtype, read_back=False):
    """(array written by the kernel, its view); a fresh array when out's layout is unfit.
    read_back: the fused forms' s, which the row sweep reads back as it stores the next
    row: its rows must follow one another forwards (a negative row step, reversed rows,
    put the stored row before the one read, and LLVM's run-time overlap test chose the
    scalar loop for rows under its vector reach: y's last bits changed, _alias)."""
    if out is not None:
        got = plan.kernel_output(out)
        if got is not None and not (read_back and plan.kind == "rows" and len(got) > 2
                                    and got[2] < 0):
            return out, got
    fresh = plan.empty(dtype)
    return fresh, plan.kernel_output(fresh)


def same_view(a, b):
    """Whether a and b are the same elements (same first address, shape and strides; arrays
    with no elements never are: a residual broadcast over x's rows is never its output,
    which starts where it does).  (Arrays apart are told by their bounds first: reading an
    address through __array_interface__ costs ~0.85 us an array, may_share_memory 0.2.)"""
    if a.strides != b.strides or a.shape != b.shape or not np.may_share_memory(a, b):
        return False
    return a.__array_interface__["data"][0] == b.__array_interface__["data"][0]


def _same_kernel_view(a, b):
    """Whether two kernel views (buf, start, *steps) address the same elements."""
    if a is None or b is None:
        return False
    item = a[0].itemsize
    return (a[0].__array_interface__["data"][0] + a[1] * item
            == b[0].__array_interface__["data"][0] + b[1] * item and a[2:] == b[2:])
