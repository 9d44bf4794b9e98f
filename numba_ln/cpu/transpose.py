"""Batched transposes, (outer, C, P) -> (outer, P, C) of C-contiguous arrays: the backward
functions' copy of a channels-first input (the normalized axes followed by others) into
rows (_layout.Plan.kernel_input; there is no channels backward kernel), and of dx back
into a channels-first out= (_backward_front).

NumPy copies such a transposed view along the output, one element a stride apart in the
input after the other.  These copy tiles of BLOCK x BLOCK elements, whose lines stay in
L1 while they are read across, on every thread above the serial bound.  Measured (2
threads, float32, us): (8, 96, 3136) 1370 -> 660, (32, 256, 784) 4360 -> 1880, as fast as
NumPy's copy of the same bytes in order on one thread.  Elements are copied as their bits
(unsigned integers of the element's size: one compiled kernel per size, for every dtype).
"""
import numpy as np
from numba import prange

from .. import _buffers, _threading
from ._elements import smaller
from ._jit import kernel

BLOCK = 32


@kernel(inline="always")
def _tile(src, dst, t):
    """Tile t of dst[o, p, c] = src[o, c, p] (tiles in (o, c, p) order)."""
    outer, chans, inner = src.shape
    blocks_c = (chans + BLOCK - 1) // BLOCK
    blocks_p = (inner + BLOCK - 1) // BLOCK
    o, r = divmod(t, blocks_c * blocks_p)
    bc, bp = divmod(r, blocks_p)
    c0, p0 = bc * BLOCK, bp * BLOCK
    c1, p1 = smaller(chans, c0 + BLOCK), smaller(inner, p0 + BLOCK)
    for p in range(p0, p1):
        for c in range(c0, c1):
            dst[o, p, c] = src[o, c, p]


@kernel(inline="always")
def _tiles(src):
    outer, chans, inner = src.shape
    return outer * ((chans + BLOCK - 1) // BLOCK) * ((inner + BLOCK - 1) // BLOCK)


@kernel()
def swap_serial(src, dst):
    for t in range(_tiles(src)):
        _tile(src, dst, t)


@kernel(parallel=True)
def swap_parallel(src, dst):
    for t in prange(_tiles(src)):
        _tile(src, dst, np.int64(t))  # (prange's index is unsigned)


_BITS = {2: np.uint16, 4: np.uint32, 8: np.uint64}


def swapped(a, outer, chans, inner, out=None):
    """a (C-contiguous, native, of 2, 4 or 8 byte elements) seen as (outer, chans, inner),
    transposed into out (a C-contiguous array of a's dtype and size, written as (outer,
    inner, chans)), or into a new (outer, inner, chans) array; returns it."""
    bits = _BITS[a.dtype.itemsize]
    src = a.view(bits).reshape(outer, chans, inner)
    if out is None:
        out = _buffers.empty((outer, inner, chans), a.dtype)  # (pooled: fresh pages cost more)
    dst = out.view(bits).reshape(outer, inner, chans)
    _threading.run_kernel(swap_serial, swap_parallel, a.size, src, dst)
    return out
