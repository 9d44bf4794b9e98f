"""Loads and stores of array elements: the only place where a kernel's storage dtype and
its work type differ.

Numba's CPU backend has no 16-bit float type, so 16-bit arrays reach the kernels as
16-bit integer views of the same bytes (the front's ``_dtypes.kernel_dtype``), and the
integer type says which format the bits are:

``uint16``  bfloat16 bits.  Load: the bits shifted into the high half of a float32 (exact).
            Store: float32 rounded to nearest even, NaN kept NaN: AVX-512 BF16's
            vcvtneps2bf16 where the CPU has it, else integer operations (same bits).
``int16``   float16 bits.  Load and store: LLVM's ``fpext``/``fptrunc`` of ``half`` (exact,
            and correctly rounded: overflow gives inf, subnormals are kept).

The work type of both is float32 (_elements.work).  For float32 and float64 arrays every
helper here is the plain element access, so their machine code is what it was without
them.  All conversions are a few vector instructions (AVX-512 BF16/F16C or plain integer
lanes): they vectorize with the loops around them.

Every helper takes ``a``: an array or a typed row pointer (_pointers), whose ``dtype``
picks the implementation while Numba types the call.

The element helpers are intrinsics (see "element access" below): no compilation of
their own, their instructions written into the calling kernel.  (As ``inline="always"``
overloads, Numba's IR inlining ran its untyped passes again at every call site: ~1 s of
a cold first ``layer_norm``; as plain overloads each was a compilation per array type.)
"""
import operator

import numpy as np
from llvmlite import ir
from numba import types
from numba.core.typing import signature
from numba.extending import intrinsic, overload

from . import _alias

_I16, _I32, _F32 = ir.IntType(16), ir.IntType(32), ir.FloatType()


def storage(t):
    """'bfloat16', 'float16' or None (a float array, read as it is) for an array type."""
    dtype = getattr(t, "dtype", None)
    if dtype == types.uint16:
        return "bfloat16"
    if dtype == types.int16:
        return "float16"
    return None


def work_type(t):
    """The type a kernel computes t's elements in (t an array or a row pointer type):
    float64 for float64 data, float32 for float32 and 16-bit storage."""
    return types.float64 if t.dtype == types.float64 else types.float32


def work_dtype(dtype):
    """work_type for the NumPy dtype of an array as a kernel reads it (16-bit data as
    their bits), from Python: float64 for float64, else float32."""
    return np.dtype(np.float64 if dtype == np.float64 else np.float32)


class _BFloat(ir.types.Type):
    """LLVM's ``bfloat`` (llvmlite's IR builder has no such type)."""
    null = "0.0"

    def _to_string(self):
        return "bfloat"

    def __eq__(self, other):
        return isinstance(other, _BFloat)

    def __hash__(self):
        return hash(_BFloat)


def _targets_bf16(context):
    """Whether the machine code being compiled may use AVX-512 BF16 (the features Numba
    compiles for: the host's, or NUMBA_CPU_FEATURES).  Numba keys cached code by those
    features, so a cache built with it never runs on a CPU without them."""
    features = context.codegen().magic_tuple()[2]
    return "+avx512bf16" in features.split(",")


def _round_bf16_integer(builder, v):
    """Round to nearest even: add 0x7fff plus the lowest kept bit, keep the high half.
    A NaN keeps its sign and high payload and gets the quiet bit (so it stays NaN)."""
    bits = builder.bitcast(v, _I32)
    high = builder.lshr(bits, ir.Constant(_I32, 16))
    odd = builder.and_(high, ir.Constant(_I32, 1))
    up = builder.add(builder.add(bits, ir.Constant(_I32, 0x7FFF)), odd)
    rounded = builder.lshr(up, ir.Constant(_I32, 16))
    quiet = builder.or_(high, ir.Constant(_I32, 0x40))
    is_nan = builder.fcmp_unordered("uno", v, v)
    return builder.trunc(builder.select(is_nan, quiet, rounded), _I16)


def _round_bf16_instruction(builder, v):
    """The same rounding with AVX-512 BF16's vcvtneps2bf16 (LLVM's fptrunc to bfloat),
    which rounds and quiets NaNs as above but flushes float32 subnormals to zero.  Those
    are lifted first: setting the lowest exponent bit adds 2**-126, whose binade has
    bfloat16's subnormal spacing (2**-133), so the instruction rounds the lifted value as
    the subnormal should be, 0x80 above it.  Five vector instructions per 16 floats
    (vptestnmd, masked vpord, vcvtneps2bf16, masked vpaddw, the store) against the
    integer rounding's eight; the same bits for all 2**32 inputs (tests/test_storage.py)."""
    bits = builder.bitcast(v, _I32)
    exponent = builder.and_(bits, ir.Constant(_I32, 0x7F800000))
    tiny = builder.icmp_unsigned("==", exponent, ir.Constant(_I32, 0))  # zero or subnormal
    lifted = builder.or_(bits, ir.Constant(_I32, 0x00800000))
    source = builder.bitcast(builder.select(tiny, lifted, bits), _F32)
    rounded = builder.bitcast(builder.fptrunc(source, _BFloat()), _I16)
    return builder.select(tiny, builder.sub(rounded, ir.Constant(_I16, 0x80)), rounded)


def _round_bf16(context, builder, v):
    """float32 to bfloat16 bits, rounded to nearest even, NaN kept NaN: with the CPU's
    conversion instruction where the compile target has one, else integer operations."""
    if _targets_bf16(context):
        return _round_bf16_instruction(builder, v)
    return _round_bf16_integer(builder, v)


@intrinsic
def f32_to_bf16(typingctx, value):
    """_round_bf16 as a function of its own (for tests)."""
    def codegen(context, builder, signature, args):
        return _round_bf16(context, builder, args[0])
    return types.uint16(types.float32), codegen


@intrinsic
def f32_to_bf16_integer(typingctx, value):
    """f32_to_bf16 with integer operations on every CPU (the portable path, for tests)."""
    def codegen(context, builder, signature, args):
        return _round_bf16_integer(builder, args[0])
    return types.uint16(types.float32), codegen


# --- element access (through row pointers with the alias scopes of _alias.py) ----------------
#
# Intrinsics: each emits its few instructions straight into the calling kernel.  As
# compiled helpers (overloads, inlined by LLVM) they gave the same instructions but cost a
# compilation each per array type: 24 of the 80 a cold first ``layer_norm`` made.  Loads
# and stores carry no arithmetic that fastmath flags could change: the bits are the
# helpers' bits.

def _pointer(t):
    return isinstance(t, types.CPointer)


def _get(context, builder, a_type, a, j_type, j, scopes):
    """a[j] as stored: through the pointer with the alias scopes, or Numba's indexing."""
    if _pointer(a_type):
        return _alias.emit_load(builder, a, j, scopes)
    return emit_getitem(context, builder, a_type, a, j_type, j)


def emit_getitem(context, builder, a_type, a, j_type, j):
    """Numba's own a[j] of an array or a row pointer (no alias scopes), in an intrinsic."""
    getitem = context.get_function(operator.getitem, signature(a_type.dtype, a_type, j_type))
    return getitem(builder, (a, j))


def emit_setitem(context, builder, a_type, a, j_type, j, value):
    """Numba's own a[j] = value for an array or a row pointer a (value of a's dtype), in
    an intrinsic."""
    setitem = context.get_function(operator.setitem,
                                   signature(types.none, a_type, j_type, a_type.dtype))
    setitem(builder, (a, j, value))


def _put(context, builder, a_type, a, j_type, j, bits, scoped):
    """a[j] = bits (of a's dtype): a plain store, or with the alias scopes scoped =
    (scope, excluded) through a pointer."""
    if not _pointer(a_type):
        emit_setitem(context, builder, a_type, a, j_type, j, bits)
    elif scoped is None:
        builder.store(bits, builder.gep(a, [j]))
    else:
        _alias.emit_store(builder, a, j, bits, *scoped)


def _widen(builder, kind, bits):
    """Stored bits -> the work type (exact)."""
    if kind == "bfloat16":
        return builder.bitcast(builder.shl(builder.zext(bits, _I32), ir.Constant(_I32, 16)),
                               _F32)
    if kind == "float16":
        return builder.fpext(builder.bitcast(bits, ir.HalfType()), _F32)
    return bits


def _encode(context, builder, a_type, value, value_type):
    """value as a's stored bits (of a's dtype), rounded once: 16-bit storage from float32
    (a float64 value rounded to float32 first), else cast as Numba's a[j] = value casts."""
    kind = storage(a_type)
    if kind is None:
        return context.cast(builder, value, value_type, a_type.dtype)
    v = context.cast(builder, value, value_type, types.float32)
    if kind == "float16":
        return builder.bitcast(builder.fptrunc(v, ir.HalfType()), _I16)
    return _round_bf16(context, builder, v)


def emit_load(context, builder, a_type, a, j_type, j, scopes):
    """load(a, j)'s instructions (a[j] in its work type) for an intrinsic's codegen."""
    bits = _get(context, builder, a_type, a, j_type, j, scopes)
    return _widen(builder, storage(a_type), bits)


def float_result(*float_types):
    """The type of Numba's arithmetic on floats of these types (float32 or float64)."""
    return types.float64 if types.float64 in float_types else types.float32


def emit_float_op(context, builder, name, lhs, lhs_type, rhs, rhs_type):
    """(lhs <op> rhs, its type) for an intrinsic's codegen, as Numba lowers ``lhs * rhs``
    ("fmul"), ``lhs + rhs`` ("fadd") or ``lhs - rhs`` ("fsub") of two floats: both cast to
    the wider type, the plain instruction (the kernel's fastmath flags are added to it, as
    to Numba's own, when its module is finished: numba.core.fastmathpass)."""
    common = float_result(lhs_type, rhs_type)
    lhs = context.cast(builder, lhs, lhs_type, common)
    rhs = context.cast(builder, rhs, rhs_type, common)
    return getattr(builder, name)(lhs, rhs), common


def _loader(scopes):
    @intrinsic
    def load(typingctx, a, j):
        def codegen(context, builder, sig, args):
            return emit_load(context, builder, sig.args[0], args[0], sig.args[1], args[1],
                             scopes)
        return work_type(a)(a, j), codegen
    return load


load = _loader(_alias.GET)
load.__doc__ = """a[j] in its work type (the element itself for float arrays)."""
load_input = _loader(_alias.GET_INPUT)
load_input.__doc__ = """load(a, j) of an array the forward kernels never write (x; r when
s is not stored over it; weight, bias): no fused sum s overlaps it (_alias)."""


def emit_store(context, builder, a_type, a, j_type, j, value, value_type, scoped=None):
    """store(a, j, value)'s instructions (store_out's with scoped _alias.OUTPUT, keep's with
    _alias.SUM) for an intrinsic's codegen; returns the stored bits."""
    bits = _encode(context, builder, a_type, value, value_type)
    _put(context, builder, a_type, a, j_type, j, bits, scoped)
    return bits


def _storer(scoped):
    @intrinsic
    def store(typingctx, a, j, value):
        def codegen(context, builder, sig, args):
            emit_store(context, builder, sig.args[0], args[0], sig.args[1], args[1], args[2],
                       sig.args[2], scoped)
            return context.get_dummy_value()
        return types.none(a, j, value), codegen
    return store


store = _storer(None)
store.__doc__ = """a[j] = value, rounded once to a's storage."""
store_out = _storer(_alias.OUTPUT)
store_out.__doc__ = """store(y, j, value) for an output y that overlaps no array the kernel
reads: in the output scope through a row pointer (_alias)."""


def kept_type(a, value_type):
    """The type keep(a, j, value) returns."""
    return value_type if storage(a) is None else types.float32


def emit_keep(context, builder, a_type, a, j_type, j, value, value_type):
    """keep(a, j, value)'s instructions for an intrinsic's codegen."""
    kind = storage(a_type)
    bits = emit_store(context, builder, a_type, a, j_type, j, value, value_type, _alias.SUM)
    return value if kind is None else _widen(builder, kind, bits)


@intrinsic
def keep(typingctx, a, j, value):
    """store(a, j, value) and return the stored value in the work type: a fused sum s is
    normalized as it was stored.  Through a row pointer, in the sums scope (_alias).  (For
    float arrays the value itself is returned, as given.)"""
    def codegen(context, builder, sig, args):
        return emit_keep(context, builder, sig.args[0], args[0], sig.args[1], args[1],
                         args[2], sig.args[2])
    return kept_type(a, value)(a, j, value), codegen


def emit_rounded(context, builder, a_type, value, value_type):
    """rounded(a, value)'s instructions for an intrinsic's codegen."""
    kind = storage(a_type)
    if kind is None:
        return value
    return _widen(builder, kind, _encode(context, builder, a_type, value, value_type))


@intrinsic
def rounded(typingctx, a, value):
    """value rounded to a's storage, in the work type (value for float arrays)."""
    def codegen(context, builder, sig, args):
        return emit_rounded(context, builder, sig.args[0], args[1], sig.args[1])
    return kept_type(a, value)(a, value), codegen


def empty_work(a, shape):
    """A new array of a's work type (float32 for 16-bit storage)."""


@overload(empty_work)
def _empty_work(a, shape):
    dtype = work_type(a)
    return lambda a, shape: np.empty(shape, dtype)
