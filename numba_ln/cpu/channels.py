"""Kernels for a normalized axis that is not innermost, e.g. axis=1 of an (N, C, H, W)
array (ConvNeXt's channels-first LayerNorm) or axis=-1 of a Fortran-ordered matrix.

The data is seen as (outer, chans, inner) with the inner axis contiguous; element
(o, c, p) is ``buf[start + o*outer_stride + c*chan_stride + p]``, so views are
``(buf, start, outer_stride, chan_stride)``.  Each of the ``outer * inner`` rows runs
across the channels with a large stride, so reading a row at a time would touch one
element per cache line.  Instead a task takes a tile of ``tile`` neighbouring positions
and sweeps the channels, updating all the tile's statistics with unit-stride (SIMD) loops.
The tile (chans x tile elements) is sized to stay in L2, so the sweeps (head, shifted sums,
normalize) read memory once.  The statistics are _channel_stats.py's (``_moments``'s
maths: shifted sums in the work type over blocks of channels, added into float64 totals,
a second sweep about the mean where the head shift was poor, float64 where float32's
range was exceeded).  No transposed copy.  Other arguments as in rows.py (w, b: one value per
channel; stats: one value per position, in (outer, inner) order), grouped as there:
``y, x``, ``norm = (w, b, eps, centered)``, ``stats``, then the shape.
"""
import numpy as np
from numba import prange

from ._channel_stats import tile_moments
from ._elements import affine, exact_sub, smaller, store_stats, work
from ._indirect import block_key, call_block
from ._jit import kernel
from ._moments import rstd_of
from ._pointers import address
from ._rowops import fits_float32
from ._storage import empty_work, load, store, work_dtype
from ._stream import (line_lanes, line_offset, row_buffer, stream_end, stream_fence, stream_row,
                      stream_state)



# tile_moments and tile_normalize are compiled on their own (once per x dtype, and per
# y/x/w/b types), not inlined into tile_task: tile_task has a variant per combination of
# y, w, b and stats types, and with both inlined each variant took 2.6-4.4 s to compile
# (10 in the test suite).  One call per tile of chans x tile elements costs nothing
# measurable.
@kernel(_nrt=False)
def tile_normalize(y, y_base, y_step, x, base, step, chans, width, mean, rstd, hi, low,
                   scale, w, b, stream):
    """The tile's positions of every channel normalized into y (stream: each channel's
    positions written to a scratch row, then streamed past the caches: _stream), each
    position as a float32 row is, or in float64 where its rstd leaves float32's range
    (_rowops), position by position."""
    n = np.uint64(width)
    narrow = True
    for p in range(n):
        narrow &= fits_float32(rstd[p])
        hi[p] = work(x, mean[p])
        low[p] = work(x, mean[p] - hi[p])
        scale[p] = work(x, rstd[p])
    scratch, y_stream = row_buffer(y), stream_state(y)
    for c in range(chans):
        src = base + np.uint64(c) * step
        to = address(y, y_base + np.uint64(c) * y_step)
        written = scratch if stream else to
        if narrow:
            for p in range(n):
                t = exact_sub(exact_sub(load(x, src + p), hi[p]), low[p]) * scale[p]
                store(written, p, affine(t, w, b, c))
        else:  # (some position's rstd is out of float32's range: a branch an element)
            for p in range(n):
                if fits_float32(rstd[p]):
                    t = exact_sub(exact_sub(load(x, src + p), hi[p]), low[p]) * scale[p]
                    store(written, p, affine(t, w, b, c))
                else:
                    t = exact_sub(1.0 * load(x, src + p), mean[p]) * rstd[p]
                    store(written, p, affine(t, w, b, c))
        if stream:
            y_stream = stream_row(to, written, n, y_stream)
    if stream:
        stream_end(y_stream)
        stream_fence()


@kernel(inline="always")
def _lead(v, o, tile):
    """The positions before the first 64-byte line boundary of view v's rows for outer
    index o (all its channel rows alike when the channel stride is whole lines); 0 when
    the tiles are not whole lines, or v's address is not a multiple of its element."""
    lanes = line_lanes(address(v[0], 0))
    offset = line_offset(address(v[0], v[1] + o * v[2]))
    return 0 if tile % lanes != 0 or offset <= 0 else lanes - offset


@kernel(inline="always")
def tile_bounds(lead, lanes, tile, inner, q):
    """(p0, end) of tile q of a row of inner positions: tiles of `tile` positions from the
    first line boundary of y (lead positions in), the first one shortened to end there."""
    first = tile if lead == 0 else lead + tile - lanes
    p0 = 0 if q == 0 else first + (q - 1) * tile
    end = first if q == 0 else p0 + tile
    return p0, smaller(end, inner)


@kernel(inline="always")
def tile_blocks(inner, tile):
    """Tiles per outer index: one more than whole tiles of inner need, for the shortened
    first tile (the spare one is empty when there is none)."""
    return (inner + tile - 1) // tile + 1


@kernel(_nrt=False, link_late=True)
def tile_task(y, x, norm, stats, chans, inner, tile, t, buffers, stream):
    """Statistics and normalization of tile t (positions p0:end of outer index o).  The
    tiles start where y's rows cross a 64-byte line (x's for statistics only): each
    channel's segment is whole lines, streamed or stored without a partial line at either
    end.  NumPy places large arrays 16 bytes past a page, and tiles from position 0 then
    cost a partial line at both ends of every segment: layer_norm(out=) axis=1 of (32, 256,
    56, 56) float32, 2 threads, 10.1-11.4 ms into such an out against 7.3-8.0 into one on
    a line, (16, 1024, 1024) 12.3-15.7 against 5.7-6.4.  Each position's results are its
    own (tile_moments, tile_normalize), so where the tiles start changes no bit.
    (y an argument of its own: Numba drops the ``y is not None`` branch for an absent y
    only when y is an argument.)"""
    w, b, eps, centered = norm
    scratch, wide_scratch = buffers  # (work type, float64)
    o, q = divmod(t, tile_blocks(inner, tile))
    lead = _lead(y, o, tile) if y is not None else _lead(x, o, tile)
    p0, end = tile_bounds(lead, line_lanes(address(x[0], 0)), tile, inner, q)
    if p0 >= end:
        return
    width = end - p0
    base = np.uint64(x[1] + o * x[2] + p0)
    step = np.uint64(x[3])
    k, a1, a2, hi, low, scale = (scratch[0], scratch[1], scratch[2], scratch[3],
                                 scratch[4], scratch[5])
    s1, s2, mean, second = wide_scratch[0], wide_scratch[1], wide_scratch[2], wide_scratch[3]
    tile_moments(x[0], base, step, chans, width, centered, k, a1, a2, s1, s2, mean, second)
    for p in range(width):
        store_stats(stats, o * inner + p0 + p, mean[p], second[p])
        second[p] = rstd_of(second[p], eps)  # second becomes rstd
    if y is not None:
        tile_normalize(y[0], np.uint64(y[1] + o * y[2] + p0), np.uint64(y[3]), x[0], base, step,
                       chans, width, mean, second, hi, low, scale, w, b, stream)


@kernel(link_late=True)
def channels_serial(y, x, norm, stats, outer, chans, inner, tile):
    buffers = (empty_work(x[0], (6, tile)), np.empty((4, tile)))
    for t in range(outer * tile_blocks(inner, tile)):
        tile_task(y, x, norm, stats, chans, inner, tile, t, buffers, np.bool_(False))


@kernel(parallel=True)
def channels_parallel(block, key, y, x, norm, stats, outer, chans, inner, tile, stream):
    """The tiles in parallel, each task a call of tile_task's compiled code at address
    block (_indirect).  Returns 0, or, having run nothing, the key of the block this
    kernel calls when key is another."""
    # (the types of the call below: t is int64, as inner is; buffers of its types)
    own = block_key((y, x, norm, stats, chans, inner, tile, inner,
                     (empty_work(x[0], (6, 1)), np.empty((4, 1))), stream))
    if key != own:
        return own
    for t in prange(outer * tile_blocks(inner, tile)):
        buffers = (empty_work(x[0], (6, tile)), np.empty((4, tile)))
        # prange's index is unsigned; int64 keeps the index arithmetic integral
        call_block(block, (y, x, norm, stats, chans, inner, tile, np.int64(t), buffers,
                           stream))
    return 0


def tile_task_args(y, x, norm, stats, chans, inner, tile, stream):
    """Python values of the types channels_parallel passes tile_task (_indirect)."""
    return (y, x, norm, stats, chans, inner, tile, np.int64(0),
            (np.empty((6, 1), work_dtype(x[0].dtype)), np.empty((4, 1))), stream)
