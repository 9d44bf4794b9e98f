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
stays in L1, and ``stream_row`` writes it out in whole 64-byte lines.  A line that a row
shares with the next one is held back (``stream_state``: up to 64 bytes a stream) and
completed from the next row's head when the rows are contiguous, so that a task writes
ordinary stores only at its two ends (and around gaps between rows): NumPy places large
arrays 16 bytes past a page, and with a partial line at both ends of every row, written
with ordinary stores, layer_norm_backward(out=) at (16384, 1024) took 8.05 ms into such
an array against 5.96-6.20 into 64-byte aligned ones; held back, 6.37 against 6.17-6.22
(layer_norm out= 4.35 -> 3.83 ms, aligned 3.83-3.88).  The bits are the same either way.
Streamed stores are weakly ordered: a kernel ends its task with ``stream_end`` and
``stream_fence`` (x86 ``mfence``) before another thread may read what it wrote.
"""
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .. import _config
from ._elements import IN_PLACE
from ._jit import kernel
from ._pointers import _passes, _unchanged, advance
from ._vector_width import optimize_for_size

# The longest row streamed, in bytes: the scratch row's size (rows of 8192 float32).
STREAM_MAX_ROW_BYTES = 32768
LINE = 64  # bytes in a cache line (the channels-first tiles are whole lines too: _engine)


def streams(view, elements, row_elements, arrays):
    """Whether a threaded kernel streams its output view (buf, start, *steps) of that many
    elements, written row_elements at a time (what its scratch row must hold), in a call
    that moves as many in each of `arrays` arrays: at least _config.STREAM_MIN_BYTES in
    all, and rows that fit the scratch row (None and IN_PLACE, never: an output over its
    input was read just before, and is in cache)."""
    if view is None or view is IN_PLACE:
        return False
    size = view[0].itemsize
    return (row_elements * size <= STREAM_MAX_ROW_BYTES
            and elements * size * arrays >= _config.STREAM_MIN_BYTES)


def _element_type(view):
    """The element type of a row view (buf, start, *steps), a flat array or a row
    pointer."""
    if isinstance(view, (types.Array, types.CPointer)):
        return view.dtype
    return view.types[0].dtype


@intrinsic
def row_buffer(typingctx, view):
    """Pointer to a 64-byte aligned scratch row of view's element type, STREAM_MAX_ROW_BYTES
    long, in the calling kernel's stack frame (view: a row view (buf, start, *steps), a
    flat array or a row pointer); None and IN_PLACE stay what they are (nothing is
    streamed)."""
    if _passes(view):
        return view(view), _unchanged(view)
    dtype = _element_type(view)

    def codegen(context, builder, sig, args):
        element = context.get_value_type(dtype)
        count = STREAM_MAX_ROW_BYTES // context.get_abi_sizeof(element)
        slot = cgutils.alloca_once(builder, element, size=count)
        slot.align = LINE
        return slot
    return types.CPointer(dtype)(view), codegen


def _constant(context, value):
    return ir.Constant(context.get_value_type(types.intp), value)


def _address(context, builder, pointer):
    return builder.ptrtoint(pointer, context.get_value_type(types.intp))


@intrinsic
def line_lanes(typingctx, pointer):
    """The elements of pointer's type in one 64-byte line (a constant)."""
    def codegen(context, builder, sig, args):
        return _constant(context, LINE // context.get_abi_sizeof(args[0].type.pointee))
    return types.intp(pointer), codegen


@kernel(inline="always")
def fits_row_buffer(pointer, cols):
    """Whether a row of cols elements of pointer's type fits a row_buffer (its bytes, cols *
    itemsize, as cols * 64 / line_lanes)."""
    return cols * LINE <= STREAM_MAX_ROW_BYTES * line_lanes(pointer)


@intrinsic
def line_offset(typingctx, pointer):
    """How many elements pointer lies past the start of its 64-byte line; -1 if its
    address is not a multiple of the element size (no whole line can be streamed)."""
    def codegen(context, builder, sig, args):
        size = context.get_abi_sizeof(args[0].type.pointee)
        address = _address(context, builder, args[0])
        offset = builder.udiv(builder.and_(address, _constant(context, LINE - 1)),
                              _constant(context, size))
        whole = builder.icmp_unsigned("==", builder.and_(address, _constant(context, size - 1)),
                                      _constant(context, 0))
        return builder.select(whole, offset, _constant(context, -1))
    return types.intp(pointer), codegen


@intrinsic
def same_place(typingctx, a, b):
    """Whether two typed pointers hold the same address."""
    def codegen(context, builder, sig, args):
        return builder.icmp_unsigned("==", _address(context, builder, args[0]),
                                     _address(context, builder, args[1]))
    return types.boolean(a, b), codegen


@intrinsic
def stream_line(typingctx, to, source):
    """to[:lanes] = source[:lanes], one 64-byte line written past the caches (to: the
    start of a line; source: any address)."""
    def codegen(context, builder, sig, args):
        element = args[0].type.pointee
        vector = ir.VectorType(element, LINE // context.get_abi_sizeof(element))
        value = builder.load(builder.bitcast(args[1], vector.as_pointer()),
                             align=context.get_abi_sizeof(element))
        put = builder.store(value, builder.bitcast(args[0], vector.as_pointer()), align=LINE)
        put.set_metadata("nontemporal", builder.module.add_metadata([ir.IntType(32)(1)]))
        return context.get_dummy_value()
    return types.void(to, source), codegen


@intrinsic
def stream_state(typingctx, view):
    """A stream's state: (a 64-byte line of view's element type in the calling kernel's
    stack frame for the elements held back, where they go, how many); None and IN_PLACE
    stay what they are (nothing is streamed)."""
    if _passes(view):
        return view(view), _unchanged(view)
    pointer = types.CPointer(_element_type(view))
    state = types.Tuple((pointer, pointer, types.intp))

    def codegen(context, builder, sig, args):
        element = context.get_value_type(pointer.dtype)
        line = cgutils.alloca_once(builder, element,
                                   size=LINE // context.get_abi_sizeof(element))
        line.align = LINE
        return context.make_tuple(builder, state, (line, line, _constant(context, 0)))
    return state(view), codegen


@kernel(_nrt=False)
def _stream_row(to, source, n, held, held_to, count):
    """to[:n] = source[:n] through a stream whose held-back elements (held[:count], which
    go to held_to[:count]) start a line: whole lines written past the caches, a line
    shared with the previous row completed from this one's head when the rows are
    contiguous, the row's last partial line held back in turn.  Returns (held_to, count)."""
    lanes = line_lanes(to)
    j = 0
    if count > 0:
        if same_place(advance(held_to, count), to):
            while count < lanes and j < n:
                held[count] = source[j]
                count += 1
                j += 1
            if count < lanes:
                return held_to, count
            stream_line(held_to, held)
        else:
            for k in range(count):
                held_to[k] = held[k]
        count = 0
    offset = line_offset(advance(to, j))
    if offset < 0:  # (elements off their own size: ordinary stores only)
        for k in range(j, n):
            to[k] = source[k]
        return to, count
    head = j + (lanes - offset) % lanes
    for k in range(j, head if head < n else n):  # (ordinary stores up to a line)
        to[k] = source[k]
    j = head
    while j + lanes <= n:
        stream_line(advance(to, j), advance(source, j))
        j += lanes
    if j >= n:
        return advance(to, n), count
    for k in range(n - j):
        held[k] = source[j + k]
    return advance(to, j), n - j


# (compiled for size: 252 instead of 617 lines of machine code, linked into every kernel
# that streams; 0.2-0.5 s less compiling on a cold first call)
optimize_for_size(f"{__name__}._stream_row")


@intrinsic
def stream_row(typingctx, to, source, n, state):
    """to[:n] = source[:n] (typed pointers), through the stream `state` (stream_state);
    returns the new state.  Nothing for None and IN_PLACE.  (An intrinsic calling the
    compiled _stream_row: as an overload, its wrapper was a compilation of its own per
    kernel and type, ~0.1 s each on a cold first call.)"""
    if _passes(to):
        return state(to, source, n, state), lambda context, builder, sig, args: args[3]
    held, held_to, count = state.types
    callee = typingctx.resolve_value_type(_stream_row)
    call = typingctx.resolve_function_type(callee, (to, source, types.intp, held, held_to,
                                                    count), {})

    def codegen(context, builder, sig, args):
        fields = cgutils.unpack_tuple(builder, args[3], 3)
        length = context.cast(builder, args[2], sig.args[2], types.intp)
        result = context.get_function(callee, call)(builder, (args[0], args[1], length,
                                                              *fields))
        moved_to, moved_count = cgutils.unpack_tuple(builder, result, 2)
        return context.make_tuple(builder, sig.return_type, (fields[0], moved_to, moved_count))
    return state(to, source, n, state), codegen


@intrinsic
def stream_end(typingctx, state):
    """Write a stream's held-back elements with ordinary stores (then stream_fence)."""
    if _passes(state):
        return types.void(state), lambda context, builder, sig, args: context.get_dummy_value()

    def codegen(context, builder, sig, args):
        held, held_to, count = cgutils.unpack_tuple(builder, args[0], 3)
        with cgutils.for_range(builder, count) as loop:
            builder.store(builder.load(builder.gep(held, [loop.index])),
                          builder.gep(held_to, [loop.index]))
        return context.get_dummy_value()
    return types.void(state), codegen


@intrinsic
def stream_fence(typingctx):
    """Order the streamed stores before what follows (a full fence: x86 ``mfence``)."""
    def codegen(context, builder, sig, args):
        builder.fence("seq_cst")
        return context.get_dummy_value()
    return types.void(), codegen
