"""Output buffers for allocating calls: large outputs come from a pool of buffers that no
array references any more, whose pages are already mapped.

Why: a fresh 64 MB output costs more than normalizing into it.  NumPy allocates arrays
above glibc's mmap threshold (at most 32 MB) with a new mapping every time, and the kernel
faults in and zeroes each page on first touch: on the development machine ``np.empty``
plus a fill of 64 MB took 7.0 ms against 2.2 ms for the fill alone, and allocating
layer_norm ran at 0.41 of the speed line against 0.73 with ``out=``.  onnxruntime's arena
and torch's CUDA caching allocator solve the same problem the same way.

How it stays NumPy: every output is a view of a pooled buffer (a 1-D uint8 array the pool
owns), and a buffer is handed out again only when the pool's own references are the only
ones left, i.e. no array -- the result, a view of it, anything holding either -- can see
its memory any more.  numba_ln never writes to an array it has returned.

Bounds: outputs of at least ``min_bytes`` (1 MiB) are pooled, and the pool keeps at most
``max_bytes`` (256 MiB) of buffers; beyond that an allocation is a plain ``np.empty``, and
the least recently used free buffers are dropped to make room.  ``release_buffers()``
returns every free buffer to the system; ``set_buffer_pool(max_bytes=0)`` turns pooling
off.  Buffers start on a 64-byte boundary and 1 KiB past a page boundary: vector stores
do not straddle cache lines, and the output's rows do not alias the input's at 4 KiB
distances (NumPy's large arrays start 16 bytes past a page).
"""
import sys
import threading

import numpy as np

from . import _stand_ins
from ._validate import count_or_none

_LOCK = threading.Lock()
# An allocation waits at most this long for the pool, then takes a fresh array: the lock is
# held for microseconds, but a call from a signal handler that interrupted this thread inside
# the pool would wait for itself forever (a helper's SIGALRM handler calling layer_norm hung
# within a few hundred calls).  Not an RLock: the interrupted take may be half done.
_WAIT_S = 0.1
_ALIGN = 64  # (the page offset below is a multiple of it)
_OFFSET = 1024  # bytes past a page boundary (see the module docstring)
_PAGE = 4096


class _Pool:
    def __init__(self, max_bytes=256 << 20, min_bytes=1 << 20):
        self.max_bytes = max_bytes
        self.min_bytes = min_bytes
        # [nbytes, raw, start]: raw owns the memory (every view's .base is raw), the buffer
        # is raw[start:start + nbytes]; in order of last use, most recent last.
        self.buffers = []
        self.total = 0

    def take(self, nbytes):
        """A free buffer of nbytes (a fresh one if none), or None when not pooled."""
        if self.total > self.max_bytes:  # (the limit was lowered while buffers were in use)
            self._make_room(0)
        for i, entry in enumerate(self.buffers):
            if entry[0] == nbytes and _free(entry):
                self.buffers.append(self.buffers.pop(i))
                return entry[1][entry[2]:entry[2] + nbytes]
        if nbytes > self.max_bytes:
            return None
        self._make_room(nbytes)
        if self.total + nbytes > self.max_bytes:
            return None
        raw = np.empty(nbytes + _PAGE + _ALIGN, np.uint8)
        start = (_OFFSET - raw.ctypes.data) % _PAGE
        self.buffers.append([nbytes, raw, start])
        self.total += nbytes
        return raw[start:start + nbytes]

    def _make_room(self, nbytes):
        i = 0
        while self.total + nbytes > self.max_bytes and i < len(self.buffers):
            if _free(self.buffers[i]):  # drop the oldest free buffers first
                self.total -= self.buffers.pop(i)[0]
            else:
                i += 1

    def release(self):
        # One pass, deciding each entry once: another thread may free a buffer (drop its
        # last view, no lock needed) at any moment, and entries are lists holding arrays,
        # so they must never be looked up by == (list.remove compared raw arrays
        # elementwise and raised ValueError).
        kept = []
        for entry in self.buffers:
            if _free(entry):
                self.total -= entry[0]
            else:
                kept.append(entry)
        self.buffers = kept


def _free(entry):
    """No array but the pool's entry references the buffer: its refcount is the entry's
    reference plus getrefcount's argument (every view of it refers to raw directly)."""
    return sys.getrefcount(entry[1]) == 2


_POOL = _Pool()


def empty(shape, dtype):
    """np.empty(shape, dtype), from the pool when the array is large enough."""
    if not isinstance(dtype, np.dtype):  # (np.dtype() costs as much as np.empty at (1, 768))
        dtype = np.dtype(dtype)
    count = 1
    for n in shape:
        count *= n
    nbytes = count * dtype.itemsize
    if nbytes < _POOL.min_bytes or _POOL.max_bytes == 0:
        if _POOL.buffers and _POOL.max_bytes == 0:  # (pooling turned off while buffers
            with _briefly_locked() as locked:      # were in use: drop them once free)
                if locked:
                    _POOL._make_room(0)
        return _fresh(shape, dtype)
    with _briefly_locked() as locked:
        if locked:
            try:
                base = _POOL.take(nbytes)
            except MemoryError:  # (a fresh buffer did not fit: _fresh frees the pool's first)
                base = None
            if base is not None:
                return base.view(dtype).reshape(shape)
    return _fresh(shape, dtype)


class _briefly_locked:
    """The pool's lock, waited on for at most _WAIT_S; ``with`` gives whether it is held.
    (A class: as a generator's context manager it cost ~1.05 us a pooled allocation,
    ~0.5 us now; a (256, 1024) call's Python is ~10 us.)"""

    __slots__ = ("locked",)

    def __enter__(self):
        self.locked = _LOCK.acquire(timeout=_WAIT_S)
        return self.locked

    def __exit__(self, *exc):
        if self.locked:
            _LOCK.release()


def _fresh(shape, dtype):
    """np.empty(shape, dtype); when that runs out of memory while the pool keeps free
    buffers, they are given back and the allocation tried once more (as torch's caching
    allocator frees its cache): pooling never turns a call that fits into a MemoryError."""
    try:
        return np.empty(shape, dtype)
    except MemoryError:
        freed = False
        with _briefly_locked() as locked:
            if locked:
                before = _POOL.total
                _POOL.release()
                freed = _POOL.total != before
        if not freed:  # (nothing was free, or the pool busy: the error stands)
            raise
        return np.empty(shape, dtype)


def release_buffers():
    """Return every pooled output buffer that no array uses to the system.

    Allocating numba_ln calls keep large output buffers (1 MiB and more, 256 MiB at most)
    for reuse once no array references them; this frees those now.  Buffers still in use
    are kept until they are free.  The scratch rows of statistics nobody asked for (up to
    1.5 MiB for each of at most 64 row counts) are freed too.

    Examples
    --------
    >>> import numba_ln
    >>> numba_ln.release_buffers()
    """
    with _LOCK:
        _POOL.release()
    _stand_ins.release()


def set_buffer_pool(max_bytes=None, min_bytes=None):
    """Set the output-buffer pool's limits; returns the previous ``(max_bytes, min_bytes)``.

    ``max_bytes``: the most the pool keeps (0 turns pooling off and frees what is free;
    buffers in use when the limit drops are freed once no array uses them, at the next
    large allocating call or ``release_buffers()``); ``min_bytes``: the smallest output that is
    pooled.  None leaves a limit as it is.  Each an int (NumPy's too) >= 0.

    Examples
    --------
    >>> import numba_ln
    >>> old = numba_ln.set_buffer_pool(max_bytes=0)   # plain np.empty from now on
    >>> _ = numba_ln.set_buffer_pool(*old)
    """
    max_bytes = count_or_none(max_bytes, "max_bytes", 0)
    min_bytes = count_or_none(min_bytes, "min_bytes", 0)
    with _LOCK:
        old = (_POOL.max_bytes, _POOL.min_bytes)
        if max_bytes is not None:
            _POOL.max_bytes = max_bytes
            _POOL._make_room(0)
        if min_bytes is not None:
            _POOL.min_bytes = min_bytes
    return old


def pooled_bytes():
    """(bytes held by the pool, bytes of them in use by live arrays)."""
    with _LOCK:
        used = sum(e[0] for e in _POOL.buffers if not _free(e))
        return _POOL.total, used
