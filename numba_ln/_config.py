"""Tunable settings, in one place.  Kernels and the front read these; nothing else
hard-codes a block size, a threshold or a fastmath flag.

The numbers were chosen by measurement on the 2-core development machine (AMD EPYC,
32 KiB L1d and 1 MiB L2 per core, 32 MiB shared L3); `python -m numba_ln.bench` re-measures.
"""

# Fastmath flags for the statistics loops only.  `reassoc` lets LLVM split the float64
# sums into SIMD lanes (a strict left-to-right sum cannot vectorize); `contract` allows
# fused multiply-adds.  Never `nnan`/`ninf`: NaN and inf must propagate as in NumPy.  The
# accuracy tests (float32 within 2e-6 of a float64 oracle at offset 1e5) cover this choice.
STATS_FASTMATH = {"reassoc", "contract", "nsz"}

# The normalize pass is element-wise (vectorizes without reassociation); only `contract`.
NORMALIZE_FASTMATH = {"contract"}

# Rows longer than this are reduced in blocks of this many elements (exact two-pass per
# block while it sits in L1, blocks merged with Chan's formula).  16 KiB of float32.
BLOCK = 4096

# Below this many elements a call runs the serial kernel: starting the parallel region
# costs ~10 us with TBB, more than normalizing a (1, 768) token takes.
SERIAL_MAX_ELEMENTS = 32768

# With fewer rows than threads, rows at least this long are split across threads.
SPLIT_MIN_COLS = 65536

# Channels-first kernel (normalized axis not innermost): positions per task are chosen so
# that a task's (channels x positions) tile stays in L2 between its passes.
TILE_BYTES = 256 * 1024
TILE_MIN_POSITIONS = 16
TILE_MAX_POSITIONS = 1024

# weight and bias are converted to float64 once per call when there are at least this many
# rows: converting per element costs ~40% of the normalize sweep, converting per call costs
# an allocation of the normalized size (a loss for one 4M-element row).
FLOAT64_PARAMS_MIN_ROWS = 16
