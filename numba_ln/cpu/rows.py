"""Kernels for rows laid out contiguously: LayerNorm, RMSNorm, their fused residual-add
forms and their statistics, for float32 and float64 data.

Arguments, grouped (every kernel takes ``arrays, norm, stats``, then the shape)::

    arrays = (y, s, x, r)           the arrays, outputs first (as llm.c's layernorm_forward)
    norm = (w, b, eps, centered)     what a row is normalized with

Plain tuples, which Numba passes as their fields (the same machine code as separate
arguments).  Not named tuples: Numba's dispatcher types a named tuple from Python in
Python code, ~1.1 us more a call than a plain tuple or separate arguments (measured with
these 12 arguments).

``y, s, x, r``  row views ``(buf, start, stride)``: row i of the array is
                ``buf[start + i*stride :][:cols]``, with ``buf`` a flat unit-stride array
                (C-contiguous data, sliced rows and negative row strides alike, one compiled
                specialization per dtype).  ``y`` is the output (None: statistics only),
                ``r`` the residual and ``s`` where ``s = x + r`` goes (both None, or both
                given: then s is normalized).
``w, b``        weight and bias, flat arrays of ``cols`` elements in the work type, or None.
``stats``       None, or ``(mean, second)``: float64 arrays, one element per row, that
                receive the mean (None for RMSNorm) and the variance (LayerNorm) or the mean
                square (RMSNorm); ``rstd = 1/sqrt(second + eps)``.
``eps, centered``  eps; LayerNorm (True) or RMSNorm (False).
``rows, cols``  the number of rows (where a kernel takes it) and the row length.

Which of r, w, b, stats and y exist is a compile-time fact (None is a type of its own,
see ``_elements``).  Every variant compiles separately (seconds each), so the fronts pass
scratch rows for statistics nobody asked for (``numba_ln._stand_ins``); None stays valid.
Rows are normalized in the work type (float32 for float32 data):

    y = ((x - mean_hi) - mean_lo) * float32(rstd) * w + b

where ``mean_hi = float32(mean)`` and ``mean_lo = float32(mean - mean_hi)``.  The first
difference is exact far from zero (Sterbenz), so the float64 mean survives: the result
keeps ~4 float32 roundings of |y|.  Rows whose rstd leaves float32's range are normalized
in float64.
"""
import numpy as np
from numba import prange

from .. import _config
from ._backward_elements import clear
from ._elements import is_bfloat16, smaller, store_stats, work
from ._indirect import block_key, call_block
from ._jit import kernel
from ._moments import (PIECE, finish_row, piece_sums, row_shift, row_sums, rstd_of, settled,
                       stats_of_totals)
from ._named_calls import named_call
from ._pointers import address, advance, prefetch_line, row_address
from ._rowops import fits_float32, normalize_span, normalizer, source
from ._stream import (fits_row_buffer, line_lanes, row_buffer, stream_end, stream_fence,
                      stream_row, stream_state)
from ._sweep import sweep

PREFETCH_MAX_ROW_BYTES = _config.PREFETCH_MAX_ROW_BYTES

# The steps a row goes through are functions of their own, each compiled once per array
# types and shared by every kernel variant with those types (inlined into each variant, a
# variant took 6 s to compile), taking row pointers (_pointers: one argument word per
# array instead of seven).  None uses Numba's reference counting (_nrt=False): they
# allocate nothing, and a row loop that passes arrays to inlined helpers otherwise pays
# two atomic updates per array per row (64 instead of 23 ns per 64-element row).


@kernel(_nrt=False)
def row_stats(s, x, r, cols, centered):
    """(mean, second) of a row summed on its own (forming s = x + r if r is given)."""
    k = row_shift(x, r, cols, centered)
    t1, t2 = row_sums(x, r, s, cols, k, centered)
    # (a call of row_finish, not finish_row inlined: the fallbacks compile once, not in
    # every function that finishes a row; 0.3 s of a cold first call)
    return row_finish(source(s, x, r), cols, k, t1, t2, centered)


@kernel(_nrt=False)
def row_finish(src, cols, k, t1, t2, centered):
    """(mean, second) of the row src[:cols] from its totals about k."""
    return finish_row(src, cols, k, t1, t2, centered)


@kernel(_nrt=False)
def row_end(y, src, cols, mean, rstd, w, b):
    """The row src[:cols] normalized into y (row pointers; y None: nothing)."""
    if y is not None:  # (decided while compiling: Numba prunes the branch for None)
        normalize_span(y, src, cols, mean, rstd, w, b)


@kernel(inline="always")
def lone_row_stats(scratch_y, scratch_src, s, x, r, w, b, cols, centered):
    """(mean, second) of a row summed without a row before it in the same sweep: a task's
    first row, or one after a row normalized in float64.  bfloat16 rows that fit the
    scratch rows are summed by the sweep that sums every other row, while it normalizes
    a zeroed scratch row into another (scratch_y: y's scratch row, or IN_PLACE or None as
    y is, so that the sweep is the compiled code the other rows run): LLVM vectorizes
    row_stats' summing loop and the sweep's with the lanes in another order at some
    widths for bfloat16 (100, 300 and 1000 seen), so a row's last bit depended on whether
    a task started there, and a dask chunk's first rows differed from the NumPy call on
    the whole array (tests/test_task_split.py).  Not for float32, float64 or float16,
    whose loops LLVM vectorizes alike (that test), nor for longer rows: their rows sum
    alone, and the caveat stays (README, Same bits)."""
    if is_bfloat16(x) and fits_row_buffer(x, cols):
        clear(scratch_src, cols)  # (zeros: no subnormal or NaN arithmetic)
        k = row_shift(x, r, cols, centered)
        t1, t2 = sweep_row(scratch_y, scratch_src, normalizer(scratch_src, 0.0, 0.0), w, b,
                           (x, r, s), cols, k, centered)
        return row_finish(source(s, x, r), cols, k, t1, t2, centered)
    return row_stats(s, x, r, cols, centered)


@kernel(inline="always")
def sweep_row(y, src, terms, w, b, following, cols, k, centered):
    """_sweep.sweep over a whole row, piece by piece, the totals added in order."""
    x, r, s = following
    t1 = t2 = 0.0
    for lo in range(0, cols, PIECE):
        p1, p2 = sweep(advance(y, lo), advance(src, lo), terms, advance(w, lo), advance(b, lo),
                       (advance(x, lo), advance(r, lo), advance(s, lo)),
                       smaller(cols, lo + PIECE) - lo, k, centered)
        t1 += p1
        t2 += p2
    return t1, t2


@kernel(inline="always")
def fetch_row(xp, rp, cols):
    """Prefetch hints for every cache line of a row of x (and of r): rows_block asks for
    the row after next when rows are short (_config.PREFETCH_MAX_ROW_BYTES)."""
    for c in range(0, cols, line_lanes(xp)):
        prefetch_line(advance(xp, c))
        prefetch_line(advance(rp, c))


@kernel(_nrt=False)
def rows_block(arrays, norm, stats, cols, first, last, stream):
    """Rows first..last-1, the body of every row kernel: the first row summed on its own,
    then one fused sweep per row (_sweep: row i normalized while row i+1 is summed).
    stream: each row of y and of s is written to a scratch row, then streamed past the
    caches (_stream; the caller checks that the rows fit the scratch rows).  s = x + r is
    formed while its row is summed and normalized by the next sweep, so s has two scratch
    rows, used in turn: the one being normalized and the one being formed."""
    y, s, x, r = arrays
    w, b, eps, centered = norm
    wp, bp = address(w, 0), address(b, 0)
    y_scratch, s_scratch, s_other = row_buffer(y), row_buffer(s), row_buffer(s)
    y_stream, s_stream = stream_state(y), stream_state(s)
    sp = s_scratch if stream else row_address(s, first, 0)  # (where row i of s is formed)
    xp, rp = row_address(x, first, 0), row_address(r, first, 0)
    lone_src = row_buffer(source(sp, xp, rp))  # (lone_row_stats' scratch rows)
    mean, second = lone_row_stats(y_scratch, lone_src, sp, xp, rp, wp, bp, cols, centered)
    # (a row's bytes, cols * itemsize, as cols * 64 / line_lanes: no itemsize helper)
    ahead = cols * 64 <= PREFETCH_MAX_ROW_BYTES * line_lanes(xp)
    for i in range(first, last):
        if stream:  # (row i of s, formed in the scratch row sp: sent on, and read below)
            s_stream = stream_row(row_address(s, i, 0), sp, cols, s_stream)
        store_stats(stats, i, mean, second)
        rstd = rstd_of(second, eps)
        yp = row_address(y, i, 0)
        written = y_scratch if stream else yp  # (where the kernel writes row i of y)
        src = source(sp, xp, rp)
        if i + 1 == last:
            row_end(written, src, cols, mean, rstd, wp, bp)
        else:
            if stream:
                sp, s_other = s_other, sp
            else:
                sp = row_address(s, i + 1, 0)
            xp, rp = row_address(x, i + 1, 0), row_address(r, i + 1, 0)
            if ahead and i + 2 < last:  # (short rows: the row after next, line by line)
                fetch_row(row_address(x, i + 2, 0), row_address(r, i + 2, 0), cols)
            if fits_float32(rstd):
                k = row_shift(xp, rp, cols, centered)
                t1, t2 = sweep_row(written, src, normalizer(src, mean, rstd), wp, bp,
                                   (xp, rp, sp), cols, k, centered)
                # (the common case inline: the call to row_finish cost a 64-element row
                # ~10%, an RMSNorm one ~25%, one thread)
                if settled(source(sp, xp, rp), cols, t1, t2, centered):
                    mean, second = stats_of_totals(cols, k, t1, t2, centered)
                else:
                    mean, second = row_finish(source(sp, xp, rp), cols, k, t1, t2, centered)
            else:  # normalized in float64 (see _rowops): the next row is summed on its own
                row_end(written, src, cols, mean, rstd, wp, bp)
                if stream:  # (sent on first: lone_row_stats normalizes a dummy row into
                    y_stream = stream_row(yp, written, cols, y_stream)  # the scratch row)
                mean, second = lone_row_stats(y_scratch, lone_src, sp, xp, rp, wp, bp, cols,
                                              centered)
                continue
        if stream:
            y_stream = stream_row(yp, written, cols, y_stream)
    if stream:
        stream_end(y_stream)
        stream_end(s_stream)
        stream_fence()


# A serial call runs rows_block itself (one block: rows 0..rows-1): from Python, from the
# small kernels through call_rows_block, which calls rows_block's own code by name
# (_named_calls: a direct call re-optimized and re-emitted all of rows_block's machine
# code in every small-kernel variant, 0.2-0.4 s of its compiling), or from a user's @njit
# code directly (_njit/core.py: a copy in the user's function, which is cached whole).
# Its callers pass `first` as np.int64(0), not 0: a literal 0 is a Numba type of its own,
# and rows_block would compile once more for it.
FIRST_ROW = np.int64(0)
call_rows_block = named_call(rows_block)


@kernel(parallel=True)
def rows_parallel(block, key, arrays, norm, stats, rows, cols, per_task, stream):
    """Rows in parallel, per_task consecutive rows per task (stream: rows_block's), each
    task a call of rows_block's compiled code at address block (_indirect: key names the
    types it was compiled for).  Returns 0, or, having run nothing, the key of the block
    this kernel calls when key is another."""
    # (unpacked outside the loop: Numba's parallel loop cannot take a tuple of row views)
    y, s, x, r = arrays
    w, b, eps, centered = norm
    # (the types of the call below: first and last are int64, as rows is)
    own = block_key(((y, s, x, r), (w, b, eps, centered), stats, cols, rows, rows, stream))
    if key != own:
        return own
    for t in prange((rows + per_task - 1) // per_task):
        first = np.int64(t) * per_task  # prange's index is unsigned
        call_block(block, ((y, s, x, r), (w, b, eps, centered), stats, cols, first,
                           smaller(rows, first + per_task), stream))
    return 0


# --- few, long rows ---------------------------------------------------------------------------

@kernel(_nrt=False)
def split_shift(x, r, cols, centered, i):
    """Row i's shift, as float64 (exact for float32 shifts too)."""
    return 1.0 * row_shift(row_address(x, i, 0), row_address(r, i, 0), cols, centered)


@kernel(_nrt=False)
def split_sums(s, x, r, partial, shifts, cols, pieces, centered, t):
    """Totals of piece t (row t // pieces): _moments.row_sums' pieces, one per task."""
    i, p = divmod(t, pieces)
    lo = p * PIECE
    k = work(row_address(x, i, 0), shifts[i])
    partial[t, 0], partial[t, 1] = piece_sums(row_address(x, i, 0), row_address(r, i, 0),
                                              row_address(s, i, 0), k, lo,
                                              smaller(cols, lo + PIECE), centered)


@kernel(_nrt=False)
def split_finish(s, x, r, partial, shifts, cols, pieces, centered, i):
    """(mean, second) of row i from its pieces' totals, added in order (as row_sums)."""
    sp, xp, rp = row_address(s, i, 0), row_address(x, i, 0), row_address(r, i, 0)
    t1 = t2 = 0.0
    for p in range(pieces):
        t1 += partial[i * pieces + p, 0]
        t2 += partial[i * pieces + p, 1]
    return row_finish(source(sp, xp, rp), cols, work(xp, shifts[i]), t1, t2, centered)


@kernel(_nrt=False)
def split_normalize(y, s, x, r, w, b, center, rstd, cols, pieces, t):
    if y is not None:  # (pruned while compiling for None, as in row_end)
        i, p = divmod(t, pieces)
        lo = p * PIECE
        src = source(row_address(s, i, lo), row_address(x, i, lo), row_address(r, i, lo))
        normalize_span(row_address(y, i, lo), src, smaller(cols, lo + PIECE) - lo, center[i],
                       rstd[i], address(w, lo), address(b, lo))


@kernel(parallel=True)
def rows_split(arrays, norm, stats, rows, cols):
    """Few, long rows: each row's pieces (PIECE elements) are summed in parallel, their
    totals added in order, as _moments.row_sums adds them, then normalized in parallel."""
    y, s, x, r = arrays
    w, b, eps, centered = norm
    pieces = (cols + PIECE - 1) // PIECE
    tasks = rows * pieces
    partial = np.empty((tasks, 2))
    # The shifts are taken before any piece is summed: with s written over r (IN_PLACE),
    # piece 0's task overwrites the head of r that other pieces would read their shift from.
    shifts = np.empty(rows)
    for i in range(rows):
        shifts[i] = split_shift(x, r, cols, centered, i)
    for t in prange(tasks):
        split_sums(s, x, r, partial, shifts, cols, pieces, centered, np.int64(t))
    center = np.empty(rows)
    rstd = np.empty(rows)
    for i in range(rows):
        mean, second = split_finish(s, x, r, partial, shifts, cols, pieces, centered, i)
        store_stats(stats, i, mean, second)
        center[i] = mean
        rstd[i] = rstd_of(second, eps)
    for t in prange(tasks):
        split_normalize(y, s, x, r, w, b, center, rstd, cols, pieces, np.int64(t))
