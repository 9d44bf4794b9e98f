"""Compiling the GPU row kernels: the compile-time configuration of one kernel, the options
that make a kernel launchable with its block size, and the per-process kernel cache.

Kernels are built by factories (``make_row_kernel`` in numba_ln/cuda/_kernels.py) from
compile-time constants (threads per row, elements per thread, vector width, which inputs and
outputs exist) and cached, so each configuration compiles only the code it runs.
"""
import numpy as np

from ._compat import NUMBA_CUDA, SIMULATOR, cuda
from ._kernels import make_row_kernel


class KernelConfig:
    """Compile-time constants of one row kernel (``row_kernel`` caches kernels by them).

    held      the row stays in registers (else: streamed from global memory, four passes)
    threads   threads per row (G); groups: rows per block (W), 1 unless threads == a warp
    chunks    segments of ``vec`` elements per thread (held kernels; a power of two)
    vec       elements per load/store (16 bytes when aligned, else 1)
    acc, out  working dtype (float32 or float64; also weight, bias and statistics) and the
              result dtype (y and s)
    x, r      input dtypes (r: the residual's, or None)
    stats     what the kernel writes per row (``st1``, ``st2``): one of the STATS_*
              constants of numba_ln/_variants.py
    shuffle   reduce with warp shuffles (needs threads % 32 == 0; never in the simulator)
    """

    __slots__ = ("held", "threads", "groups", "chunks", "vec", "acc", "out", "x", "r",
                 "centered", "has_r", "has_w", "has_b", "want_y", "stats", "shuffle")

    def __init__(self, *, held, threads, groups, chunks, vec, acc, out, centered, has_r,
                 has_w, has_b, want_y, stats, shuffle, x=None, r=None):
        self.held, self.threads, self.groups, self.chunks = held, threads, groups, chunks
        self.vec, self.acc, self.out = vec, np.dtype(acc), np.dtype(out)
        self.x = np.dtype(out if x is None else x)
        self.r = np.dtype(self.x if r is None else r)
        self.centered, self.has_r, self.has_w, self.has_b = centered, has_r, has_w, has_b
        self.want_y, self.stats = want_y, stats
        self.shuffle = bool(shuffle) and threads % 32 == 0

    @property
    def block(self):
        return self.threads * self.groups

    def __repr__(self):
        fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__)
        return f"KernelConfig({fields})"


_KERNELS = {}


def jit_options(block):
    """Options that make a kernel launchable with ``block`` threads: launch bounds (numba-cuda;
    ptxas then keeps registers <= 65536 / block) or a register cap (Numba's built-in cuda)."""
    if SIMULATOR:
        return {}
    if NUMBA_CUDA:
        return {"launch_bounds": block}
    return {"max_registers": min(255, 65536 // block)}


def row_kernel(**constants):
    """The compiled kernel of ``KernelConfig(**constants)``, built once per process (the
    lookup builds no KernelConfig)."""
    key = tuple(sorted(constants.items()))
    kernel = _KERNELS.get(key)
    if kernel is None:
        v = KernelConfig(**constants)
        kernel = _KERNELS[key] = cuda.jit(make_row_kernel(v), **jit_options(v.block))
    return kernel
