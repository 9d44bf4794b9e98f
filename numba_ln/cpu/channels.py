"""Kernels for a normalized axis that is not innermost, e.g. axis=1 of an (N, C, H, W)
array (ConvNeXt's channels-first LayerNorm) or axis=-1 of a Fortran-ordered matrix.

The data is seen as (outer, chans, inner) with the inner axis contiguous; element
(o, c, p) is ``buf[start + o*outer_stride + c*chan_stride + p]``, so views are
``(buf, start, outer_stride, chan_stride)``.  Each of the ``outer * inner`` rows runs
across the channels with a large stride, so reading a row at a time would touch one
element per cache line.  Instead a task takes a tile of ``tile`` neighbouring positions
and sweeps the channels, updating all the tile's statistics with unit-stride (SIMD) loops.
The tile (chans x tile elements) is sized to stay in L2, so the sweeps (head, shifted sums,
normalize) read memory once.  The maths per position is ``_moments``'s: shifted sums in
the work type over blocks of ``CHUNK_CHANNELS`` channels, added into float64 totals, a
second sweep about the mean where the head shift was poor, float64 where float32's range
was exceeded.  No transposed copy.  Other arguments as in rows.py (w, b: one value per
channel; stats: one value per position, in (outer, inner) order), grouped as there:
``y, x``, ``norm = (w, b, eps, centered)``, ``stats``, then the shape.
"""
import math

import numpy as np
from numba import prange

from .. import _config
from ._elements import affine, exact_sub, is_narrow, smaller, store_stats, work
from ._indirect import block_key, call_block
from ._jit import kernel
from ._moments import rstd_of
from ._pointers import address
from ._storage import empty_work, load, store, work_dtype
from ._stream import row_buffer, stream_end, stream_fence, stream_row, stream_state

HEAD = _config.HEAD
GAIN_MAX = _config.SHIFT_GAIN_MAX
TINY = _config.NARROW_TINY
RSTD_MAX = _config.NARROW_RSTD_MAX
# Channels summed into work-type partial sums before the float64 totals: each position's
# partial sum is a sequence of this many terms, within _moments.CHUNK's bound.
CHUNK_CHANNELS = 8


@kernel(inline="always")
def tile_head(x, base, step, chans, width, k):
    """k[:width] = mean over the first HEAD channels, per position (work type)."""
    h = smaller(chans, HEAD)
    n = np.uint64(width)
    for p in range(n):
        k[p] = load(x, base + p)
    for c in range(1, h):
        row = base + np.uint64(c) * step
        for p in range(n):
            k[p] += load(x, row + p)
    for p in range(n):
        k[p] = work(x, k[p] / h)


@kernel(inline="always")
def tile_shifted_sums(x, base, step, chans, width, k, a1, a2, s1, s2):
    """s1[p], s2[p] = float64 sums of (x - k[p]) and its square over the channels."""
    n = np.uint64(width)
    for p in range(n):
        s1[p] = 0.0
        s2[p] = 0.0
    c = 0
    while c < chans:
        end = smaller(chans, c + CHUNK_CHANNELS)
        for p in range(n):
            a1[p] = work(x, 0.0)
            a2[p] = work(x, 0.0)
        while c < end:
            row = base + np.uint64(c) * step
            for p in range(n):
                d = exact_sub(load(x, row + p), k[p])
                a1[p] += d
                a2[p] += d * d
            c += 1
        for p in range(n):
            s1[p] += a1[p]
            s2[p] += a2[p]


@kernel(inline="always")
def tile_squares(x, base, step, chans, width, a2, s2):
    """s2[p] = float64 sum of x**2 over the channels (RMSNorm)."""
    n = np.uint64(width)
    for p in range(n):
        s2[p] = 0.0
    c = 0
    while c < chans:
        end = smaller(chans, c + CHUNK_CHANNELS)
        for p in range(n):
            a2[p] = work(x, 0.0)
        while c < end:
            row = base + np.uint64(c) * step
            for p in range(n):
                v = load(x, row + p)
                a2[p] += v * v
            c += 1
        for p in range(n):
            s2[p] += a2[p]


@kernel(inline="always")
def tile_wide(x, base, step, chans, width, s1, s2, centered):
    """float64 sums about channel 0 (centered) or of squares: float64 data's exactness for
    a tile that left float32's range."""
    n = np.uint64(width)
    for p in range(n):
        s1[p] = 0.0
        s2[p] = 0.0
    for c in range(chans):
        row = base + np.uint64(c) * step
        for p in range(n):
            v = 1.0 * load(x, row + p)
            if centered:
                v = exact_sub(v, 1.0 * load(x, base + p))
                s1[p] += v
            s2[p] += v * v


# tile_moments and tile_normalize are compiled on their own (once per x dtype, and per
# y/x/w/b types), not inlined into tile_task: tile_task has a variant per combination of
# y, w, b and stats types, and with both inlined each variant took 2.6-4.4 s to compile
# (10 in the test suite).  One call per tile of chans x tile elements costs nothing
# measurable.
@kernel(_nrt=False)
def tile_moments(x, base, step, chans, width, centered, k, a1, a2, s1, s2, mean, second):
    """mean[:width], second[:width] (variance, or mean square) per position."""
    n = np.uint64(width)
    if centered:
        tile_head(x, base, step, chans, width, k)
        tile_shifted_sums(x, base, step, chans, width, k, a1, a2, s1, s2)
        poor = False
        for p in range(n):
            m2 = s2[p] - s1[p] * (s1[p] / chans)
            poor |= not s2[p] <= GAIN_MAX * m2
        if poor:  # some position's head shift was poor: every shift becomes its mean
            for p in range(n):
                k[p] = work(x, k[p] + s1[p] / chans)
            tile_shifted_sums(x, base, step, chans, width, k, a1, a2, s1, s2)
    else:
        tile_squares(x, base, step, chans, width, a2, s2)
    if is_narrow(x):
        wide = False
        for p in range(n):
            wide |= not (TINY <= s2[p] < math.inf)
        if wide:
            tile_wide(x, base, step, chans, width, s1, s2, centered)
            for p in range(n):
                k[p] = load(x, base + p) if centered else 0.0
    for p in range(n):
        if centered:
            mean[p] = k[p] + s1[p] / chans
            var = (s2[p] - s1[p] * (s1[p] / chans)) / chans
            second[p] = var if var >= 0.0 or var != var else 0.0
        else:
            mean[p] = 0.0
            second[p] = s2[p] / chans


@kernel(_nrt=False)
def tile_normalize(y, y_base, y_step, x, base, step, chans, width, mean, rstd, hi, low,
                   scale, w, b, stream):
    """The tile's positions of every channel normalized into y (stream: each channel's
    positions written to a scratch row, then streamed past the caches: _stream)."""
    n = np.uint64(width)
    narrow = True
    for p in range(n):
        narrow &= rstd[p] < RSTD_MAX
    if narrow:
        for p in range(n):
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
        else:
            for p in range(n):
                t = exact_sub(1.0 * load(x, src + p), mean[p]) * rstd[p]
                store(written, p, affine(t, w, b, c))
        if stream:
            y_stream = stream_row(to, written, n, y_stream)
    if stream:
        stream_end(y_stream)
        stream_fence()


@kernel(_nrt=False)
def tile_task(y, x, norm, stats, chans, inner, tile, t, buffers, stream):
    """Statistics and normalization of tile t (positions p0:p0+width of outer index o).
    (y an argument of its own: Numba drops the ``y is not None`` branch for an absent y
    only when y is an argument.)"""
    w, b, eps, centered = norm
    scratch, wide_scratch = buffers  # (work type, float64)
    blocks = (inner + tile - 1) // tile
    o, q = divmod(t, blocks)
    p0 = q * tile
    width = smaller(tile, inner - p0)
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


@kernel()
def channels_serial(y, x, norm, stats, outer, chans, inner, tile):
    buffers = (empty_work(x[0], (6, tile)), np.empty((4, tile)))
    for t in range(outer * ((inner + tile - 1) // tile)):
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
    for t in prange(outer * ((inner + tile - 1) // tile)):
        buffers = (empty_work(x[0], (6, tile)), np.empty((4, tile)))
        # prange's index is unsigned; int64 keeps the index arithmetic integral
        call_block(block, (y, x, norm, stats, chans, inner, tile, np.int64(t), buffers,
                           stream))
    return 0


def tile_task_args(y, x, norm, stats, chans, inner, tile, stream):
    """Python values of the types channels_parallel passes tile_task (_indirect)."""
    return (y, x, norm, stats, chans, inner, tile, np.int64(0),
            (np.empty((6, 1), work_dtype(x[0].dtype)), np.empty((4, 1))), stream)
