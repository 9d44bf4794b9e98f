"""Kernels for a normalized axis that is not innermost, e.g. axis=1 of an (N, C, H, W)
array (ConvNeXt's channels-first LayerNorm) or axis=-1 of a Fortran-ordered matrix.

The data is seen as (outer, chans, inner) with the inner axis contiguous; element
(o, c, p) is ``buf[start + o*outer_stride + c*chan_stride + p]``.  Each of the
``outer * inner`` rows runs across the channels with a large stride, so reading a row at a
time would touch one element per cache line.  Instead a task takes a tile of ``tile``
neighbouring positions and sweeps the channels, updating all the tile's statistics with
unit-stride (SIMD) loops.  The tile (chans x tile elements) is sized to stay in L2, so the
two sweeps (shifted sums, normalize) read memory once; the maths per position is that of
``_moments.block_moments``, exact in float64.  No transposed copy.
"""
import numpy as np
from numba import prange

from .. import _config
from ._jit import kernel
from ._moments import normalizer


@kernel(fastmath=_config.STATS_FASTMATH)
def tile_moments(x, base, chans, chan_stride, width, mean, m2):
    """mean[:width], m2[:width] of the columns x[base + c*chan_stride + p], c < chans.

    The shifted single-pass sums of ``_moments.block_moments``, one column per position p,
    shifted by channel 0 (so constant columns are exact); the inner loops run along p with
    unit stride and vectorize.  Channels go two at a time to halve the accumulator traffic.
    """
    start = np.uint64(base)
    step = np.uint64(chan_stride)
    n = np.uint64(width)
    mean[:width] = 0.0
    m2[:width] = 0.0
    c = 1
    while c + 1 < chans:
        row_a = start + np.uint64(c) * step
        row_b = row_a + step
        for p in range(n):
            shift = x[start + p]
            da = x[row_a + p] - shift
            db = x[row_b + p] - shift
            mean[p] += da + db
            m2[p] += da * da + db * db
        c += 2
    if c < chans:
        row_a = start + np.uint64(c) * step
        for p in range(n):
            da = x[row_a + p] - x[start + p]
            mean[p] += da
            m2[p] += da * da
    for p in range(n):
        s1 = mean[p]
        mean[p] = x[start + p] + s1 / chans
        m2[p] -= s1 * (s1 / chans)


@kernel(inline="always")
def tile_scale_shift(y, y_base, y_chan_stride, x, base, chan_stride, chans, width,
                     center, scale, affine):
    weight, bias = affine
    for c in range(chans):
        w = weight[c] if weight.size else 1.0
        b = bias[c] if bias.size else 0.0
        inp = x[base + c * chan_stride:base + c * chan_stride + width]
        out = y[y_base + c * y_chan_stride:y_base + c * y_chan_stride + width]
        if weight.size:
            for p in range(width):
                out[p] = (inp[p] - center[p]) * scale[p] * w + b
        else:
            for p in range(width):
                out[p] = (inp[p] - center[p]) * scale[p] + b


@kernel(inline="always")
def tile_task(y, y_at, x, x_at, chans, inner, affine, eps, centered, stats, tile, t):
    blocks = (inner + tile - 1) // tile
    o, k = divmod(t, blocks)
    p0 = k * tile
    width = min(tile, inner - p0)
    mean = np.empty(width)
    m2 = np.empty(width)
    tile_moments(x, x_at[0] + o * x_at[1] + p0, chans, x_at[2], width, mean, m2)
    center = m2  # reuse the buffers: m2 becomes center, mean stays for the stats
    scale = np.empty(width)
    for p in range(width):
        c, scale[p], second = normalizer(mean[p], m2[p], chans, eps, centered)
        if stats[0].size:
            stats[0][o * inner + p0 + p] = mean[p]
            stats[1][o * inner + p0 + p] = second
        center[p] = c
    if y.size:
        tile_scale_shift(y, y_at[0] + o * y_at[1] + p0, y_at[2], x, x_at[0] + o * x_at[1] + p0,
                         x_at[2], chans, width, center, scale, affine)


@kernel(fastmath=_config.NORMALIZE_FASTMATH)
def channels_serial(y, y_at, x, x_at, outer, chans, inner, affine, eps, centered, stats, tile):
    for t in range(outer * ((inner + tile - 1) // tile)):
        tile_task(y, y_at, x, x_at, chans, inner, affine, eps, centered, stats, tile, t)


@kernel(parallel=True, fastmath=_config.NORMALIZE_FASTMATH)
def channels_parallel(y, y_at, x, x_at, outer, chans, inner, affine, eps, centered, stats,
                      tile):
    for t in prange(outer * ((inner + tile - 1) // tile)):
        # prange's index is unsigned; int64 keeps the index arithmetic integral
        tile_task(y, y_at, x, x_at, chans, inner, affine, eps, centered, stats, tile, np.int64(t))
