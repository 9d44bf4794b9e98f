"""Stand-ins for optional kernel arguments a call leaves out, where one costs nothing
measurable, so that fewer kernels compile.

Numba compiles a kernel once per combination of argument types, None being a type of its
own, and each combination costs seconds of LLVM on a cold cache: Numba links every helper
a kernel calls into it and optimizes the whole again.  So:

* statistics nobody asked for are written into scratch rows the caller never sees (two
  stores per row): a call with ``return_stats`` and one without share a kernel;
* the backward takes given statistics as float64 whatever their dtype (widening is exact),
  and RMSNorm's absent mean as zeros (the kernel reads 0 for an absent one).

Not weight and bias: ones and -0.0 would give the same bits (exact identities), but two
more loads per element cost 5-21% in the forward and 9-18% in the backward (measured with
2 threads, float32 (64, 768) to (4096, 1024), 16-bit included), so calls without them
keep kernels of their own.

Stand-ins are cached per row count (a few per process; at most _KEPT row counts, each up
to SCRATCH_MAX_ROWS rows: 1 MiB of scratch and 0.5 MiB of zeros) until
numba_ln.release_buffers(); the zeros are only read.
"""
import numpy as np

SCRATCH_MAX_ROWS = 65536  # beyond it an allocation is negligible next to the kernel

# Shared by every thread: two calls may write one scratch at once (the parallel kernels
# release the GIL while their threads run), which is harmless, since nothing reads it;
# the zeros are only read.
_SCRATCH = {}
_ZEROS = {}
_KEPT = 64  # distinct row counts kept per cache


def stats(rows):
    """(mean, second) float64 rows for a kernel whose caller discards them."""
    return _cached(_SCRATCH, rows, _two_rows)


def zeros(rows):
    """A mean of zeros (the backward's stand-in for RMSNorm's absent mean)."""
    return _cached(_ZEROS, rows, np.zeros)


def release():
    """Drop the cached stand-ins (numba_ln.release_buffers): a kernel running now keeps
    the ones it holds."""
    _SCRATCH.clear()
    _ZEROS.clear()


def _two_rows(rows):
    return np.empty(rows), np.empty(rows)


def _cached(cache, rows, make):
    """make(rows), kept per row count.  (make a function of rows, not a closure made per
    call: the lookup is on every general-path call, ~0.1 us of it the closure.)"""
    if rows > SCRATCH_MAX_ROWS:
        return make(rows)
    found = cache.get(rows)
    if found is None:
        if len(cache) >= _KEPT:
            cache.clear()
        found = cache[rows] = make(rows)
    return found
