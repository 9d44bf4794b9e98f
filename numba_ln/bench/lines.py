"""The speed line: copies of the bytes a function moves, the floor no kernel can beat.

``line-copyto`` copies each array the function reads into one it writes with
``np.copyto`` (single-threaded); ``line-prange`` does the same with a Numba ``prange`` loop
(all threads).  The speed line of a round is the faster of the two.  Both copy raw
elements (viewed as unsigned integers of the same width), so they serve any dtype: a
16-bit case gets a 16-bit copy.
"""
import numba
import numpy as np

from .base import Contender, Skip
from .check import check_line

LINES = ("line-copyto", "line-prange")

_COPY_BLOCK = 16384  # elements per prange task: 64 KiB of float32, large enough to stream


@numba.njit(parallel=True, cache=True)
def prange_copy(dst, src):
    # Unsigned indices: Numba skips its negative-index wraparound, which stops vectorization.
    n = np.uint64(src.size)
    block = np.uint64(_COPY_BLOCK)
    for b in numba.prange((n + block - np.uint64(1)) // block):
        lo = np.uint64(b) * block
        hi = min(lo + block, n)
        for i in range(lo, hi):
            dst[i] = src[i]


@numba.njit(parallel=True, cache=True)
def prange_copy2(y, x, s, r):
    n = np.uint64(x.size)
    block = np.uint64(_COPY_BLOCK)
    for b in numba.prange((n + block - np.uint64(1)) // block):
        lo = np.uint64(b) * block
        hi = min(lo + block, n)
        for i in range(lo, hi):
            y[i] = x[i]
        for i in range(lo, hi):
            s[i] = r[i]


def _raw(a):
    """A flat view of ``a``'s elements as unsigned integers (inputs are C-contiguous)."""
    return a.reshape(-1).view(np.dtype(f"u{a.dtype.itemsize}"))


def _pairs(inp):
    """(source, fresh destination) for each data array the function reads and writes."""
    if len(inp.spec.reads) != len(inp.spec.writes):
        raise Skip(f"no copy line defined for {inp.func} (reads {len(inp.spec.reads)} arrays, "
                   f"writes {len(inp.spec.writes)})")
    return [(src, np.empty_like(src)) for src in inp.reads]


def _result(dsts):
    return dsts[0] if len(dsts) == 1 else tuple(dsts)


def line_copyto(inp, threads):
    pairs = _pairs(inp)
    result = _result([d for _, d in pairs])

    def call():
        for src, dst in pairs:
            np.copyto(dst, src)
        return result
    text = "; ".join(f"np.copyto({w}, {r})" for r, w in zip(inp.spec.reads, inp.spec.writes))
    return Contender("line-copyto", call, text, check=check_line)


_PRANGE = {1: prange_copy, 2: prange_copy2}


def line_prange(inp, threads):
    pairs = _pairs(inp)
    if len(pairs) not in _PRANGE:
        raise Skip(f"no prange copy of {len(pairs)} arrays")
    kernel = _PRANGE[len(pairs)]
    args = [_raw(a) for src, dst in pairs for a in (dst, src)]
    result = _result([d for _, d in pairs])

    def call():
        kernel(*args)
        return result
    text = " and ".join(f"{r} -> {w}" for r, w in zip(inp.spec.reads, inp.spec.writes))
    return Contender("line-prange", call, f"Numba prange copy of {text}", check=check_line)
