"""GPU launch settings, in one place: the kernels and the GPU front read these, nothing else
hard-codes a block size.  Changing a value takes effect on the next call (kernels are built
per configuration and cached in-process).

None of these numbers has been tuned on a GPU yet (no GPU on the development machine); they
follow the layouts that reach memory speed in Apex's and llm.c's LayerNorm kernels.  Re-tune
with ``python -m numba_ln.cuda.bench``.

Row shapes (see numba_ln/cuda/_kernels.py):

- narrow rows (``cols <= NARROW_THREADS * MAX_ITEMS``): one warp per row, ``ROWS_PER_BLOCK``
  rows per block, the row held in registers, reductions by warp shuffles;
- wide rows: one block per row, the row held in registers, reductions by warp shuffles then
  shared memory;
- rows too wide to hold in registers: one block per row, streamed from global memory four
  times for LayerNorm, twice for RMSNorm (the repeat reads mostly hit L2).

The thread counts per row are powers of two (the row reductions halve them; a call with
another one is refused).
"""

# Threads per row for narrow rows.  32 = one warp, so reductions need no shared memory or
# barriers on a GPU.  (The simulator tests shrink it; shuffles are used only when it is 32.)
NARROW_THREADS = 32

# Narrow rows per block (block size = NARROW_THREADS * ROWS_PER_BLOCK).
ROWS_PER_BLOCK = 4

# Most elements one thread holds in registers, counted in 32-bit words (a float64 counts 2).
# 32 words of data keep a 512-thread block under ~64 registers per thread: no spills.
MAX_ITEMS = 32

# Wide rows: threads per row is the smallest power of two >= cols / TARGET_ITEMS, clamped to
# [MIN_ROW_THREADS, MAX_ROW_THREADS].  Fewer items per thread means more threads in flight.
TARGET_ITEMS = 16
MIN_ROW_THREADS = 64
MAX_ROW_THREADS = 512

# Threads per row in the streaming kernel (rows too wide to hold).
STREAM_THREADS = 512

# 16-byte vector loads and stores when every row array is 16-byte aligned, its rows start on
# 16-byte boundaries and cols is a multiple of the vector width (4 float32, 8 float16,
# 2 float64).  Otherwise (or when False) one element per load.
VECTOR_IO = True

# Warp shuffles for the reductions when a row group is exactly one warp or several.  The
# simulator has no shuffles and always takes the shared-memory path.
USE_SHUFFLE = True

# Threads per block of the gather/scatter copy kernels (non-trailing axes, broadcasts).
COPY_THREADS = 256

# Upper bound on blocks per launch; rows beyond it are covered by a grid-stride loop.
MAX_BLOCKS = 65535
