"""Exact row statistics: the building blocks every CPU kernel shares.

Why not textbook Welford: its per-element division and loop-carried dependency stop SIMD
(a naive prange Welford reaches ~0.1 of memory speed here).  Instead each block of at most
``BLOCK`` elements is reduced exactly while it sits in L1:

1. shifted sum: ``mean = k + sum(x - k) / n`` with ``k`` the block's first element.  A
   constant block gives ``mean == k`` exactly, so a constant row normalizes to exactly 0;
2. corrected two-pass: ``M2 = sum(d**2) - sum(d)**2 / n`` with ``d = x - mean`` (Chan, Golub
   & LeVeque), which also cancels the rounding error left in ``mean``;

and blocks are merged with Chan's pairwise formula, the same merge Welford's method uses.
Both sums run in float64 (float32 data too) in independent SIMD lanes (``reassoc``).  The
second read hits L1, so the row costs one read from memory.  Never ``E[x**2] - E[x]**2``.
"""
import math

from .. import _config
from ._jit import kernel


@kernel(fastmath=_config.STATS_FASTMATH)
def block_moments(x, lo, hi):
    """(mean, M2) of x[lo:hi], float64, exact to a few ulps."""
    # Loops index a slice from 0: Numba then drops its negative-index check and LLVM
    # vectorizes (4-5x faster than indexing x[lo + j]).
    block = x[lo:hi]
    n = block.size
    shift = 1.0 * block[0]
    total = 0.0
    for j in range(n):
        total += block[j] - shift
    mean = shift + total / n
    squares = 0.0
    residual = 0.0
    for j in range(n):
        d = block[j] - mean
        squares += d * d
        residual += d
    return mean, squares - residual * residual / n


@kernel()
def chan_merge(n_a, mean_a, m2_a, n_b, mean_b, m2_b):
    """Merge two (count, mean, M2) summaries (Chan et al. 1979)."""
    n = n_a + n_b
    delta = mean_b - mean_a
    mean = mean_a + delta * (n_b / n)
    m2 = m2_a + m2_b + delta * delta * (n_a * (n_b / n))
    return mean, m2


@kernel()
def range_moments(x, lo, hi):
    """(mean, M2) of x[lo:hi], reduced block by block."""
    block = _config.BLOCK
    end = min(hi, lo + block)
    mean, m2 = block_moments(x, lo, end)
    count = end - lo
    while end < hi:
        start = end
        end = min(hi, start + block)
        mean_b, m2_b = block_moments(x, start, end)
        mean, m2 = chan_merge(count, mean, m2, end - start, mean_b, m2_b)
        count += end - start
    return mean, m2


@kernel()
def normalizer(mean, m2, count, eps, centered):
    """(center, scale, second) for one row from its statistics.

    LayerNorm (centered): center = mean, second = var.  RMSNorm: center = 0 and
    second = mean(x**2) = var + mean**2.  scale = 1 / sqrt(second + eps).
    """
    var = m2 / count
    if var < 0.0:  # rounding only; `not >=` would also catch NaN, which must propagate
        var = 0.0
    if centered:
        center = mean
        second = var
    else:
        center = 0.0
        second = var + mean * mean
    return center, 1.0 / math.sqrt(second + eps), second
