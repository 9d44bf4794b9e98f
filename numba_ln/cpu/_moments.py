"""Exact row statistics at the data's SIMD width: the building blocks of the row kernels.

Why not textbook Welford: its per-element division and loop-carried dependency stop SIMD
(a naive prange Welford reaches ~0.1 of memory speed here).  Why not ``E[x**2] - E[x]**2``:
it loses every digit when the data sit far from zero.  Instead a row is reduced by
*shifted* sums:

    k  = mean of its first HEAD elements, rounded to the work type
    S1 = sum(x - k),  S2 = sum((x - k)**2)        (each x - k computed exactly, see below)
    mean = k + S1/n,  M2 = S2 - S1**2/n

in the data's own precision (float32 lanes for float32 data: 16 per AVX-512 vector) over
chunks of ``CHUNK`` elements, each chunk's partial sums added into float64 totals, piece by
piece (``PIECE`` elements).  RMSNorm needs only sum(x**2), whose positive terms cannot
cancel: no shift.

**Determinism.**  Each row is summed in a fixed chunk and piece structure, and which
kernel runs and how its rows are cut into tasks depend only on the array's shape
(_engine.py), so results do not depend on the thread count.  (Numba compiles a kernel
again inside each function that calls it, and LLVM may then vectorize a sum's remainder
differently: a user's @njit function that calls numba_ln gets results within the same
error bound, not always the same last bit as a call from Python.)

Error bound, float32 data (u = 2**-24):

* ``x - k`` is one correctly rounded subtraction: its error is at most u*|x - k| (it is
  exact when x is within a factor 2 of k -- Sterbenz -- which is the far-from-zero case).
  Every error below is therefore relative to the spread of the data, never to its offset.
* A float32 partial sum of a chunk is a tree of depth CHUNK/64 + 6 (64 vector lanes), so
  with the rounding of d*d it errs by at most (CHUNK/64 + 7) u = 15 u of the sum of its
  terms; in a chunk whose length is not a multiple of 16, LLVM's remainder loop adds the
  last elements (up to 15) one at a time onto the reduced sum: up to 15 u more (a
  255-element row's S2 was 17.2 u off).  The float64 totals add nothing measurable.
* S1's sum errs by at most 14 u (29 u with a remainder) of A = sum(|x - k|) <=
  n * sqrt(G * var) (Cauchy-Schwarz), G = S2/M2 = 1 + d**2/var, d = mean - k, S1 = n * d.
* In ``M2 = S2 - S1**2/n`` S2's error is amplified by G, and S1's (2 |S1| * 14 u * A / n)
  by 2 * sqrt(G * (G - 1)) (relative to M2 = n * var); x - k's rounding adds ~2 sqrt(G) u.
  A row whose shift gave G > ``SHIFT_GAIN_MAX`` (2) is summed once more about k = its
  mean, which gives G = 1 + O(u**2); so G <= 2 always, and var is within 15 u * 2 +
  28 u * sqrt(2) + 3 u ~ 73 u = 4.4e-6 (relative) of its exact value, rstd within 2.2e-6
  (near G = 1: 1.4e-6 and 0.7e-6); with a remainder 30 u * 2 + 58 u * sqrt(2) + 3 u ~
  145 u = 8.6e-6 and 4.3e-6.  The mean errs by at most 14 u (29 u) of mean(|x - k|) <=
  sqrt(G * var), so by 21 u (43 u) of the standard deviation, which y (in units of it)
  carries as 21 u * |w| = 1.3e-6 * |w| (2.6e-6 * |w|) whatever y is (y near 0
  included).  rstd's error and the normalization's (_rowops: ~4 u) fall on xhat * w, not
  on y (a bias may cancel it): y is within ~2.5e-6 (4.6e-6) * |(x - mean) * rstd * w| +
  1.3e-6 (2.6e-6) * |w| + u * |y| worst case.  (Until 2026-12-07 this left out S1's
  error and the remainder's and put rstd's on |y|: var 1.8e-6, rstd 0.9e-6; a lone
  outlier of 1101.13 first among 254 values of 1000, G just under 2, gives var 2.2e-6 and
  rstd 1.1e-6 off; searches near G = 2 reached 52 u.)  Measured errors on ordinary rows
  are ~10 times smaller (README, Accuracy).
* A row whose float32 sum of squares leaves [NARROW_TINY, inf) -- data so large or so
  small that (x - k)**2 overflows or underflows float32, or a constant row, whose S2 is
  exactly 0 -- is summed again in float64 about its first element, as float64 data are.

A constant row gives k == x exactly, S1 == S2 == 0, hence mean == x and var == 0: it
normalizes to exactly 0.  A NaN or inf makes its row's statistics NaN.  Measured in L1 on
the development machine: 0.017 ns/element for float32 (0.13 for the float64 sums this
replaced).

Arguments are row pointers (_pointers): ``x`` the row, ``r`` the residual row and ``s``
where ``s = x + r`` is stored while summing (None, None without a residual; s IN_PLACE
to store into r), ``src`` the row as summed (s, or x).
"""
import math

import numpy as np
from numba.extending import intrinsic

from .. import _config
from . import _alias
from ._elements import _absent, _in_place, exact_sub, is_narrow, smaller, work
from ._jit import kernel
from ._storage import (emit_float_op, emit_keep, emit_load, emit_rounded, float_result,
                       kept_type, load, work_type)

CHUNK = _config.CHUNK
PIECE = _config.PIECE
HEAD = _config.HEAD
GAIN_MAX = _config.SHIFT_GAIN_MAX
TINY = _config.NARROW_TINY
REDUCE = _config.REDUCE_FASTMATH


# row_value and head_value are intrinsics: the instructions Numba writes for their
# expressions, with no compilation of their own (as inline overloads each was compiled
# once per argument type as well, ~20 ms each on a kernel's first use).

@intrinsic
def row_value(typingctx, x, r, s, j):
    """Element j of the row as summed: x's, or x + r, which is then also stored into s
    (and, stored as 16-bit, summed as stored): keep(s, j, x[j] + r[j]), or keep(r, ...)
    when s is IN_PLACE (r is then written: not an input in _alias's sense)."""
    if _absent(r):
        return work_type(x)(x, r, s, j), _load_x
    target = r if _in_place(s) else s
    r_scopes = _alias.GET if _in_place(s) else _alias.GET_INPUT

    def codegen(context, builder, sig, args):
        value, value_type = _x_plus_r(context, builder, sig, args, _alias.GET_INPUT, r_scopes)
        stored = args[1] if _in_place(s) else args[2]
        return emit_keep(context, builder, target, stored, sig.args[3], args[3], value,
                         value_type)
    return kept_type(target, float_result(work_type(x), work_type(r)))(x, r, s, j), codegen


@intrinsic
def head_value(typingctx, x, r, j):
    """Element j of the row as summed, without storing it: x[j] or x[j] + r[j] (rounded
    as row_value stores it: a constant row's shift is then its value)."""
    if _absent(r):
        return work_type(x)(x, r, j), _load_x

    def codegen(context, builder, sig, args):
        value, value_type = _x_plus_r(context, builder, sig, args, _alias.GET, _alias.GET)
        return emit_rounded(context, builder, sig.args[0], value, value_type)
    return kept_type(x, float_result(work_type(x), work_type(r)))(x, r, j), codegen


def _load_x(context, builder, sig, args):
    """load(x, j) of row_value's and head_value's (x, ..., j)."""
    return emit_load(context, builder, sig.args[0], args[0], sig.args[-1], args[-1],
                     _alias.GET)


def _x_plus_r(context, builder, sig, args, x_scopes, r_scopes):
    """(x[j] + r[j], its type) of row_value's and head_value's (x, r, ..., j)."""
    x_value = emit_load(context, builder, sig.args[0], args[0], sig.args[-1], args[-1],
                        x_scopes)
    r_value = emit_load(context, builder, sig.args[1], args[1], sig.args[-1], args[-1],
                        r_scopes)
    return emit_float_op(context, builder, "fadd", x_value, work_type(sig.args[0]), r_value,
                         work_type(sig.args[1]))


@kernel(inline="always")
def _pairs(x, r, j):
    return head_value(x, r, j) + head_value(x, r, j + 1)


@kernel(inline="always")
def _eights(x, r, j):
    return ((_pairs(x, r, j) + _pairs(x, r, j + 2))
            + (_pairs(x, r, j + 4) + _pairs(x, r, j + 6)))


@kernel(inline="always")
def head16(x, r):
    """Mean of the first 16 elements of the row, as a strict tree; h * (1/16) is h / 16
    exactly, without a division on the row's critical path."""
    return work(x, (_eights(x, r, 0) + _eights(x, r, 8)) * 0.0625)


@kernel()
def head_mean(x, r, n):
    """Mean of the first n elements of the row (x + r with a residual), in the work type:
    the shift (its rounding does not matter).  Strict, as a tree for the usual n == 16."""
    if n == 16:
        return head16(x, r)
    h = work(x, 0.0)
    for j in range(np.uint64(n)):
        h += head_value(x, r, j)
    return work(x, h / n)


@kernel(fastmath=REDUCE)
def chunk_sums(x, r, s, k, start, stop):
    """sum(v - k), sum((v - k)**2) over elements start:stop of the row (v = x, or x + r
    stored into s), in k's precision.  Unsigned indices: Numba then skips its negative-
    index wraparound, which would stop vectorization."""
    a1 = a2 = work(x, 0.0)
    for j in range(start, stop):
        d = exact_sub(row_value(x, r, s, j), k)
        a1 += d
        a2 += d * d
    return a1, a2


@kernel(fastmath=REDUCE)
def chunk_squares(x, r, s, start, stop):
    """sum(v**2) over elements start:stop of the row, in x's work type."""
    a2 = work(x, 0.0)
    for j in range(start, stop):
        v = row_value(x, r, s, j)
        a2 += v * v
    return a2


@kernel(fastmath=REDUCE)
def wide_chunk_sums(src, shift, start, stop, centered):
    """float64 sums of (src - shift) and its square (centered), or of src**2."""
    a1 = a2 = 0.0
    for j in range(start, stop):
        v = 1.0 * load(src, j)
        if centered:
            v = exact_sub(v, shift)
            a1 += v
        a2 += v * v
    return a1, a2


# --- sums of a row, chunk by chunk and piece by piece (strict order) -----------------------

@kernel(inline="always")
def chunk_stats(x, r, s, k, start, stop, centered):
    """(S1, S2) of one chunk as float64: shifted sums, or (0, sum of squares)."""
    if centered:
        a1, a2 = chunk_sums(x, r, s, k, start, stop)
        return 1.0 * a1, 1.0 * a2
    return 0.0, 1.0 * chunk_squares(x, r, s, start, stop)


@kernel(inline="always")
def piece_sums(x, r, s, k, lo, hi, centered):
    """float64 totals of chunks lo:hi of the row (hi - lo <= PIECE, lo a multiple of it)."""
    t1 = t2 = 0.0
    start = np.uint64(lo)
    end = np.uint64(hi)
    while start < end:
        stop = smaller(end, start + np.uint64(CHUNK))
        a1, a2 = chunk_stats(x, r, s, k, start, stop, centered)
        t1 += a1
        t2 += a2
        start = stop
    return t1, t2


@kernel(inline="always")
def row_sums(x, r, s, n, k, centered):
    """float64 totals of the row: its pieces' totals, added in order."""
    t1 = t2 = 0.0
    for lo in range(0, n, PIECE):
        a1, a2 = piece_sums(x, r, s, k, lo, smaller(n, lo + PIECE), centered)
        t1 += a1
        t2 += a2
    return t1, t2


@kernel(inline="always")
def wide_row_sums(src, n, centered):
    """float64 totals about src[0] (or of squares), piece by piece."""
    shift = finite_or_zero(1.0 * load(src, 0))
    t1 = t2 = 0.0
    for lo in range(0, n, PIECE):
        a1, a2 = wide_chunk_sums(src, shift, np.uint64(lo), np.uint64(smaller(n, lo + PIECE)),
                                 centered)
        t1 += a1
        t2 += a2
    return shift, t1, t2


@kernel(inline="always")
def row_shift(x, r, n, centered):
    """The shift of a row: the mean of its first HEAD elements (0 for RMSNorm)."""
    if centered:
        return head_mean(x, r, np.uint64(smaller(n, HEAD)))
    return work(x, 0.0)


@kernel(inline="always")
def short_row_shift(x, r, n, centered):
    """row_shift with the usual 16-element tree inline, for the narrow kernel: where a row
    is a few vectors, the call of head_mean is a sizeable share of its work (inlined into
    every row kernel it cost 0.5-1.2 s of compilation on a cold first use, README)."""
    if centered and smaller(n, HEAD) == 16:
        return head16(x, r)
    return row_shift(x, r, n, centered)


@kernel(inline="always")
def finite_or_zero(shift):
    """A shift, or 0 in place of inf or NaN: a row holding +inf (and no -inf or NaN) then
    sums to inf and has mean inf, as NumPy's mean; about an infinite shift (an inf among
    the head elements, or the first) every difference was inf - inf or -inf: mean NaN."""
    return shift if abs(shift) < math.inf else 0.0


@kernel(inline="always")
def finish_row(src, n, k, t1, t2, centered):
    """(mean, second) of a row from its totals about k: summed again about the mean when k
    was a poor shift (or the sums are NaN), in float64 when float32's range was left."""
    if centered:
        m2 = t2 - t1 * (t1 / n)
        if not t2 <= GAIN_MAX * m2:
            k = work(src, finite_or_zero(k + t1 / n))
            t1, t2 = row_sums(src, None, None, n, k, True)
        shift = 1.0 * k
        if is_narrow(src) and not (TINY <= t2 < math.inf):
            shift, t1, t2 = wide_row_sums(src, n, True)
        return stats_of_totals(n, shift, t1, t2, True)
    if is_narrow(src) and not (TINY <= t2 < math.inf):
        t2 = wide_row_sums(src, n, False)[2]
    return stats_of_totals(n, 0.0, t1, t2, False)


@kernel(inline="always")
def settled(src, n, t1, t2, centered):
    """Whether finish_row takes neither fallback: its result is then stats_of_totals'."""
    if is_narrow(src) and not (TINY <= t2 < math.inf):
        return False
    return not centered or t2 <= GAIN_MAX * (t2 - t1 * (t1 / n))


@kernel(inline="always")
def stats_of_totals(n, k, t1, t2, centered):
    """(mean, second) from totals about k that need no second pass."""
    if centered:
        var = (t2 - t1 * (t1 / n)) / n
        if var < 0.0:  # rounding only; `not >=` would also catch NaN, which must propagate
            var = 0.0
        return 1.0 * k + t1 / n, var
    return 0.0, t2 / n


@kernel(inline="always")
def rstd_of(second, eps):
    return 1.0 / math.sqrt(second + eps)
