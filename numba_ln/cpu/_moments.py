"""Exact row statistics at the data's SIMD width: the building blocks every CPU kernel shares.

Why not textbook Welford: its per-element division and loop-carried dependency stop SIMD
(a naive prange Welford reaches ~0.1 of memory speed here).  Why not ``E[x**2] - E[x]**2``:
it loses every digit when the data sit far from zero.  Instead a row (or a piece of one)
is reduced by *shifted* sums:

    k  = mean of its first HEAD elements, rounded to the work type
    S1 = sum(x - k),  S2 = sum((x - k)**2)        (each x - k computed exactly, see below)
    mean = k + S1/n,  M2 = S2 - S1**2/n

in the data's own precision (float32 lanes for float32 data: 16 per AVX-512 vector) over
chunks of ``CHUNK`` elements, each chunk's partial sums added into float64 totals.  Pieces
of a row split across threads are merged with Chan's formula, the merge step of Welford's
method.  RMSNorm needs only sum(x**2), whose positive terms cannot cancel: no shift.

Error bound, float32 data (u = 2**-24):

* ``x - k`` is one correctly rounded subtraction: its error is at most u*|x - k| (it is
  exact when x is within a factor 2 of k -- Sterbenz -- which is the far-from-zero case).
  Every error below is therefore relative to the spread of the data, never to its offset.
* A float32 partial sum of a chunk is a tree of depth CHUNK/64 + 6 (64 vector lanes), so
  with the rounding of d*d it errs by at most (CHUNK/64 + 7) u = 15 u of the sum of its
  terms.  The float64 totals add nothing measurable.
* The cancellation in ``S2 - S1**2/n`` amplifies that by G = S2/M2 = 1 + (k - mean)**2/var.
  A row whose shift gave G > ``SHIFT_GAIN_MAX`` (2) is summed once more about k = its
  mean, which gives G = 1 + O(u**2); so G <= 2 always, var is within 30 u = 1.8e-6
  (relative) of its exact value and rstd within 0.9e-6.  With the normalization (rows.py:
  ~4 u of |y|) y is within ~1.2e-6 * |y| + 4 u * |(x - mean) * rstd * w| worst case.
  Measured errors are ~10 times smaller (README, Accuracy).
* A row whose float32 sum of squares leaves [NARROW_TINY, inf) -- data so large or so
  small that (x - k)**2 overflows or underflows float32, or a constant row, whose S2 is
  exactly 0 -- is reduced again in float64 about its first element, as float64 data are.

A constant row gives k == x exactly, S1 == S2 == 0, hence mean == x and var == 0: it
normalizes to exactly 0.  A NaN or inf makes its row's statistics NaN.  Measured in L1 on
the development machine: 0.017 ns/element for float32 (0.13 for the float64 sums this
replaced).
"""
import math

import numpy as np

from .. import _config
from ._elements import exact_sub, is_narrow, work
from ._jit import kernel

CHUNK = _config.CHUNK
HEAD = _config.HEAD
GAIN_MAX = _config.SHIFT_GAIN_MAX
TINY = _config.NARROW_TINY


@kernel(inline="always")
def chunk_sums(x, lo, n, k):
    """sum(x - k), sum((x - k)**2) over x[lo:lo+n] in k's precision (n <= CHUNK)."""
    # Unsigned indices: Numba then skips its negative-index wraparound, which would stop
    # vectorization (x[lo + j] with signed indices runs 4-5x slower).
    s1 = s2 = work(x, 0.0)
    base = np.uint64(lo)
    for j in range(np.uint64(n)):
        d = exact_sub(x[base + j], k)
        s1 += d
        s2 += d * d
    return s1, s2


@kernel(inline="always")
def shifted_sums(x, lo, n, k):
    """float64 totals of the chunked shifted sums of x[lo:lo+n]."""
    s1 = s2 = 0.0
    start = lo
    end = lo + n
    while start < end:
        m = min(CHUNK, end - start)
        a, b = chunk_sums(x, start, m, k)
        s1 += a
        s2 += b
        start += m
    return s1, s2


@kernel(inline="always")
def head_mean(x, lo, n):
    """Mean of x[lo:lo+n] in x's work type (a shift: its rounding does not matter)."""
    s = work(x, 0.0)
    base = np.uint64(lo)
    for j in range(np.uint64(n)):
        s += x[base + j]
    return work(x, s / n)


@kernel(inline="always")
def wide_moments(x, lo, n):
    """(mean, M2) of x[lo:lo+n] by float64 shifted sums about x[lo]: the path for float64
    data and for float32 blocks out of float32's range.  The shift is an element, so the
    amplification is at most n + 1, harmless at float64 precision."""
    base = np.uint64(lo)
    shift = 1.0 * x[base]
    s1 = s2 = 0.0
    for j in range(np.uint64(n)):
        d = exact_sub(1.0 * x[base + j], shift)
        s1 += d
        s2 += d * d
    return shift + s1 / n, s2 - s1 * (s1 / n)


@kernel(inline="always")
def finish_shifted(x, lo, n, k, s1, s2):
    """(mean, M2) of x[lo:lo+n] from its shifted sums about k: summed again about the mean
    when k was a poor shift (or the sums are NaN), and again in float64 when float32's
    range was exceeded (see the module docstring)."""
    m2 = s2 - s1 * (s1 / n)
    if not s2 <= GAIN_MAX * m2:
        k = work(x, k + s1 / n)
        s1, s2 = shifted_sums(x, lo, n, k)
        m2 = s2 - s1 * (s1 / n)
    if is_narrow(x) and not (TINY <= s2 < math.inf):
        return wide_moments(x, lo, n)
    return k + s1 / n, m2


@kernel(inline="always")
def block_moments(x, lo, n):
    """(mean, M2) of x[lo:lo+n] in float64 (see the module docstring)."""
    k = head_mean(x, lo, min(n, HEAD))
    s1, s2 = shifted_sums(x, lo, n, k)
    return finish_shifted(x, lo, n, k, s1, s2)


@kernel(inline="always")
def chan_merge(n_a, mean_a, m2_a, n_b, mean_b, m2_b):
    """Merge two (count, mean, M2) summaries (Chan et al. 1979)."""
    n = n_a + n_b
    delta = mean_b - mean_a
    mean = mean_a + delta * (n_b / n)
    m2 = m2_a + m2_b + delta * delta * (n_a * (n_b / n))
    return mean, m2


@kernel(inline="always")
def chunk_squares(x, lo, n):
    """sum(x**2) over x[lo:lo+n] in x's work type (n <= CHUNK)."""
    s = work(x, 0.0)
    base = np.uint64(lo)
    for j in range(np.uint64(n)):
        v = x[base + j]
        s += v * v
    return s


@kernel(inline="always")
def square_sums(x, lo, n):
    """float64 total of the chunked sums of x[lo:lo+n]**2.  Positive terms cannot cancel:
    no shift is needed, and the float32 bound is (CHUNK/64 + 7) u."""
    total = 0.0
    start = lo
    end = lo + n
    while start < end:
        m = min(CHUNK, end - start)
        total += chunk_squares(x, start, m)
        start += m
    return total


@kernel(inline="always")
def finish_squares(x, lo, n, total):
    """sum(x[lo:lo+n]**2) from its chunked total, again in float64 when float32's range
    was exceeded."""
    if is_narrow(x) and not (TINY <= total < math.inf):
        total = 0.0
        base = np.uint64(lo)
        for j in range(np.uint64(n)):
            v = 1.0 * x[base + j]
            total += v * v
    return total


@kernel(inline="always")
def piece_moments(x, lo, n, centered):
    """Partial statistics of a piece of a row: (mean, M2) for LayerNorm, (0, sum(x**2))
    for RMSNorm, as merge_moments merges and finish_moments finishes them."""
    if centered:
        return block_moments(x, lo, n)
    return 0.0, finish_squares(x, lo, n, square_sums(x, lo, n))


@kernel(inline="always")
def row_moments(x, lo, n, centered):
    """(mean, second) of x[lo:lo+n]: LayerNorm's mean and variance, or (0, mean(x**2))
    for RMSNorm (centered False)."""
    mean, m2 = piece_moments(x, lo, n, centered)
    return finish_moments(mean, m2, n, centered)


@kernel(inline="always")
def merge_moments(count, mean, m2, n_b, mean_b, m2_b, centered):
    """Merge the partial statistics of two pieces of a row: Chan's formula for LayerNorm,
    a sum of squares for RMSNorm (carried in m2, mean unused)."""
    if centered:
        return chan_merge(count, mean, m2, n_b, mean_b, m2_b)
    return 0.0, m2 + m2_b


@kernel(inline="always")
def finish_moments(mean, m2, n, centered):
    """(mean, second) of a row from its merged partials."""
    second = m2 / n
    if centered and second < 0.0:
        second = 0.0
    return mean, second


@kernel(inline="always")
def rstd_of(second, eps):
    return 1.0 / math.sqrt(second + eps)
