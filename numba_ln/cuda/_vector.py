"""Memory access for the row kernels: rows addressed as ``base + i * row_stride + j * itemsize``.

On a GPU, kernels take every array as an integer device address plus a row stride in bytes
(no Numba array arguments: a launch then marshals a few integers instead of ~10 fields per
array, and the front builds no Numba array objects for its inputs).  The helpers here are
LLVM intrinsics specialised on (dtype, vector width):

- ``load(a, rs, i, j, dst, k)``: ``dst[k + v] = a[i, j + v]`` for v < vec, converted to the
  (register) array dst's dtype: one global vector load of ``vec * itemsize`` bytes with that
  alignment (``ld.global.v4.f32``; eight float16 as ``ld.global.v4.u32``);
- ``store(a, rs, i, j, src, k)``: the reverse (``st.global.v4...``);
- ``get(a, rs, i, j)``: one element;  ``put(a, i, value)``: ``a[i] = value`` (1-D).

The front guarantees unit column stride and, for ``vec > 1``, the alignment.  Because the
column term is a compile-time multiple of the item size, a thread's segments of one row are
constant offsets from one base register.

Under the simulator the same names are Python functions over the (NumPy-backed) arrays the
simulator passes instead, with the row stride ignored.
"""
import numpy as np
from llvmlite import ir

from ._compat import SIMULATOR, intrinsic, types

_CACHE = {}


def numba_type(dtype):
    dtype = np.dtype(dtype)
    return types.boolean if dtype.kind == "b" else getattr(types, dtype.name)


def row_io(dtype, vec):
    """(load, store) for segments of ``vec`` elements of ``dtype``."""
    key = ("row", np.dtype(dtype), vec)
    if key not in _CACHE:
        _CACHE[key] = _python_row_io(vec) if SIMULATOR else _intrinsic_row_io(dtype, vec)
    return _CACHE[key]


def scalar_io(dtype):
    """(get, put) for single elements of ``dtype``."""
    key = ("scalar", np.dtype(dtype))
    if key not in _CACHE:
        _CACHE[key] = _python_scalar_io() if SIMULATOR else _intrinsic_scalar_io(dtype)
    return _CACHE[key]


# -- simulator ---------------------------------------------------------------------------------

def _python_row_io(vec):
    def load(a, rs, i, j, dst, k):
        for v in range(vec):
            dst[k + v] = a[i, j + v]

    def store(a, rs, i, j, src, k):
        for v in range(vec):
            a[i, j + v] = src[k + v]

    return load, store


def _python_scalar_io():
    def get(a, rs, i, j):
        return a[i, j]

    def put(a, i, value):
        a[i] = value

    return get, put


# -- GPU ---------------------------------------------------------------------------------------

def _address(context, builder, base, rs, i, j, types_, size):
    """base + i * rs + j * size, all as intp."""
    intp_t = types.intp
    lt = context.get_value_type(intp_t)
    base_t, rs_t, i_t, j_t = types_
    base = context.cast(builder, base, base_t, intp_t)
    rs = context.cast(builder, rs, rs_t, intp_t)
    i = context.cast(builder, i, i_t, intp_t)
    j = context.cast(builder, j, j_t, intp_t)
    return builder.add(base, builder.add(builder.mul(i, rs), builder.mul(j, ir.Constant(lt, size))))


def _global_pointer(builder, address, pointee):
    return builder.inttoptr(address, ir.PointerType(pointee, 1))


def _packing(vty):
    """(word vector type, elements per word) to move narrow elements (float16 is an i16 to
    Numba) as 32-bit words: NVVM turns a <8 x i16> load, even bitcast from <4 x i32>, into
    two 8-byte loads; words unpacked by shifts stay one 16-byte load."""
    elt = vty.element
    if isinstance(elt, ir.IntType) and elt.width < 32 and (elt.width * vty.count) % 32 == 0:
        per = 32 // elt.width
        return ir.VectorType(ir.IntType(32), vty.count // per), per
    return None, 1


def _load_elements(builder, address, vty, align):
    words, per = _packing(vty)
    if words is None:
        value = builder.load(_global_pointer(builder, address, vty), align=align)
        return [builder.extract_element(value, ir.Constant(ir.IntType(32), v))
                for v in range(vty.count)]
    value = builder.load(_global_pointer(builder, address, words), align=align)
    out = []
    for k in range(words.count):
        word = builder.extract_element(value, ir.Constant(ir.IntType(32), k))
        for p in range(per):  # little-endian: element k*per + p sits p*width bits up
            part = builder.lshr(word, ir.Constant(word.type, p * vty.element.width)) if p else word
            out.append(builder.trunc(part, vty.element))
    return out


def _store_elements(builder, address, vty, align, elements):
    words, per = _packing(vty)
    i32 = ir.IntType(32)
    if words is None:
        value = ir.Constant(vty, ir.Undefined)
        for v, x in enumerate(elements):
            value = builder.insert_element(value, x, ir.Constant(i32, v))
        builder.store(value, _global_pointer(builder, address, vty), align=align)
        return
    value = ir.Constant(words, ir.Undefined)
    for k in range(words.count):
        word = ir.Constant(i32, 0)
        for p in range(per):
            part = builder.zext(elements[k * per + p], i32)
            if p:
                part = builder.shl(part, ir.Constant(i32, p * vty.element.width))
            word = builder.or_(word, part)
        value = builder.insert_element(value, word, ir.Constant(i32, k))
    builder.store(value, _global_pointer(builder, address, words), align=align)


def _local_pointer(context, builder, lty, local, k, kty, v):
    from ._compat import cgutils

    arr = context.make_array(lty)(context, builder, value=local)
    index = builder.add(context.cast(builder, k, kty, types.intp),
                        ir.Constant(context.get_value_type(types.intp), v))
    return cgutils.get_item_pointer(context, builder, lty, arr, [index], wraparound=False)


def _integers(*tys):
    return all(isinstance(t, types.Integer) for t in tys)


def _intrinsic_row_io(dtype, vec):
    nty = numba_type(dtype)

    def layout(context):
        model = context.data_model_manager[nty]
        data = model.get_data_type()
        size = context.get_abi_sizeof(data)
        return model, ir.VectorType(data, vec), size, size * vec

    @intrinsic
    def load(typingctx, a, rs, i, j, dst, k):
        if not (_integers(a, rs, i, j, k) and isinstance(dst, types.Array)):
            return None

        def codegen(context, builder, sig, args):
            a_t, rs_t, i_t, j_t, dst_t, k_t = sig.args
            model, vty, size, align = layout(context)
            address = _address(context, builder, args[0], args[1], args[2], args[3],
                               (a_t, rs_t, i_t, j_t), size)
            for v, x in enumerate(_load_elements(builder, address, vty, align)):
                x = context.cast(builder, model.from_data(builder, x), nty, dst_t.dtype)
                builder.store(x, _local_pointer(context, builder, dst_t, args[4], args[5], k_t, v))
            return context.get_dummy_value()

        return types.void(a, rs, i, j, dst, k), codegen

    @intrinsic
    def store(typingctx, a, rs, i, j, src, k):
        if not (_integers(a, rs, i, j, k) and isinstance(src, types.Array)):
            return None

        def codegen(context, builder, sig, args):
            a_t, rs_t, i_t, j_t, src_t, k_t = sig.args
            model, vty, size, align = layout(context)
            address = _address(context, builder, args[0], args[1], args[2], args[3],
                               (a_t, rs_t, i_t, j_t), size)
            elements = []
            for v in range(vec):
                x = builder.load(_local_pointer(context, builder, src_t, args[4], args[5], k_t, v))
                elements.append(model.as_data(builder, context.cast(builder, x, src_t.dtype, nty)))
            _store_elements(builder, address, vty, align, elements)
            return context.get_dummy_value()

        return types.void(a, rs, i, j, src, k), codegen

    return load, store


def _intrinsic_scalar_io(dtype):
    nty = numba_type(dtype)

    @intrinsic
    def get(typingctx, a, rs, i, j):
        if not _integers(a, rs, i, j):
            return None

        def codegen(context, builder, sig, args):
            model = context.data_model_manager[nty]
            data = model.get_data_type()
            size = context.get_abi_sizeof(data)
            address = _address(context, builder, *args, sig.args, size)
            raw = builder.load(_global_pointer(builder, address, data), align=size)
            return model.from_data(builder, raw)

        return nty(a, rs, i, j), codegen

    @intrinsic
    def put(typingctx, a, i, value):
        if not _integers(a, i):
            return None

        def codegen(context, builder, sig, args):
            a_t, i_t, value_t = sig.args
            model = context.data_model_manager[nty]
            data = model.get_data_type()
            size = context.get_abi_sizeof(data)
            zero = context.get_constant(types.intp, 0)
            address = _address(context, builder, args[0], zero, zero, args[1],
                               (a_t, types.intp, types.intp, i_t), size)
            raw = model.as_data(builder, context.cast(builder, args[2], value_t, nty))
            builder.store(raw, _global_pointer(builder, address, data), align=size)
            return context.get_dummy_value()

        return types.void(a, i, value), codegen

    return get, put
