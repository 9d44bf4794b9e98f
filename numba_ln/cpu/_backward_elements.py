"""Element helpers of the backward row functions (_backward_rows.py): the optional arrays
(weight, grad_residual, the partial rows) as compile-time facts, and the tasks' partial
rows of dweight/dbias (clear, flush).

The ones used per element (``scaled``, ``minus_k1``, ``put_dx``, ``add_params``,
``moments_add``) and ``clear`` are intrinsics (below), and ``flush``'s loop is inlined by
Numba (see _backward_rows.py).
"""
import numpy as np
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from . import _alias
from ._elements import _absent, _in_place
from ._jit import kernel
from ._storage import (emit_float_op, emit_getitem, emit_load, emit_setitem, emit_store,
                       float_result, work_type)


# --- elements: optional arrays as compile-time facts -----------------------------------------
#
# Intrinsics, except flush (a loop): each writes the instructions Numba wrote for its
# expression into the kernel that calls it.  As compiled overloads, each was compiled on
# its own per argument types and kernel flags (~15-50 ms apiece, ~20 of them on a first
# backward call); Numba adds the calling kernel's fastmath flags to an intrinsic's
# instructions, as such an overload inherited them (numba.core.cpu: fastmath is
# inherited when not set).

def _fmul(context, builder, a, a_type, b, b_type):
    return emit_float_op(context, builder, "fmul", a, a_type, b, b_type)


def _times_w(context, builder, v, v_type, w, w_type, j, j_type):
    """(v * w[j], its type), or (v, v_type) without a weight."""
    if _absent(w_type):
        return v, v_type
    element = emit_getitem(context, builder, w_type, w, j_type, j)
    return _fmul(context, builder, v, v_type, element, w_type.dtype)


@intrinsic
def scaled(typingctx, v, w, j):
    """v * w[j], or v without a weight."""
    def codegen(context, builder, sig, args):
        return _times_w(context, builder, args[0], v, args[1], w, args[2], j)[0]
    return (v if _absent(w) else float_result(v, w.dtype))(v, w, j), codegen


@intrinsic
def minus_k1(typingctx, v, w, j, k1):
    """v * w[j] - k1 (one fused operation), or v - k1 without a weight."""
    def codegen(context, builder, sig, args):
        value, value_type = _times_w(context, builder, args[0], v, args[1], w, args[2], j)
        return emit_float_op(context, builder, "fsub", value, value_type, args[3], k1)[0]
    product = v if _absent(w) else float_result(v, w.dtype)
    return float_result(product, k1)(v, w, j, k1), codegen


@intrinsic
def moments_add(typingctx, a1, a2, d):
    """(a1 + d, a2 + d*d)."""
    result = types.Tuple((float_result(a1, d), float_result(a2, d)))

    def codegen(context, builder, sig, args):
        s1 = emit_float_op(context, builder, "fadd", args[0], a1, args[2], d)[0]
        square = _fmul(context, builder, args[2], d, args[2], d)[0]
        s2 = emit_float_op(context, builder, "fadd", args[1], a2, square, d)[0]
        return context.make_tuple(builder, result, (s1, s2))
    return result(a1, a2, d), codegen


def _plus(context, builder, v, v_type, gr, gr_type, j, j_type):
    """(v + gr[j], its type), or (v, v_type) without a grad_residual."""
    if _absent(gr_type):
        return v, v_type
    element = emit_load(context, builder, gr_type, gr, j_type, j, _alias.GET)
    return emit_float_op(context, builder, "fadd", v, v_type, element, work_type(gr_type))


@intrinsic
def put_dx(typingctx, dx, dy, gr, j, v):
    """dx[j] = v + gr[j] (gr None: v), in dy's dtype; over dy[j] when dx is IN_PLACE.  A
    dx of its own is stored in _alias's output scope, as the forward's y: it overlaps
    nothing the kernel reads (the fronts read an overlapped input from a copy), and
    without the scope LLVM vectorized the row sweep's sums only after a run-time overlap
    test, whose scalar loop sums in another order (dx's bits then depended on where it
    lay)."""
    target = 1 if _in_place(dx) else 0
    scoped = None if target else _alias.OUTPUT

    def codegen(context, builder, sig, args):
        value, value_type = _plus(context, builder, args[4], v, args[2], gr, args[3], j)
        value = context.cast(builder, value, value_type, work_type(dy))
        emit_store(context, builder, sig.args[target], args[target], j, args[3], value,
                   work_type(dy), scoped)
        return context.get_dummy_value()
    return types.none(dx, dy, gr, j, v), codegen


def _add_into(context, builder, p, p_type, j, j_type, value, value_type):
    """p[j] += value cast to p's work type (a partial row: float32 or float64)."""
    value = context.cast(builder, value, value_type, work_type(p_type))
    total, total_type = emit_float_op(context, builder, "fadd",
                                      emit_getitem(context, builder, p_type, p, j_type, j),
                                      p_type.dtype, value, work_type(p_type))
    emit_setitem(context, builder, p_type, p, j_type, j,
                 context.cast(builder, total, total_type, p_type.dtype))


@intrinsic
def add_params(typingctx, sw, sb, j, dyj, xh):
    """sw[j] += dyj * xh and sb[j] += dyj in the partial rows' type (the work type; they
    are flushed into float64 every few rows); nothing for a None partial."""
    def codegen(context, builder, sig, args):
        if not _absent(sw):
            product, product_type = _fmul(context, builder, args[3], dyj, args[4], xh)
            _add_into(context, builder, args[0], sw, args[2], j, product, product_type)
            if not _absent(sb):
                _add_into(context, builder, args[1], sb, args[2], j, args[3], dyj)
        return context.get_dummy_value()
    return types.none(sw, sb, j, dyj, xh), codegen


@intrinsic
def clear(typingctx, p, n):
    """p[:n] = 0 (a task's partial rows, a row pointer or an array); nothing for None."""
    def codegen(context, builder, sig, args):
        if not _absent(p):
            pointer = (args[0] if isinstance(p, types.CPointer)
                       else context.make_array(p)(context, builder, args[0]).data)
            itemsize = context.get_abi_sizeof(context.get_data_type(p.dtype))
            size = builder.mul(context.cast(builder, args[1], n, types.intp),
                               context.get_constant(types.intp, itemsize))
            cgutils.memset(builder, pointer, size, 0)  # (+0.0 is all zero bits)
        return context.get_dummy_value()
    return types.none(p, n), codegen


def flush(total, part, n):
    """total[:n] += part[:n] in float64, then part[:n] = 0; nothing for None."""


@overload(flush, inline="always")
def _flush(total, part, n):
    if _absent(total):
        return lambda total, part, n: None

    def add(total, part, n):
        for j in range(np.uint64(n)):
            total[j] += 1.0 * part[j]
            part[j] = 0.0
    return add


@kernel(_nrt=False)
def clear_rows(pw, pb, sw, sb, n):
    """Zero a task's partial rows (float64 and work type)."""
    clear(pw, n)
    clear(pb, n)
    clear(sw, n)
    clear(sb, n)


@kernel(_nrt=False)
def flush_rows(pw, sw, pb, sb, n):
    """Add a few rows' work-type partial sums (sw, sb) into the float64 ones (pw, pb)."""
    flush(pw, sw, n)
    flush(pb, sb, n)
