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

The overloads are plain calls, not ``inline="always"``: Numba's IR inlining runs its
untyped passes again at every call site, which cost ~1 s of a cold first ``layer_norm``
(6.7-7.4 -> 6.1-6.5 s, with rowops' dispatchers), while LLVM inlines these small
functions anyway: the same bits (float32, float64, 16-bit, backward) and the same speed.
"""
import numpy as np
from llvmlite import ir
from numba import types
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


@intrinsic
def bf16_to_f32(typingctx, bits):
    def codegen(context, builder, signature, args):
        wide = builder.shl(builder.zext(args[0], _I32), ir.Constant(_I32, 16))
        return builder.bitcast(wide, _F32)
    return types.float32(types.uint16), codegen


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


@intrinsic
def f32_to_bf16(typingctx, value):
    """float32 to bfloat16 bits, rounded to nearest even, NaN kept NaN: with the CPU's
    conversion instruction where the compile target has one, else integer operations."""
    def codegen(context, builder, signature, args):
        if _targets_bf16(context):
            return _round_bf16_instruction(builder, args[0])
        return _round_bf16_integer(builder, args[0])
    return types.uint16(types.float32), codegen


@intrinsic
def f32_to_bf16_integer(typingctx, value):
    """f32_to_bf16 with integer operations on every CPU (the portable path, for tests)."""
    def codegen(context, builder, signature, args):
        return _round_bf16_integer(builder, args[0])
    return types.uint16(types.float32), codegen


@intrinsic
def f16_to_f32(typingctx, bits):
    def codegen(context, builder, signature, args):
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), _F32)
    return types.float32(types.int16), codegen


@intrinsic
def f32_to_f16(typingctx, value):
    def codegen(context, builder, signature, args):
        return builder.bitcast(builder.fptrunc(args[0], ir.HalfType()), _I16)
    return types.int16(types.float32), codegen


# --- element access (through row pointers with the alias scopes of _alias.py) ----------------

def _accessor(pointer_get):
    """An element access a[j]: through pointer_get (an _alias intrinsic) for a row
    pointer, plain indexing for an array."""
    def element(a, j):
        pass

    @overload(element)
    def _element(a, j):
        if isinstance(a, types.CPointer):
            return lambda a, j: pointer_get(a, j)
        return lambda a, j: a[j]
    return element


_element = _accessor(_alias.get)
_input_element = _accessor(_alias.get_input)  # (arrays no kernel writes)


def _widened(element):
    """load's implementation over an element access."""
    def impl(a, j):
        kind = storage(a)
        if kind == "bfloat16":
            return lambda a, j: bf16_to_f32(element(a, j))
        if kind == "float16":
            return lambda a, j: f16_to_f32(element(a, j))
        return lambda a, j: element(a, j)
    return impl


def load(a, j):
    """a[j] in its work type (the element itself for float arrays)."""


def load_input(a, j):
    """load(a, j) of an array the forward kernels never write (x; r when s is not stored
    over it; weight, bias): no fused sum s overlaps it (_alias)."""


overload(load)(_widened(_element))
overload(load_input)(_widened(_input_element))


def encode(a, value):
    """value (a float) as the bits a's storage holds (value itself for float arrays).
    A float64 value is first rounded to float32: the 16-bit result is then within one
    unit of the value rounded once (it only arises on the float64 fallbacks)."""


@overload(encode)
def _encode(a, value):
    kind = storage(a)
    if kind == "bfloat16":
        return lambda a, value: f32_to_bf16(np.float32(value))
    if kind == "float16":
        return lambda a, value: f32_to_f16(np.float32(value))
    return lambda a, value: value


def decode(a, bits):
    """What encode(a, ...) stored, in a's work type."""


@overload(decode)
def _decode(a, bits):
    kind = storage(a)
    if kind == "bfloat16":
        return lambda a, bits: bf16_to_f32(bits)
    if kind == "float16":
        return lambda a, bits: f16_to_f32(bits)
    return lambda a, bits: bits


def store(a, j, value):
    """a[j] = value, rounded once to a's storage."""


@overload(store)
def _store(a, j, value):
    def impl(a, j, value):
        a[j] = encode(a, value)
    return impl


def store_out(y, j, value):
    """store(y, j, value) for an output y that overlaps no array the kernel reads: in the
    output scope through a row pointer (_alias)."""


@overload(store_out)
def _store_out(y, j, value):
    if isinstance(y, types.CPointer):
        return lambda y, j, value: _alias.set_output(y, j, encode(y, value))
    return lambda y, j, value: store(y, j, value)


def keep(a, j, value):
    """store(a, j, value) and return the stored value in the work type: a fused sum s is
    normalized as it was stored.  Through a row pointer, in the sums scope (_alias)."""


def _put_sum(a, j, bits):
    """a[j] = bits: _alias.set_sum for a row pointer."""


@overload(_put_sum)
def _put_sum_overload(a, j, bits):
    if isinstance(a, types.CPointer):
        return lambda a, j, bits: _alias.set_sum(a, j, bits)

    def plain(a, j, bits):
        a[j] = bits
    return plain


@overload(keep)
def _keep(a, j, value):
    if storage(a) is None:
        def plain(a, j, value):
            _put_sum(a, j, value)
            return value
        return plain

    def impl(a, j, value):
        bits = encode(a, value)
        _put_sum(a, j, bits)
        return decode(a, bits)
    return impl


def rounded(a, value):
    """value rounded to a's storage, in the work type (value for float arrays)."""


@overload(rounded)
def _rounded(a, value):
    if storage(a) is None:
        return lambda a, value: value
    return lambda a, value: decode(a, encode(a, value))


def empty_work(a, shape):
    """A new array of a's work type (float32 for 16-bit storage)."""


@overload(empty_work)
def _empty_work(a, shape):
    if a.dtype == types.float64:
        return lambda a, shape: np.empty(shape, np.float64)
    return lambda a, shape: np.empty(shape, np.float32)
