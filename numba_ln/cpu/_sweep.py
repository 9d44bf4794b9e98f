"""The fused sweep: one pass over a row that normalizes it and, chunk by chunk in the same
loop, forms and sums the next row.

Normalizing a row reads it from L1 (its statistics were just computed) and writes y;
summing the next row reads it from memory.  Done one row after the other, a kernel
alternates between a phase that only loads from memory and one that only stores, and
the memory system idles in each; in one loop, loads of the next row and stores of this
one overlap, as in a copy.  Measured with 2 threads against the two phases one row at a
time: (4096, 768) 0.58 instead of 0.47 of the speed line, (4096, 1024) 0.65 instead of
0.57, (4096, 4096) 0.88 instead of 0.73; and against the two loops interleaved chunk by
chunk (separate loops, 2 KiB each): 0.65 instead of 0.46 at (4096, 1024).

The first row of a task is summed on its own (_moments.row_sums; a bfloat16 one by a
sweep beside a scratch row, rows.lone_row_stats), every later row by a sweep.  Which rows
start a task depends only on the array's shape (_engine), never on the thread count, so
neither do the results.
"""
import numpy as np
from numba.extending import intrinsic

from .. import _config
from . import _alias
from ._elements import _absent, affine, exact_mul, exact_sub, smaller, store_result, work
from ._jit import kernel
from ._moments import row_value
from ._storage import emit_load, work_type

CHUNK = _config.CHUNK
REDUCE = _config.REDUCE_FASTMATH


@intrinsic
def load_src(typingctx, src, r, j):
    """src[j] (in its work type) of the row a sweep normalizes.  With a residual r that
    row is s (or r, s stored over it), and its loads are in _alias's sums scope: LLVM's
    loop access analysis puts every pointer that may alias another into one set and
    checks each of the set's pointers against the set's stores at run time, so a load of
    src that x's and r's loads might alias drew x and r into the run-time test against
    s's stores (passed, vectorized, only when s lay 256 bytes or more past them: a short
    row's bits then depended on where s lay)."""
    access = _alias.GET if _absent(r) else _alias.GET_SUM

    def codegen(context, builder, sig, args):
        return emit_load(context, builder, sig.args[0], args[0], sig.args[2], args[2], access)
    return work_type(src)(src, r, j), codegen


@kernel(inline="always")
def put(y, src, hi, low, scale, w, b, j, r=None):
    """y[j] = ((src[j] - hi) - low) * scale * w[j] + b[j]; over src[j] when y is
    IN_PLACE; nothing when y is None.  r: the residual of the row a sweep sums (load_src)."""
    t = exact_mul(exact_sub(exact_sub(load_src(src, r, j), hi), low), scale)
    store_result(y, src, j, affine(t, w, b, j))


@kernel()
def normalize_chunk(y, src, hi, low, scale, w, b, start, stop):
    """y[j] = ((src[j] - hi) - low) * scale * w[j] + b[j] for j in start:stop."""
    for j in range(start, stop):
        put(y, src, hi, low, scale, w, b, j)


@kernel(inline="always")
def shifted_part(y, src, hi, low, scale, w, b, x, r, s, k, start, stop):
    a1 = a2 = work(x, 0.0)
    for j in range(start, stop):
        d = exact_sub(row_value(x, r, s, j), k)
        a1 += d
        a2 += d * d
        put(y, src, hi, low, scale, w, b, j, r)
    return a1, a2


@kernel(inline="always")
def squares_part(y, src, scale, w, b, x, r, s, start, stop):
    a2 = work(x, 0.0)
    # RMSNorm's (hi, low) are (+0.0, +0.0), and x - +0.0 is x exactly (-0.0 included):
    # as constants LLVM drops the two subtractions an element (the same bits).
    zero = work(src, 0.0)
    for j in range(start, stop):
        v = row_value(x, r, s, j)
        a2 += v * v
        put(y, src, zero, zero, scale, w, b, j, r)
    return a2


# A summing loop (see _config.REDUCE_FASTMATH).  Its callers add the pieces' totals.
@kernel(fastmath=REDUCE, _nrt=False)
def sweep(y, src, terms, w, b, following, n, k, centered):
    """Normalize the piece src[:n] of a row into y (IN_PLACE: over src; None: no output),
    with terms = (hi, low, scale) (_rowops.normalizer), while summing the same piece of
    the following row, (x, r, s): x[:n] (+ r, stored into s), about k (LayerNorm) or its
    squares (RMSNorm).  n <= PIECE; all arrays are row pointers (_pointers) or None.
    Returns the float64 totals of its chunks' partial sums."""
    hi, low, scale = terms
    x, r, s = following
    t1 = t2 = 0.0
    start = np.uint64(0)
    end = np.uint64(n)
    while start < end:
        stop = smaller(end, start + np.uint64(CHUNK))
        if centered:
            a1, a2 = shifted_part(y, src, hi, low, scale, w, b, x, r, s, k, start, stop)
            t1 += a1
            t2 += a2
        else:
            t2 += squares_part(y, src, scale, w, b, x, r, s, start, stop)
        start = stop
    return t1, t2
