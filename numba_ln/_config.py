"""Tunable settings, in one place.  Kernels and the front read these; nothing else
hard-codes a block size, a threshold or a fastmath flag.

Two kinds of setting live here, and they behave differently:

* **Compile-time constants** (``KERNEL_FASTMATH``, ``CHUNK``, ``HEAD``, ``SHIFT_GAIN_MAX``,
  ``NARROW_*``, ``PEEL_MIN``): read when a kernel is compiled and baked into the machine code
  that Numba caches on disk.  Edit this file to change them (the cache stamp in
  ``cpu/_jit.py`` covers it); assigning to them at run time changes nothing.
* **Per-call settings** (the rest): read by the front on every call.

The numbers were chosen by measurement on the 2-core development machine (AMD EPYC Zen 5,
48 KiB L1d and 1 MiB L2 per core, 32 MiB shared L3, AVX-512); ``python -m numba_ln.bench``
re-measures.
"""

# --- compile-time constants -------------------------------------------------------------

# Fastmath flags of every CPU kernel.  `reassoc` lets LLVM split sums into SIMD lanes (a
# strict left-to-right sum cannot vectorize), `contract` allows fused multiply-adds, `nsz`
# ignores the sign of zero.  Never `nnan`/`ninf`: NaN and inf must propagate as in NumPy.
# The few operations whose order *is* the algorithm (the shifted differences x - k and
# (x - mean_hi) - mean_lo) go through ``cpu._elements.exact_sub``, compiled without
# fastmath: LLVM keeps each instruction's own flags when it inlines it, so reassociation
# cannot fold mean_hi + mean_lo (that costs 3-4 digits at offset 1e5; the accuracy tests
# at offsets up to 1e5 would fail).
KERNEL_FASTMATH = {"reassoc", "contract", "nsz"}

# Elements per partial sum in the data's own precision (float32 for float32 data) before
# it is added into a float64 total.  Vectorized, a chunk is 64 lane sums of CHUNK/64 terms
# and a 6-level tree: the rounding of a float32 partial sum is bounded by
# (CHUNK/64 + 7) units of 2**-24 of its terms.  512: 0.017 ns/element in L1, 30% faster
# than 256, with a bound of 15 units.
CHUNK = 512

# The shift of a block's shifted sums is the mean of its first HEAD elements (one vector).
HEAD = 16

# Shifted sums about k amplify their rounding by S2/M2 = 1 + (k - mean)**2 / var.  A block
# whose shift gave more than this is summed again about its mean (which gives ~1).
SHIFT_GAIN_MAX = 2.0

# Spans of at least this many elements are normalized from y's first 64-byte boundary
# on, the few elements before it first (see cpu/_rowops.peel_count).
PEEL_MIN = 256

# float32 partial sums of squares outside [NARROW_TINY, inf) may have underflowed or
# overflowed (|x - k| beyond ~1e-19 .. 1e19, or a constant row): such a row is reduced
# again in float64.  float32 normalizing is used while rstd < NARROW_RSTD_MAX.
NARROW_TINY = 2.0 ** -80
NARROW_RSTD_MAX = 2.0 ** 96

# --- per-call settings ------------------------------------------------------------------

# Below this many elements a call runs the serial kernel: starting the parallel region
# costs ~10 us with TBB, more than normalizing a (1, 768) token takes.
SERIAL_MAX_ELEMENTS = 32768

# A parallel task covers at least this many elements (whole rows): fewer, larger tasks
# cost less scheduling, and rows of one task are normalized back to back.
TASK_ELEMENTS = 16384

# With fewer rows than threads, rows at least this long are split across threads.
SPLIT_MIN_COLS = 65536

# Channels-first kernel (normalized axis not innermost): positions per task are chosen so
# that a task's (channels x positions) tile stays in L2 between its passes.
TILE_BYTES = 256 * 1024
TILE_MIN_POSITIONS = 16
TILE_MAX_POSITIONS = 1024
