"""The speed line: copies of the bytes a function moves, the floor no kernel can beat.

``line-copyto`` copies each array the function reads into one it writes with
``np.copyto`` (single-threaded); ``line-prange`` does the same with a Numba ``prange`` loop
(all threads), and ``line-stream`` with streamed stores, past the caches, as the kernels
write large outputs (numba_ln.cpu._stream; on the development machine 1.2-1.8x the
prange copy's speed at 64-128 MB, no faster at 32 MB and below).  The speed line of a
round is the fastest of the three.  All copy raw elements (viewed as unsigned integers
of the same width), so they serve any dtype: a 16-bit case gets a 16-bit copy.  (The
backward's lines are copies of x by the same kernels: backward_cases._line.)
"""
import numba
import numpy as np

from ..cpu._pointers import address
from ..cpu._stream import stream_end, stream_fence, stream_row, stream_state
from .base import Contender, Skip
from .check import check_line

LINES = ("line-copyto", "line-prange", "line-stream")

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


@numba.njit(parallel=True, cache=True)
def stream_copy1(dst, src):
    n = src.size
    for b in numba.prange((n + _COPY_BLOCK - 1) // _COPY_BLOCK):
        lo = np.int64(b) * _COPY_BLOCK
        count = min(n - lo, _COPY_BLOCK)
        stream_end(stream_row(address(dst, lo), address(src, lo), count, stream_state(dst)))
        stream_fence()


@numba.njit(parallel=True, cache=True)
def stream_copy2(y, x, s, r):
    n = x.size
    for b in numba.prange((n + _COPY_BLOCK - 1) // _COPY_BLOCK):
        lo = np.int64(b) * _COPY_BLOCK
        count = min(n - lo, _COPY_BLOCK)
        stream_end(stream_row(address(y, lo), address(x, lo), count, stream_state(y)))
        stream_end(stream_row(address(s, lo), address(r, lo), count, stream_state(s)))
        stream_fence()


def fastest_copies(times):
    """{copy: rounds in which it was the fastest} of the copies timed ({name: per-round
    times})."""
    names = [k for k in LINES if k in times]
    counts = dict.fromkeys(names, 0)
    for round_times in zip(*(times[k] for k in names)):
        counts[names[round_times.index(min(round_times))]] += 1
    return counts


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
_STREAM = {1: stream_copy1, 2: stream_copy2}


def _threaded_line(name, kernels, what, inp):
    pairs = _pairs(inp)
    if len(pairs) not in kernels:
        raise Skip(f"no {what} of {len(pairs)} arrays")
    kernel = kernels[len(pairs)]
    args = [_raw(a) for src, dst in pairs for a in (dst, src)]
    result = _result([d for _, d in pairs])

    def call():
        kernel(*args)
        return result
    text = " and ".join(f"{r} -> {w}" for r, w in zip(inp.spec.reads, inp.spec.writes))
    return Contender(name, call, f"Numba {what} of {text}", check=check_line)


def line_prange(inp, threads):
    return _threaded_line("line-prange", _PRANGE, "prange copy", inp)


def line_stream(inp, threads):
    return _threaded_line("line-stream", _STREAM, "prange copy with streamed stores", inp)
