"""Narrow rows (at most NARROW_ROW_BYTES) in blocks: the per-row scalar work of a block's
rows done side by side.

A 64-element row of float32 is 4 vectors of data, yet rows_block spends ~24 ns on it (one
thread, in cache): its statistics are finished in float64 (three divisions and a square
root, ~25 cycles of divider) and each row waits for the previous row's finish before its
sweep can start.  Here BLOCK rows go through three passes:

1. sums: each row's shift and shifted sums (row_shift, row_sums), kept on the stack;
2. finish: mean, variance and rstd of all the block's rows in one loop without calls or
   branches, which LLVM runs in float64 vector lanes (8 rows a division);
3. normalize: each row from L1 with its statistics (put, as rows_block's sweeps).

The bits are rows_block's: the same shift and sums, the same float64 formulas
(_moments.stats_of_totals, rstd_of: elementwise, so a lane gives what a scalar gives),
the same fallbacks for rows the formulas do not settle (row_finish, taken row by row),
and the same normalize.  The tests compare the two bitwise.  bfloat16 layer_norm/rms_norm
excepted at most widths (4-255 elements but 64k to 64k + 3): LLVM vectorizes the float32
sums of their widened elements in other lanes here than in rows_block's sweep, so about a
third of the rows' statistics differ in the last bit (README, Same bits).

Measured, float32, one thread, in cache, ns a row (rows_block -> narrow_block): (4096, 32)
20.0 -> 13.6, (4096, 64) 22.0 -> 17.8, (4096, 100) 33.8 -> 28.0, (4096, 128) 27.2 ->
26.4; RMSNorm (4096, 64) 14.3 -> 11.1; float64 (4096, 64) 25.4 -> 23.0.  Through the front,
2 threads, medians of interleaved rounds: layer_norm (65536, 64) 1.12-1.18x, (131072, 32)
1.39x, (16384, 128) 1.05x; rms_norm (131072, 32) 1.40x, (65536, 64) 1.03x.  The fused forms
lose here once their arrays come from memory (add_rms_norm (65536, 64) 0.89x: rows_block's
sweeps overlap one row's loads with the previous row's stores), so the engine takes this
kernel for rows of at most NARROW_ROW_BYTES, and for the fused forms only while their
arrays are at most NARROW_FUSED_MAX_BYTES (_engine.run_rows).

A row here is one chunk (NARROW_ROW_BYTES of 16-bit data <= CHUNK), summed by one call of
_moments' chunk sums (row_sums' piece and chunk loops around it, and the call of
head_mean, cost more than the sums on such a row: short_row_shift takes the tree inline).
On the Zen 4 machine, one thread, in cache: (4096, 64) 28.5 -> 24.4 ns a row; that also
made 128 columns pay (_config.NARROW_ROW_BYTES).
"""
import math

import numpy as np
from numba import prange

from .. import _config
from ._elements import is_narrow, smaller, store_stats, work
from ._indirect import block_key, call_block
from ._jit import kernel
from ._moments import chunk_stats, rstd_of, settled, short_row_shift
from ._pointers import address, row_address, stack_doubles
from ._rowops import fits_float32, normalizer, source
from ._sweep import put
from .rows import row_end, row_finish

BLOCK = 16
GAIN_MAX = _config.SHIFT_GAIN_MAX
TINY = _config.NARROW_TINY
assert _config.NARROW_ROW_BYTES // 2 <= _config.CHUNK  # (a narrow row is one chunk)


@kernel(inline="always")
def finish_rows(block, n, cols, eps, centered, narrow):
    """Pass 2: (mean, second, rstd) of rows 0..n-1 of the block from their (shift, t1, t2),
    as _moments.stats_of_totals and rstd_of give them; returns how many rows the formulas
    do not settle (_moments.settled), whose results the caller replaces."""
    shift, t1s, t2s, means, seconds, rstds = block
    unsettled = 0
    for j in range(n):
        t1 = t1s[j]
        t2 = t2s[j]
        ok = (TINY <= t2) & (t2 < math.inf) if narrow else True
        if centered:
            m2 = t2 - t1 * (t1 / cols)
            ok = ok & (t2 <= GAIN_MAX * m2)
            var = m2 / cols
            var = 0.0 if var < 0.0 else var
            mean = shift[j] + t1 / cols
        else:
            var = t2 / cols
            mean = 0.0
        unsettled += 0 if ok else 1
        means[j] = mean
        seconds[j] = var
        rstds[j] = rstd_of(var, eps)
    return unsettled


@kernel(_nrt=False)
def narrow_block(arrays, norm, stats, cols, first, last):
    """Rows first..last-1 (rows_block's arguments), BLOCK rows at a time."""
    y, s, x, r = arrays
    w, b, eps, centered = norm
    wp, bp = address(w, 0), address(b, 0)
    block = (stack_doubles(BLOCK), stack_doubles(BLOCK), stack_doubles(BLOCK),
             stack_doubles(BLOCK), stack_doubles(BLOCK), stack_doubles(BLOCK))
    shift, t1s, t2s, means, seconds, rstds = block
    for start in range(first, last, BLOCK):
        n = smaller(BLOCK, last - start)
        for j in range(n):
            sp, xp, rp = (row_address(s, start + j, 0), row_address(x, start + j, 0),
                          row_address(r, start + j, 0))
            k = short_row_shift(xp, rp, cols, centered)
            shift[j] = k
            # (row_sums' totals: a row of at most CHUNK elements is one chunk, and its
            # piece and chunk loops cost more than the sums here)
            t1s[j], t2s[j] = chunk_stats(xp, rp, sp, k, np.uint64(0), np.uint64(cols),
                                         centered)
        if finish_rows(block, n, cols, eps, centered, is_narrow(x)):
            for j in range(n):
                src = source(row_address(s, start + j, 0), row_address(x, start + j, 0),
                             row_address(r, start + j, 0))
                if not settled(src, cols, t1s[j], t2s[j], centered):
                    means[j], seconds[j] = row_finish(src, cols, work(src, shift[j]), t1s[j],
                                                      t2s[j], centered)
                    rstds[j] = rstd_of(seconds[j], eps)
        for j in range(n):
            i = start + j
            store_stats(stats, i, means[j], seconds[j])
            yp = row_address(y, i, 0)
            src = source(row_address(s, i, 0), row_address(x, i, 0), row_address(r, i, 0))
            # (_rowops.normalize_span's float32 branch with its loop inline: its call of
            # normalize_chunk cost 2-9% here, one thread, (4096, 32)-(4096, 64))
            if fits_float32(rstds[j]):
                hi, low, scale = normalizer(src, means[j], rstds[j])
                for c in range(np.uint64(cols)):
                    put(yp, src, hi, low, scale, wp, bp, c)
            else:
                row_end(yp, src, cols, means[j], rstds[j], wp, bp)


@kernel(parallel=True)
def narrow_parallel(block, key, arrays, norm, stats, rows, cols, per_task):
    """rows_parallel with narrow_block (its compiled code at address block: _indirect):
    per_task consecutive rows per task.  Returns 0, or, having run nothing, the key of the
    block this kernel calls when key is another."""
    y, s, x, r = arrays
    w, b, eps, centered = norm
    # (the types of the call below: first and last are int64, as rows is)
    own = block_key(((y, s, x, r), (w, b, eps, centered), stats, cols, rows, rows))
    if key != own:
        return own
    for t in prange((rows + per_task - 1) // per_task):
        first = np.int64(t) * per_task  # prange's index is unsigned
        call_block(block, ((y, s, x, r), (w, b, eps, centered), stats, cols, first,
                           smaller(rows, first + per_task)))
    return 0
