"""Tunable settings, in one place.  Kernels and the front read these; nothing else
hard-codes a block size, a threshold or a fastmath flag.

Two kinds of setting live here, and they behave differently:

* **Compile-time constants** (``KERNEL_FASTMATH``, ``REDUCE_FASTMATH``, ``CHUNK``,
  ``PIECE``, ``HEAD``, ``SHIFT_GAIN_MAX``, ``NARROW_*``, ``PREFERRED_VECTOR_BITS``): read
  when a kernel is compiled and baked into the machine code that Numba caches on disk.
  Edit this file to change them (the cache stamp in ``cpu/_jit.py`` covers it; the
  vector width comes from the environment); assigning to them at run time changes
  nothing.
* **Per-call settings** (the rest): read by the front on every call (``STREAM_MIN_BYTES``
  starts from the environment variable NUMBA_LN_STREAM_MIN_BYTES).

The numbers were chosen by measurement on the 2-core development machine (AMD EPYC Zen 5,
48 KiB L1d and 1 MiB L2 per core, 32 MiB shared L3, AVX-512; PREFERRED_VECTOR_BITS on a
2-core Sapphire Rapids-class Xeon); ``python -m numba_ln.bench`` re-measures.
"""
import os
import re

# --- compile-time constants -------------------------------------------------------------

# Fastmath flags, per loop.  Every CPU kernel compiles with `contract` (fused multiply-
# adds) only.  The loops that sum -- the chunked partial sums of the statistics, and the
# fused sweep that sums one row while it normalizes another -- are functions of their own
# compiled with REDUCE_FASTMATH: `reassoc` lets LLVM split a sum into SIMD lanes (a strict
# left-to-right sum cannot vectorize), `nsz` ignores the sign of zero.  LLVM keeps each
# instruction's flags when it inlines such a function, so reassociation stays inside
# those loops, whose order is fixed once when they compile: results do not depend on
# where a kernel is called from (Python or a user's @njit code give the same bits).  The
# subtractions whose order *is* the algorithm (x - k, (x - mean_hi) - mean_lo) go through
# ``cpu._elements.exact_sub``, compiled without fastmath, even inside those loops: folding
# mean_hi + mean_lo costs 3-4 digits at offset 1e5, which the accuracy tests would catch.
# Never `nnan`/`ninf`: NaN and inf must propagate as in NumPy.
KERNEL_FASTMATH = {"contract"}
REDUCE_FASTMATH = {"reassoc", "contract", "nsz"}

# Elements per partial sum in the data's own precision (float32 for float32 data) before
# it is added into a float64 total.  Vectorized, a chunk is 64 lane sums of CHUNK/64 terms
# and a 6-level tree: the rounding of a float32 partial sum is bounded by
# (CHUNK/64 + 7) units of 2**-24 of its terms.  512: 0.017 ns/element in L1, 30% faster
# than 256, with a bound of 15 units.
CHUNK = 512

# A row's chunk totals are added up piece by piece, PIECE elements (a multiple of CHUNK)
# a piece, and the pieces' totals in order: the structure in which rows_split sums the
# pieces of a long row in parallel, so that it gets the same bits as one thread.
PIECE = 65536

# The shift of a block's shifted sums is the mean of its first HEAD elements (one vector).
HEAD = 16

# Shifted sums about k amplify their rounding by S2/M2 = 1 + (k - mean)**2 / var.  A block
# whose shift gave more than this is summed again about its mean (which gives ~1).
SHIFT_GAIN_MAX = 2.0

# float32 partial sums of squares outside [NARROW_TINY, inf) may have underflowed or
# overflowed (|x - k| beyond ~1e-19 .. 1e19, or a constant row): such a row is reduced
# again in float64.  float32 normalizing is used while NARROW_RSTD_MIN <= rstd <
# NARROW_RSTD_MAX: a smaller rstd (a spread beyond ~1e29) could make x - mean overflow
# float32 (3.4e38 - (-3.4e38)) or float32(rstd) subnormal, a larger one the product.
NARROW_TINY = 2.0 ** -80
NARROW_RSTD_MIN = 2.0 ** -96
NARROW_RSTD_MAX = 2.0 ** 96

# The vector width the kernels ask LLVM for, in bits (LLVM's "prefer-vector-width"; None:
# LLVM's own choice for the host), from the environment variable NUMBA_LN_VECTOR_BITS:
# 512 (the default), 256 or llvm.  LLVM's tuning for Intel's AVX-512 cores prefers 256
# bits; 512 there made the compute-bound calls 6-30% faster (16-bit data, the backward,
# batches in cache), and a (1, 768) float32 call 8-10% slower, the Python code that runs
# right after a small call ~8% (the core's lower AVX-512 clock), the fused forms at 64 MB
# 6-11% (cpu/_vector_width).  CPUs without AVX-512 compile as with llvm.  (Part of the
# cache stamp, cpu/_jit.py: kernels cached under one setting are not loaded under another.)
_VECTOR_BITS = {"512": 512, "256": 256, "llvm": None}


def _vector_bits(setting):
    if setting not in _VECTOR_BITS:
        raise ValueError(f"NUMBA_LN_VECTOR_BITS must be one of {', '.join(_VECTOR_BITS)}, "
                         f"not {setting!r}")
    return _VECTOR_BITS[setting]


PREFERRED_VECTOR_BITS = _vector_bits(os.environ.get("NUMBA_LN_VECTOR_BITS", "512"))

# --- per-call settings ------------------------------------------------------------------

# Up to this many elements a call runs the serial kernel: starting TBB's parallel region
# costs ~6-7 us.  Measured (2 threads, float32 with weight and bias): serial is faster up
# to 131072 elements ((8, 4096) 3.9 us against 9.4; (32, 4096) 15.5 against 18.6), parallel
# from ~200000 on ((48, 4096) 26.3 against 22.2).
SERIAL_MAX_ELEMENTS = 131072

# The backward does three times the forward's work per element, and its parallel launch
# costs more (the partial rows, their reduction, and the general path's front): its calls
# run serially up to SERIAL_MAX_ELEMENTS // BACKWARD_COST elements
# (_threading.runs_serial).  Measured (2 threads, float32 LayerNorm with a weight, us,
# serial against parallel; 2026-12-05, the 2-core Intel machine, whose thread wake-ups
# are slow): (16, 1024) 8.1 against 20.3 (one thread, parallel kernel: 14.6), (48, 1024)
# 20.5 against 24.5, (64, 1024) 24.3-27.0 against 27.6-30.4, (128, 1024) 43.1-54.0
# against 36.2-41.7; (64, 768) 19.2 against 25.5, (96, 768) 29.1 against 31.0, (128, 768)
# 38.7 against 37.2.  (An earlier machine: (64, 1024) 18.3 against 13.4.)
BACKWARD_COST = 2

# The fused forms (add_layer_norm, add_rms_norm: x and the residual read, s and y written)
# do about twice a plain call's work per element: serial up to SERIAL_MAX_ELEMENTS //
# FUSED_COST elements.  Measured (2 threads, float32 add_layer_norm through the small-call
# gate, us; torch's x + r then F.layer_norm 14.2 and 25.5): (64, 1024) serial 12.6
# (parallel through the general path 21.3, of which ~5 us is that path's own); (128,
# 1024) serial 25.3, parallel 16.4-16.8.
FUSED_COST = 2

# Rows of at most this many bytes: the row kernels (cpu/rows.py) prefetch every line of
# the row after next before each sweep.  Out of cache a row's fixed work stalls the
# loads; the hardware prefetcher does not look that far ahead over short rows.  Measured
# (2 threads, layer_norm out= with weight and bias, three interleaved pairs, us): bfloat16
# (16384, 1024) 2009-2105 -> 1838-1975, float16 1739-1887 -> 1548-1649, float32 (65536,
# 256) 3501-4750 -> 3150-3268; longer rows lost with it (float32 (16384, 1024), 4 KiB
# rows, streamed: 3365-3541 -> 3611-3709; bfloat16 (4096, 4096), 8 KiB: 1705-1882 ->
# 1771-1917), and rows of 3-4 KiB in cache were even ((4096, 768), (4096, 1024)).
PREFETCH_MAX_ROW_BYTES = 2048

# A parallel task covers about this many elements (whole rows; at least one): its first
# row is summed on its own, the others in fused sweeps (cpu/_sweep.py).  The tasks depend
# on the shape only, so results do not depend on the thread count.
TASK_ELEMENTS = 65536

# Rows of at most this many bytes, without a residual, run in parallel tasks of blocks
# (cpu/narrow.py: the float64 finish of 16 rows in vector lanes): 1.12-1.4x rows_parallel's
# speed at 64 and 32 float32 columns; for the fused forms, which move twice the bytes, no
# gain or a loss (0.88-0.90x).  Until the narrow kernel summed a row as one chunk
# (2026-12-06) the bound was 64 elements: at 128 float32 columns the blocks gained 1.05x.
# Since (Zen 4, one process, 9 interleaved rounds, medians of per-round ratios
# rows_parallel/narrow, 1 / 2 threads): float32 layer_norm (4096, 128) 1.35 / 1.24,
# (16384, 128) 0.95 / 1.46, (8192, 80) 1.45 / 1.64, (65536, 96) 1.32 / 0.89, (65536, 128)
# 1.11 / 1.03, rms_norm 1.05-1.72 / 0.99-1.60; bfloat16 (2 threads) 1.38-1.59 at 80-128
# columns and 1.24-1.27 at 200-256, float16 1.0-1.28; but float64 (65536, 96) 0.97 / 0.80
# and (16384, 96) 1.00 / 0.98: a bound in bytes keeps float64 at 64 columns.  (The same
# bits either way, but for bfloat16 layer_norm/rms_norm at most widths: LLVM vectorizes
# their sums in other lanes in the two kernels; README, Same bits.)
NARROW_ROW_BYTES = 512

# The fused forms (add_layer_norm, add_rms_norm: four arrays) take the narrow kernel only
# while each array is at most this big.  rows_parallel's sweeps overlap one row's loads
# with the previous row's stores, which pays where the arrays come from memory; in cache
# the blocks win (Zen 4, one process, 9 interleaved rounds, medians of per-round ratios
# rows_parallel/narrow, 2 / 1 threads): add_layer_norm (4096, 64) 1.49, (8192, 80) 1.51,
# (8192, 128) 1.23 / 1.22, (16384, 64) 1.38 / 1.35, add_rms_norm 1.14-1.65 / 1.02-1.38;
# past it (16 MiB arrays) 0.88 at (65536, 64), 0.94-0.96 at (16384, 128) (8 MiB).
NARROW_FUSED_MAX_BYTES = 4 * 2**20

# Threaded row kernels stream their outputs (y, s, the backward's dx) past the caches
# (cpu/_stream.py) when the call moves at least this many bytes (its row arrays, read and
# written): an ordinary store reads each line into the cache first.  Measured (2 threads,
# (rows, 1024) float32, batches of calls on the same arrays, ordinary over streamed time;
# bytes moved in brackets): layer_norm out= 16-24 MB (32-48) 0.89-0.93, 32 MB (64)
# 0.98-1.00, 48 MB (96) 1.23-1.35, 64 MB (128) 1.22-1.29; layer_norm_backward out= /
# allocating 16 MB (48) 0.89 / 0.87, 24 MB (72) 0.96 / 0.91, 32 MB (96) 1.19 / 1.12, 48 MB
# (144) 1.14 / 1.08; add_layer_norm out= 8 MB (32) 0.85, 16 MB (64) 0.95, 24 MB (96) 1.24,
# 32 MB (128) 1.69, 64 MB (256) 1.64.  (bfloat16's backward, compute-bound: 0.90-0.95 up
# to 48 MB moved, 0.94 / 1.07 at 96.)  A 2-vCPU Xeon with 480 MB of L3 agreed (2026-12-07,
# streamed over ordinary time, 10-call batches after 5 unmeasured calls, medians of 11
# rounds): layer_norm out= (2048-4096, 768-1024) 1.13-1.26, the backward 1.10-1.16,
# add_layer_norm 1.01-1.06; past the bound add_layer_norm (8192, 1024) 0.47, the backward
# 0.80.  Other machines may cross elsewhere: the environment variable
# NUMBA_LN_STREAM_MIN_BYTES sets the bound (bytes, or with a binary suffix: 32M), and
# assigning to STREAM_MIN_BYTES at run time works too.
_BYTE_SUFFIXES = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}


def _stream_min_bytes(setting):
    """NUMBA_LN_STREAM_MIN_BYTES's bytes: digits, with K, M or G (either case) for KiB, MiB
    or GiB; anything else a ValueError that names the variable (at import, as
    NUMBA_LN_VECTOR_BITS)."""
    match = re.fullmatch(r"([0-9]+)([KMG]?)", setting, flags=re.IGNORECASE)
    if match is None:
        raise ValueError("NUMBA_LN_STREAM_MIN_BYTES must be a whole number of bytes, "
                         f"optionally with a suffix K, M or G (32M), not {setting!r}")
    return int(match[1]) * _BYTE_SUFFIXES[match[2].upper()]


STREAM_MIN_BYTES = _stream_min_bytes(os.environ.get("NUMBA_LN_STREAM_MIN_BYTES", "80M"))

# Arrays of fewer rows than this, with rows longer than PIECE, are split: the pieces of
# each row are summed and normalized in parallel (cpu/rows.rows_split).
SPLIT_MAX_ROWS = 8

# Channels-first kernel (normalized axis not innermost): positions per task are chosen so
# that a task's (channels x positions) tile stays in L2 between its passes, but each
# channel's segment of a tile is at least TILE_MIN_BYTES: with many channels, an L2-sized
# tile leaves segments of a few cache lines, a channel stride apart, which the prefetchers
# do not follow and which share cache sets when the stride is a power of two.  Measured
# (Zen 4, 2 threads, float32, axis=0 of C-contiguous (chans, inner), out=, us): 1 KiB
# segments against L2-sized tiles: (2048, 2048) 7410 -> 2836, (1024, 4096) 3336 -> 2724,
# (4096, 64) 239 -> 107; shapes whose tiles were already that long are unchanged.
TILE_BYTES = 256 * 1024
TILE_MIN_BYTES = 1024
TILE_MAX_POSITIONS = 1024
