"""Streamed output rows: a row computed into a scratch row, then copied to the array with
non-temporal stores, which write whole cache lines past the caches.

An ordinary store first reads its line into the cache (the core must own it), so a kernel
that reads x and writes y moves three times y's bytes, not two, once the arrays outgrow
the cache.  A non-temporal store skips that read.  Measured on the development machine (2
threads, float32, medians of 21 calls): a prange copy of 64 MB ran at 29-38 GB/s, the
same copy with streamed stores at 45-51, and 128 MB at 26 against 42-49; at 32 MB and
below no gain (the output stays in the L3 share this VM gets).  ``layer_norm(out=)`` at
(16384, 1024) and (4096, 4096): 5.3-5.5 ms -> 4.0-4.5 ms; at (4096, 1024), whose 16 MB
the next call finds in cache, 0.65 -> 0.82 ms.  So the fronts stream outputs of at least
``_config.STREAM_MIN_BYTES`` (its comment has the measurements; ``streams``), and
``stream`` is a run-time flag of the kernels: one compiled kernel either way.

LLVM's loop vectorizer will not vectorize a loop whose stores carry ``!nontemporal``
unless the target takes unaligned ones (x86 only takes 64-byte aligned vector stores),
so the kernels' own loops write into a 64-byte aligned scratch row on the stack, which
stays in L1, and ``stream_copy`` writes it out in aligned 64-byte vectors (the row's
unaligned head and tail with ordinary stores).  The bits are the same either way.
Streamed stores are weakly ordered: a kernel ends its task with ``stream_fence`` (x86
``mfence``) before another thread may read what it wrote.
"""
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .. import _config
from ._elements import IN_PLACE, _absent, _in_place

# The longest row streamed, in bytes: the scratch row's size (rows of 8192 float32).
STREAM_MAX_ROW_BYTES = 32768
_LINE = 64


def streams(view, rows, cols, arrays):
    """Whether a threaded kernel streams its output view (buf, start, stride) of rows x
    cols, in a call that moves that many bytes in each of `arrays` arrays: at least
    _config.STREAM_MIN_BYTES in all, rows that fit the scratch row (None and IN_PLACE,
    never: an output over its input was read just before, and is in cache)."""
    if view is None or view is IN_PLACE:
        return False
    row_bytes = cols * view[0].itemsize
    return (row_bytes <= STREAM_MAX_ROW_BYTES
            and rows * row_bytes * arrays >= _config.STREAM_MIN_BYTES)


def _passes(t):
    return _absent(t) or _in_place(t)


@intrinsic
def row_buffer(typingctx, view):
    """Pointer to a 64-byte aligned scratch row of view's element type, STREAM_MAX_ROW_BYTES
    long, in the calling kernel's stack frame (view: a row view (buf, start, *steps), or
    a flat array); None and IN_PLACE stay what they are (nothing is streamed)."""
    if _passes(view):
        def unchanged(context, builder, sig, args):
            return args[0] if _in_place(view) else context.get_dummy_value()
        return view(view), unchanged
    dtype = view.dtype if isinstance(view, types.Array) else view.types[0].dtype

    def codegen(context, builder, sig, args):
        element = context.get_value_type(dtype)
        count = STREAM_MAX_ROW_BYTES // context.get_abi_sizeof(element)
        slot = cgutils.alloca_once(builder, element, size=count)
        slot.align = _LINE
        return slot
    return types.CPointer(dtype)(view), codegen


@intrinsic
def stream_copy(typingctx, dst, src, n):
    """dst[:n] = src[:n] (typed pointers of one element type), the whole 64-byte lines of
    dst with non-temporal stores; nothing for None and IN_PLACE."""
    if _passes(dst):
        return types.void(dst, src, n), lambda context, builder, sig, args: (
            context.get_dummy_value())

    def codegen(context, builder, sig, args):
        to, source, count = args
        intp = context.get_value_type(types.intp)
        count = context.cast(builder, count, sig.args[2], types.intp)
        element = to.type.pointee
        size = context.get_abi_sizeof(element)
        lanes = _LINE // size

        def const(v):
            return ir.Constant(intp, v)

        def copy_one(j):
            builder.store(builder.load(builder.gep(source, [j])), builder.gep(to, [j]))

        # head: elements up to dst's next line (all of them if dst is not even aligned to
        # its element: a vector store would fault)
        address = builder.ptrtoint(to, intp)
        head = builder.udiv(builder.and_(builder.sub(const(0), address), const(_LINE - 1)),
                            const(size))
        aligned = builder.icmp_unsigned("==", builder.and_(address, const(size - 1)), const(0))
        head = builder.select(aligned, head, count)
        head = builder.select(builder.icmp_unsigned("<", head, count), head, count)
        with cgutils.for_range(builder, head) as loop:
            copy_one(loop.index)
        vector = ir.VectorType(element, lanes)
        nontemporal = builder.module.add_metadata([ir.IntType(32)(1)])
        lines = builder.udiv(builder.sub(count, head), const(lanes))
        with cgutils.for_range(builder, lines) as loop:
            j = builder.add(head, builder.mul(loop.index, const(lanes)))
            value = builder.load(builder.bitcast(builder.gep(source, [j]), vector.as_pointer()),
                                 align=size)
            put = builder.store(value, builder.bitcast(builder.gep(to, [j]), vector.as_pointer()),
                                align=_LINE)
            put.set_metadata("nontemporal", nontemporal)
        done = builder.add(head, builder.mul(lines, const(lanes)))
        with cgutils.for_range(builder, builder.sub(count, done)) as loop:
            copy_one(builder.add(done, loop.index))
        return context.get_dummy_value()
    return types.void(dst, src, n), codegen


@intrinsic
def stream_fence(typingctx):
    """Order the streamed stores before what follows (a full fence: x86 ``mfence``)."""
    def codegen(context, builder, sig, args):
        builder.fence("seq_cst")
        return context.get_dummy_value()
    return types.void(), codegen
