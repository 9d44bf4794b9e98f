"""Element-level building blocks of the CPU kernels: the exact subtraction, the work type,
and the helpers that make an optional array (residual, weight, bias, statistics, output)
a compile-time fact.

Absent arrays are passed as ``None``.  Each helper below is an intrinsic whose
instructions are chosen while Numba types the call, so a kernel compiled without a bias
contains no bias code and no run-time test for one (and code for a missing array is never
typed, which a plain ``if b is not None`` branch would not guarantee).

The **work type** is the precision a kernel computes in: float32 for float32 and 16-bit
data, float64 for float64 data (statistics are always accumulated into float64 totals).
Elements are read and written through _storage's load/store, which convert 16-bit data.
"""

from numba import types
from numba.extending import intrinsic

from . import _alias
from ._jit import kernel
from ._storage import (emit_float_op, emit_load, emit_setitem, emit_store, float_result,
                       storage, work_type)


@kernel(fastmath=False)
def exact_sub(a, b):
    """a - b, compiled without fastmath.  The summing loops compile with `reassoc`; this
    function is not inlined by Numba (which would give it the caller's flags) but by LLVM,
    which keeps its subtraction strict, so ``exact_sub(exact_sub(x, hi), lo)`` is never
    folded into ``x - (hi + lo)``.  (Nor is it an intrinsic, as `work` is: Numba's
    fastmath pass rewrites every float instruction of the calling kernel's module, an
    intrinsic's too; tried, the forward's bits changed.)"""
    return a - b


@kernel(fastmath=False)
def exact_mul(a, b):
    """a * b, compiled without fastmath (as exact_sub): inside the summing sweep, which
    compiles with `reassoc`, ``(d * scale) * w`` then keeps the order the plain normalize
    loop uses, so a row's output does not depend on whether a sweep wrote it."""
    return a * b


def _absent(t):
    return t is None or isinstance(t, (types.NoneType, types.Omitted))


# An output written over the input it is computed from -- ``out=x`` (y over the rows it
# normalizes) or ``residual_out=residual`` (s over r) -- is passed as IN_PLACE instead of
# its view.  The kernel then loads and stores through the same pointer, which LLVM can
# prove safe to vectorize; through two pointers to the same memory its run-time overlap
# check fails and the loop runs scalar (measured 2-5x slower, and with the sums in another
# order, so the results would differ in the last bits from a call that is not in place).
IN_PLACE = ()


def _in_place(t):
    return isinstance(t, types.BaseTuple) and len(t) == 0


@intrinsic
def store_result(typingctx, y, src, j, value):
    """y[j] = value, rounded once to y's storage, for an output y that overlaps nothing the
    kernel reads (_storage.store_out); over src[j] when y is IN_PLACE (store); nothing for
    None (statistics only: LLVM then drops the arithmetic that made value).  Picked while
    compiling, so the inline kernels that normalize an element need no compilation of
    their own per output form, as overloads did (~25 ms each on first use)."""
    def codegen(context, builder, sig, args):
        if not _absent(y):
            at = 1 if _in_place(y) else 0
            emit_store(context, builder, sig.args[at], args[at], sig.args[2], args[2],
                       args[3], sig.args[3], None if at else _alias.OUTPUT)
        return context.get_dummy_value()
    return types.none(y, src, j, value), codegen


# --- the work type ----------------------------------------------------------------------------

@intrinsic
def work(typingctx, x, value):
    """value converted to x's work type (x an array or a row pointer)."""
    if not isinstance(value, (types.Float, types.Integer, types.Boolean)):
        return None
    target = work_type(x)

    def codegen(context, builder, sig, args):
        return context.cast(builder, args[1], sig.args[1], target)
    return target(x, value), codegen


@intrinsic
def mul_add(typingctx, a, b, c):
    """a * b + c with one rounding (llvm.fma), for floats of one type: the fused
    multiply-add that `contract` lets LLVM form from ``c + a * b`` where it chooses, here
    fixed, so a chain of them adds in the written order."""
    if not (isinstance(a, types.Float) and a == b == c):
        return None

    def codegen(context, builder, sig, args):
        return builder.fma(*args)
    return a(a, b, c), codegen


def _constant(flag):
    """The codegen of an intrinsic whose value is a compile-time constant."""
    def codegen(context, builder, sig, args):
        return context.get_constant(types.boolean, flag)
    return codegen


@intrinsic
def smaller(typingctx, a, b):
    """min(a, b) of two integers, typed and computed as Numba's min (their unified type;
    b only when b < a), with no compilation of its own: Numba's ``min`` is an overload,
    compiled once per pair of argument types and kernel (~15-25 ms each on first use)."""
    if not (isinstance(a, types.Integer) and isinstance(b, types.Integer)):
        return None
    result = types.unliteral(typingctx.unify_types(a, b))
    if not isinstance(result, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        x, y = (context.cast(builder, v, t, result) for v, t in zip(args, sig.args))
        compare = builder.icmp_signed if result.signed else builder.icmp_unsigned
        return builder.select(compare("<", y, x), y, x)
    return result(a, b), codegen


@intrinsic
def is_narrow(typingctx, x):
    """True when x's work type is float32 (its partial sums may underflow or overflow)."""
    return types.boolean(x), _constant(work_type(x) == types.float32)


@intrinsic
def is_bfloat16(typingctx, x):
    """True when x (an array or a row pointer) holds bfloat16 bits (_storage.storage)."""
    return types.boolean(x), _constant(storage(x) == "bfloat16")


# --- optional arrays ----------------------------------------------------------------------------

@intrinsic
def affine(typingctx, t, w, b, j):
    """t * w[j] + b[j], without the parts whose array is None (w and b of any float
    storage, read as they are: a float64 one makes the sum float64).  An intrinsic: the
    instructions Numba writes for the expression, with no compilation of their own."""
    terms = [(name, k, p) for name, k, p in (("fmul", 1, w), ("fadd", 2, b)) if not _absent(p)]
    result = t
    for _, _, p in terms:
        result = float_result(result, work_type(p))

    def codegen(context, builder, sig, args):
        value, value_type = args[0], sig.args[0]
        for name, k, p in terms:
            element = emit_load(context, builder, sig.args[k], args[k], sig.args[3], args[3],
                                _alias.GET_INPUT)
            value, value_type = emit_float_op(context, builder, name, value, value_type,
                                              element, work_type(p))
        return value
    return result(t, w, b, j), codegen


@intrinsic
def store_stats(typingctx, stats, i, mean, second):
    """stats[0][i] = mean and stats[1][i] = second, or nothing when stats is None.  A
    ``None`` in place of ``stats[0]`` skips the mean (RMSNorm has none)."""
    kept = [] if _absent(stats) else [k for k in (0, 1) if not _absent(stats[k])]

    def codegen(context, builder, sig, args):
        for k, value, value_type in ((0, args[2], sig.args[2]), (1, args[3], sig.args[3])):
            if k in kept:
                array_type = sig.args[0][k]
                emit_setitem(context, builder, array_type, builder.extract_value(args[0], k),
                             sig.args[1], args[1],
                             context.cast(builder, value, value_type, array_type.dtype))
        return context.get_dummy_value()
    return types.none(stats, i, mean, second), codegen


@intrinsic
def is_in_place(typingctx, a):
    """Whether a is IN_PLACE (a compile-time constant)."""
    return types.boolean(a), _constant(_in_place(a))
