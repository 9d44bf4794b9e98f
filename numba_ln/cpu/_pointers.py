"""Typed pointers into arrays, for the per-row functions.

A Numba array argument is seven machine words (meminfo, parent, size, itemsize, data,
shape, strides), and a function call passes each of them: the fused sweep of a row takes
seven arrays, so a call cost ~50 argument words, more than the work on a 64-element row.
A ``CPointer`` is one word, and Numba indexes it like an array (``p[j]``, ``p[j] = v``)
with no bounds or wraparound handling, so loops over it vectorize the same.  Pointers
carry no reference count: they are made and used inside kernels while the arrays they
point into are alive.
"""
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.imputils import impl_ret_new_ref
from numba.extending import intrinsic
from numba.np.arrayobj import populate_array

from ._elements import _absent, _in_place


def _passes(t):
    """None and IN_PLACE: what the pointer helpers hand back as they are."""
    return _absent(t) or _in_place(t)


def _unchanged(sig_type):
    def codegen(context, builder, sig, args):
        return args[0] if not _absent(sig_type) else context.get_dummy_value()
    return codegen


def _element_pointer(context, builder, array_type, array, index_type, index):
    data = context.make_array(array_type)(context, builder, array).data
    return builder.gep(data, [context.cast(builder, index, index_type, types.intp)])


@intrinsic
def address(typingctx, array, index):
    """Pointer to array[index] (array: a flat, unit-stride array), or None for None."""
    if _passes(array):
        return array(array, index), _unchanged(array)

    def codegen(context, builder, sig, args):
        return _element_pointer(context, builder, sig.args[0], args[0], sig.args[1], args[1])
    return types.CPointer(array.dtype)(array, index), codegen


@intrinsic
def row_address(typingctx, view, i, col):
    """Pointer to column col of row i of a row view (buf, start, stride); None and IN_PLACE
    stay what they are."""
    if _passes(view):
        return view(view, i, col), _unchanged(view)
    array_type, start_type, stride_type = view.types

    def codegen(context, builder, sig, args):
        buf, start, stride = cgutils.unpack_tuple(builder, args[0], 3)
        intp = types.intp
        offset = builder.add(
            builder.add(context.cast(builder, start, start_type, intp),
                        builder.mul(context.cast(builder, args[1], sig.args[1], intp),
                                    context.cast(builder, stride, stride_type, intp))),
            context.cast(builder, args[2], sig.args[2], intp))
        return _element_pointer(context, builder, array_type, buf, intp, offset)
    return types.CPointer(array_type.dtype)(view, i, col), codegen


@intrinsic
def advance(typingctx, pointer, count):
    """pointer + count elements; None and IN_PLACE stay what they are."""
    if _passes(pointer):
        return pointer(pointer, count), _unchanged(pointer)

    def codegen(context, builder, sig, args):
        return builder.gep(args[0], [context.cast(builder, args[1], sig.args[1], types.intp)])
    return pointer(pointer, count), codegen


@intrinsic(prefer_literal=True)
def stack_doubles(typingctx, count):
    """Pointer to `count` (a literal int) float64s in the calling kernel's stack frame,
    allocated once in its entry block: scratch a kernel keeps without an allocation (one
    and its release cost ~60 ns).  Valid while that kernel runs, in its own thread."""
    if not isinstance(count, types.IntegerLiteral):
        return None
    size = count.literal_value

    def codegen(context, builder, signature, args):
        return cgutils.alloca_once(builder, context.get_value_type(types.float64), size=size)
    return types.CPointer(types.float64)(count), codegen


@intrinsic(prefer_literal=True)
def stack_or_new(typingctx, shape, dtype, max_bytes):
    """A C-contiguous array of dtype (a Numba number class) and shape (a tuple of
    integers): in the calling kernel's stack frame when it takes at most max_bytes (a
    literal int; the frame keeps that much, allocated once in its entry block), else a
    fresh allocation by NRT, as np.empty's, released with the array.  One type either
    way.  An intrinsic: carray and np.empty each compile overloads of their own on a
    kernel's first use (~20-60 ms apiece).  Stack arrays are for serial code only: a
    frame is its thread's."""
    if not (isinstance(shape, types.BaseTuple) and isinstance(dtype, types.NumberClass)
            and isinstance(max_bytes, types.IntegerLiteral)
            and all(isinstance(t, types.Integer) for t in shape)):
        return None
    element = dtype.instance_type
    result = types.Array(element, len(shape), "C")
    capacity = max_bytes.literal_value

    def codegen(context, builder, sig, args):
        intp = context.get_value_type(types.intp)
        value_type = context.get_value_type(element)
        itemsize = context.get_abi_sizeof(value_type)
        dims = [context.cast(builder, d, t, types.intp)
                for d, t in zip(cgutils.unpack_tuple(builder, args[0]), sig.args[0])]
        strides = [intp(itemsize)]  # (C order: the last axis's step first, then outwards)
        for d in reversed(dims[1:]):
            strides.insert(0, builder.mul(strides[0], d))
        size = builder.mul(strides[0], dims[0])
        stack = cgutils.alloca_once(builder, value_type, size=max(1, capacity // itemsize))
        stack.align = 64  # (a cache line, as the heap's: rows read 64 bytes at a time)
        slot = cgutils.alloca_once(builder, context.get_value_type(result))

        def store_array(data, meminfo):
            array = context.make_array(result)(context, builder)
            populate_array(array, data=data, shape=dims, strides=strides,
                           itemsize=intp(itemsize), meminfo=meminfo)
            builder.store(array._getvalue(), slot)

        fits = builder.icmp_unsigned("<=", size, intp(capacity))
        with builder.if_else(fits) as (on_stack, on_heap):
            with on_stack:
                store_array(stack, None)
            with on_heap:
                meminfo = context.nrt.meminfo_alloc_aligned(builder, size, 64)
                with builder.if_then(cgutils.is_null(builder, meminfo), likely=False):
                    context.call_conv.return_user_exc(builder, MemoryError,
                                                      ("cannot allocate scratch memory",))
                store_array(builder.bitcast(context.nrt.meminfo_data(builder, meminfo),
                                            value_type.as_pointer()), meminfo)
        return impl_ret_new_ref(context, builder, result, builder.load(slot))
    return result(shape, dtype, max_bytes), codegen


@intrinsic
def prefetch_line(typingctx, pointer):
    """A hint to bring the cache line at pointer towards L1 (LLVM's prefetch: read,
    temporal); nothing for None and IN_PLACE.  (rows_block points it inside its arrays
    only.)"""
    if _passes(pointer):
        return types.none(pointer), lambda context, builder, sig, args: (
            context.get_dummy_value())

    def codegen(context, builder, sig, args):
        i8p = context.get_value_type(types.voidptr)
        i32 = ir.IntType(32)
        hint = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
            "llvm.prefetch.p0")
        builder.call(hint, [builder.bitcast(args[0], i8p), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()
    return types.none(pointer), codegen
