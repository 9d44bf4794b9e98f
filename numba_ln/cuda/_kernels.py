"""CUDA kernels for rows: LayerNorm, RMSNorm, the fused residual-add forms and moments.

Every kernel works on row views ``(rows, cols)`` whose columns are contiguous (any row
stride, including 0 for a broadcast residual), passed as an address and a row stride in
bytes (numba_ln/cuda/_vector.py); numba_ln/cuda/_front.py makes the views.
``make_row_kernel`` builds a kernel from its KernelConfig (compile-time constants, see
numba_ln/cuda/_compile.py, which compiles and caches the kernels), so each configuration
compiles only the code it runs.

Statistics, exact in the working precision (float32 for float16/float32 data, float64
for float64), with no ``E[x**2] - E[x]**2``, in three reductions over the row (RMSNorm: one,
sum(x**2)):

    k = x[row, 0]                  the shift: one of the data, read by every thread
    hi, lo = k + sum(x - k) / n    the mean as a pair (TwoSum): x - k is exact (Sterbenz)
                                   at any offset large against the spread, so the mean's
                                   rounding is relative to |mean - k|, not to the offset
    hi, lo += sum(c) / n           with c = (x - hi) - lo: the same correction again, now
                                   relative to the first mean's error (k may be far from
                                   the mean: an outlier in the row's first element)
    var = sum(c**2) / n            c's rounding is relative to |x - mean| (x - hi exact
    y = c * rstd * w + b           near the mean), as the CPU's split mean
                                   (numba_ln/cpu/) is

Until 2026-12-06 the kernels kept d = x - k and used d - mean_d: with 1e4 first among
values of 0.01, every d was rounded to ~1e-3 and so was the mean (a sum of 4096 terms of
-1e4), and y was wrong by 4e-6 (1e-3 relative) where the CPU's is right to 5e-9.

The held kernels read each element from global memory once: one warp per row for narrow
rows (the row in 32 lanes' registers, reductions by ``shfl.bfly``), one block per row for
wide rows (shuffles, then one shared-memory exchange between warps).  Rows too wide to hold
are streamed four times (RMSNorm: twice) with Kahan-compensated per-thread sums.  A constant
row gives ``c == 0`` exactly, so ``y == b`` exactly; with ``eps == 0`` its ``rstd`` is inf and y is
NaN (0 * inf), as on the CPU, in NumPy's formula and in torch.  A NaN or inf in a row makes
the mean non-finite and with it every ``y`` of that row, and no other row.  A shift
that is inf or NaN is replaced by 0: about it every difference was
inf - inf or -inf, and a row holding +inf had mean NaN where NumPy's is inf.
"""
from ._held import held_rows
from ._streamed import streamed_rows


def make_row_kernel(v):
    """The Python function of KernelConfig v's kernel (``cuda.jit`` or ``compile_ptx`` it)."""
    return (held_rows if v.held else streamed_rows)(v)
