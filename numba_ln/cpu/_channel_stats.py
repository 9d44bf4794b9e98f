"""The statistics of a channels-first tile (channels.py): the mean and the variance (or the
mean square) of each of a tile's positions across the channels, by _moments' maths: a
shift (the mean of the first HEAD channels), shifted sums in the work type over chunks of
CHUNK_CHANNELS channels added into float64 totals, a second sweep about the mean where the
shift was poor, float64 where float32's range was exceeded.  Each sweep reads the tile's
channels one after another, every position's terms in a vector lane.
"""
import math

import numpy as np

from .. import _config
from ._elements import exact_sub, is_narrow, mul_add, smaller, work
from ._jit import kernel
from ._moments import finite_or_zero
from ._storage import load

HEAD = _config.HEAD
GAIN_MAX = _config.SHIFT_GAIN_MAX
TINY = _config.NARROW_TINY
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


# A chunk of channels is summed position by position with its CHUNK_CHANNELS (8) terms in
# registers, each position's terms added in channel order as one channel at a time adds
# them (the same bits).  The loop over one channel at a time loaded and stored the
# positions' work-type partial sums for every element: 4 loads and 2 stores an element,
# against 1 load, and a load of k and updates of s1 and s2 per 8 elements now.  The
# positions stay the innermost (vectorized) loop.  Measured (2 threads, float32, us, two
# interleaved pairs): moments axis=1 of (1, 96, 56, 56) 53-64 -> 40-42, (8, 256, 28, 28)
# 205-241 -> 174-181, (32, 256, 56, 56) 5660-6130 -> 4370-4860; layer_norm out= 99-112 ->
# 85-90, 418-420 -> 393-408, 12100-13900 -> 10400-10700.  (Two channels a pass in the
# normalizing sweep, their (hi, low, scale) loaded once, was tried: no faster in cache,
# 1.4x slower streamed.)  The chunk loops are functions of their own, called once per
# chunk: inlined (tile_moments sums twice where a shift was poor), a cold first
# channels-first call compiled 0.9-1.0 s longer than with the loop per channel; as calls,
# 0.35-0.45 s longer (3.2 -> 3.6-3.7 s).

@kernel(inline="always")
def _rows_after(row, step):
    """The starts of the 7 channels after row's (unsigned, as row and step: a signed index
    is wrapped around by Numba, and LLVM then gathers the loads)."""
    r1 = row + step
    r2 = r1 + step
    r3 = r2 + step
    r4 = r3 + step
    r5 = r4 + step
    r6 = r5 + step
    return r1, r2, r3, r4, r5, r6, r6 + step


@kernel(inline="always")
def _squares(d0, d1, d2, d3, d4, d5, d6, d7):
    """d0**2 + d1**2 + ... + d7**2 as a loop's ``a += d * d`` from 0 adds them: in order,
    each product fused into its addition (as `contract` fuses that loop's; written as one
    expression, LLVM may fuse an addition with either product)."""
    a = mul_add(d1, d1, d0 * d0)
    a = mul_add(d3, d3, mul_add(d2, d2, a))
    a = mul_add(d5, d5, mul_add(d4, d4, a))
    return mul_add(d7, d7, mul_add(d6, d6, a))


@kernel(inline="always")
def _shifted(x, row, p, kp):
    return exact_sub(load(x, row + p), kp)


@kernel(_nrt=False)
def chunk_shifted_sums(x, row, step, n, k, s1, s2):
    """s1[p] += sum of d = x - k[p] over the 8 channels from row, s2[p] += sum of d*d."""
    r1, r2, r3, r4, r5, r6, r7 = _rows_after(row, step)
    zero = work(x, 0.0)
    for p in range(n):
        kp = k[p]
        d0, d1 = _shifted(x, row, p, kp), _shifted(x, r1, p, kp)
        d2, d3 = _shifted(x, r2, p, kp), _shifted(x, r3, p, kp)
        d4, d5 = _shifted(x, r4, p, kp), _shifted(x, r5, p, kp)
        d6, d7 = _shifted(x, r6, p, kp), _shifted(x, r7, p, kp)
        s1[p] += zero + d0 + d1 + d2 + d3 + d4 + d5 + d6 + d7  # (from 0, as the loop did)
        s2[p] += _squares(d0, d1, d2, d3, d4, d5, d6, d7)


@kernel(_nrt=False)
def chunk_squares(x, row, step, n, s2):
    """s2[p] += sum of x**2 over the 8 channels from row."""
    r1, r2, r3, r4, r5, r6, r7 = _rows_after(row, step)
    for p in range(n):
        v0, v1, v2, v3 = load(x, row + p), load(x, r1 + p), load(x, r2 + p), load(x, r3 + p)
        v4, v5, v6, v7 = load(x, r4 + p), load(x, r5 + p), load(x, r6 + p), load(x, r7 + p)
        s2[p] += _squares(v0, v1, v2, v3, v4, v5, v6, v7)


@kernel(inline="always")
def tile_shifted_sums(x, base, step, chans, width, k, a1, a2, s1, s2):
    """s1[p], s2[p] = float64 sums of (x - k[p]) and its square over the channels."""
    n = np.uint64(width)
    for p in range(n):
        s1[p] = 0.0
        s2[p] = 0.0
    c = 0
    while c + CHUNK_CHANNELS <= chans:
        chunk_shifted_sums(x, base + np.uint64(c) * step, step, n, k, s1, s2)
        c += CHUNK_CHANNELS
    if c < chans:  # (the last, shorter chunk: one channel at a time)
        for p in range(n):
            a1[p] = work(x, 0.0)
            a2[p] = work(x, 0.0)
        while c < chans:
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
    while c + CHUNK_CHANNELS <= chans:
        chunk_squares(x, base + np.uint64(c) * step, step, n, s2)
        c += CHUNK_CHANNELS
    if c < chans:
        for p in range(n):
            a2[p] = work(x, 0.0)
        while c < chans:
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
    the positions whose float32 sums left float32's range (tile_moments keeps those)."""
    n = np.uint64(width)
    for p in range(n):
        s1[p] = 0.0
        s2[p] = 0.0
    for c in range(chans):
        row = base + np.uint64(c) * step
        for p in range(n):
            v = 1.0 * load(x, row + p)
            if centered:
                v = exact_sub(v, finite_or_zero(1.0 * load(x, base + p)))
                s1[p] += v
            s2[p] += v * v


@kernel(_nrt=False)
def tile_moments(x, base, step, chans, width, centered, k, a1, a2, s1, s2, mean, second):
    """mean[:width], second[:width] (variance, or mean square) per position.  Every
    position's figures are its own: a poor shift is replaced, and float32's range left,
    position by position (the tiles' bounds depend on where y lies: channels.tile_task)."""
    n = np.uint64(width)
    if centered:
        tile_head(x, base, step, chans, width, k)
        tile_shifted_sums(x, base, step, chans, width, k, a1, a2, s1, s2)
        poor = False
        for p in range(n):
            m2 = s2[p] - s1[p] * (s1[p] / chans)
            bad = not s2[p] <= GAIN_MAX * m2
            poor |= bad
            k[p] = work(x, finite_or_zero(k[p] + s1[p] / chans)) if bad else k[p]
        if poor:  # the positions whose head shift was poor are summed about their means
            tile_shifted_sums(x, base, step, chans, width, k, a1, a2, s1, s2)
    else:
        tile_squares(x, base, step, chans, width, a2, s2)
    if is_narrow(x):
        wide = False
        for p in range(n):
            wide |= not (TINY <= s2[p] < math.inf)
        if wide:  # (mean and second: scratch rows until the end)
            tile_wide(x, base, step, chans, width, mean, second, centered)
            for p in range(n):
                if not (TINY <= s2[p] < math.inf):
                    s1[p], s2[p] = mean[p], second[p]
                    k[p] = finite_or_zero(1.0 * load(x, base + p)) if centered else 0.0
    for p in range(n):
        if centered:
            mean[p] = k[p] + s1[p] / chans
            var = (s2[p] - s1[p] * (s1[p] / chans)) / chans
            second[p] = var if var >= 0.0 or var != var else 0.0
        else:
            mean[p] = 0.0
            second[p] = s2[p] / chans
