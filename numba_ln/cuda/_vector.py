"""Row-segment loads and stores: ``VEC`` consecutive elements of a 2-D array's row in one
instruction, converted to or from a thread-local (register) array.

On a GPU these are LLVM intrinsics: an address-space-1 (global) vector load or store of
``VEC`` elements with ``VEC * itemsize`` alignment, which NVVM emits as ``ld.global.v4.f32``
(``.v2.f64``, ``.v4.b32`` for eight float16) and ``st.global.v4...``.  ``VEC == 1`` gives
plain ``ld.global``/``st.global``.  The caller guarantees alignment (numba_ln/cuda/_front.py
checks pointers and strides before it picks ``VEC > 1``).

Under the simulator they are Python loops with the same meaning.
"""
from llvmlite import ir

from ._compat import SIMULATOR, cgutils, intrinsic, types

_CACHE = {}


def row_io(vec):
    """(load, store) for segments of ``vec`` elements:

    ``load(a, i, j, dst, k)``: ``dst[k + v] = a[i, j + v]`` for v < vec, converted to
    dst's dtype.  ``store(a, i, j, src, k)``: ``a[i, j + v] = src[k + v]``.
    """
    if vec not in _CACHE:
        _CACHE[vec] = _python_io(vec) if SIMULATOR else _intrinsic_io(vec)
    return _CACHE[vec]


def _python_io(vec):
    def load(a, i, j, dst, k):
        for v in range(vec):
            dst[k + v] = a[i, j + v]

    def store(a, i, j, src, k):
        for v in range(vec):
            a[i, j + v] = src[k + v]

    return load, store


def _global_vector_pointer(context, builder, aty, a, i, ity, j, jty, vec):
    """Pointer to a[i, j] as a global-memory pointer to a vector of ``vec`` elements."""
    arr = context.make_array(aty)(context, builder, value=a)
    index = [context.cast(builder, i, ity, types.intp), context.cast(builder, j, jty, types.intp)]
    ptr = cgutils.get_item_pointer(context, builder, aty, arr, index, wraparound=False)
    elt = context.get_value_type(aty.dtype)
    vty = ir.VectorType(elt, vec)
    gptr = builder.addrspacecast(ptr, ir.PointerType(elt, 1))
    return builder.bitcast(gptr, ir.PointerType(vty, 1)), vty, vec * context.get_abi_sizeof(elt)


def _local_pointer(context, builder, lty, local, k, kty, v):
    arr = context.make_array(lty)(context, builder, value=local)
    index = builder.add(context.cast(builder, k, kty, types.intp),
                        ir.Constant(context.get_value_type(types.intp), v))
    return cgutils.get_item_pointer(context, builder, lty, arr, [index], wraparound=False)


def _check(a, dst):
    if not (isinstance(a, types.Array) and a.ndim == 2 and isinstance(dst, types.Array)
            and dst.ndim == 1):
        raise TypeError(f"row segment I/O needs a 2-D array and a 1-D local array, got {a}, {dst}")


def _intrinsic_io(vec):
    @intrinsic
    def load(typingctx, a, i, j, dst, k):
        _check(a, dst)

        def codegen(context, builder, sig, args):
            aty, ity, jty, lty, kty = sig.args
            a_, i_, j_, dst_, k_ = args
            vptr, vty, align = _global_vector_pointer(context, builder, aty, a_, i_, ity, j_,
                                                      jty, vec)
            value = builder.load(vptr, align=align)
            for v in range(vec):
                x = builder.extract_element(value, ir.Constant(ir.IntType(32), v))
                x = context.cast(builder, x, aty.dtype, lty.dtype)
                builder.store(x, _local_pointer(context, builder, lty, dst_, k_, kty, v))
            return context.get_dummy_value()

        return types.void(a, i, j, dst, k), codegen

    @intrinsic
    def store(typingctx, a, i, j, src, k):
        _check(a, src)

        def codegen(context, builder, sig, args):
            aty, ity, jty, lty, kty = sig.args
            a_, i_, j_, src_, k_ = args
            vptr, vty, align = _global_vector_pointer(context, builder, aty, a_, i_, ity, j_,
                                                      jty, vec)
            value = ir.Constant(vty, ir.Undefined)
            for v in range(vec):
                x = builder.load(_local_pointer(context, builder, lty, src_, k_, kty, v))
                x = context.cast(builder, x, lty.dtype, aty.dtype)
                value = builder.insert_element(value, x, ir.Constant(ir.IntType(32), v))
            builder.store(value, vptr, align=align)
            return context.get_dummy_value()

        return types.void(a, i, j, src, k), codegen

    return load, store
