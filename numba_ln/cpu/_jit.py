"""The one place kernels are compiled from: ``@kernel(...)`` is ``numba.njit`` with the
on-disk cache on (a new process loads machine code instead of recompiling), NumPy's
floating-point error model and the kernels' fastmath flags (``_config.KERNEL_FASTMATH``).

Numba caches next to the source (``__pycache__``) or, when that folder is read-only, in
the user's cache folder.  When neither is writable it refuses to decorate; we then compile
without a cache rather than fail at import.  Processes sharing a cache cooperate: each
kernel signature is compiled by one of them while the others wait and load it (locks
below).
"""
import contextlib
import hashlib
import logging
import os
import threading
import warnings
from pathlib import Path

import numba
from numba.core import event

try:
    import fcntl
except ImportError:  # (not POSIX: Numba's unlocked saves)
    fcntl = None

from .. import _config
from ._damaged_cache import (checked_load, refused_saves_skipped, repairing_save,
                             tolerant_load)
from ._interrupts import held_off, interruptible

try:  # (Numba's reentrant lock around every compilation; a Numba without it: none here)
    from numba.core.compiler_lock import global_compiler_lock as _COMPILER_LOCK
except ImportError:
    _COMPILER_LOCK = contextlib.nullcontext()

try:  # (Numba internals: on a Numba without them, kernels link as Numba links them)
    from ._local_copies import LINK_LATE as _LINK_LATE
    from ._local_copies import Pipeline as _PIPELINE
except ImportError:
    _PIPELINE = None

_warned = False

# The jit options of an overload implementation that is a thin caller (the small kernels'
# bodies): the kernels' pipeline, so that its library links what it calls late
# (_local_copies.link_after_optimizing).  {} on a Numba without that pipeline.
THIN_CALLER = {} if _PIPELINE is None else {"pipeline_class": _PIPELINE}


def link_after_optimizing(func):
    """Mark func (a kernel's or an overload implementation's Python function) as a thin
    caller: the kernels it calls are linked into its library after its own module is
    optimized (_local_copies).  Returns func; nothing on a Numba without that pipeline."""
    if _PIPELINE is not None:
        setattr(func, _LINK_LATE, True)
    return func

# Numba invalidates a cached kernel only when the file that defines it changes, but our
# kernels inline helpers from their sibling modules and read _config at compile time:
# with Numba's stamp alone, an edit to _moments.py leaves rows.py's cached kernels running
# the old code (it happened twice while tuning, silently).  Numba has no public way to name
# a function's dependencies, so every kernel's stamp is replaced by a SHA-256 of the
# contents of all of them (the defining file is one).  Contents, not mtimes and sizes (the
# stamp of Numba < 0.68): a cache built into a container image or copied to another
# machine stays valid, since a copy changes every mtime and no byte.  Checked on Numba
# 0.68.1 by tests/test_concurrency.py::test_cached_kernels_follow_the_sources_contents,
# which fails without it; on a Numba whose internals differ the guard below leaves Numba's
# own stamp, which is only less strict.
# (_threading.py too: its even_tasks is compiled into the small backward kernels' task
# split, tests/test_cache_files.py checks that no other module outside cpu/ is)
_DEPENDENCIES = sorted(Path(__file__).parent.glob("*.py")) + [
    Path(__file__).parent.parent / "_config.py", Path(__file__).parent.parent / "_threading.py"
]


def _sources_digest():
    digest = hashlib.sha256()
    for path in _DEPENDENCIES:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


# The kernels' sources, as one digest (_named_calls names a kernel's code by it)
SOURCES_DIGEST = _sources_digest()


def _dependencies_stamp():
    digest = hashlib.sha256(SOURCES_DIGEST.encode())
    # (and the one compile-time setting that comes from the environment)
    digest.update(f"vector bits {_config.PREFERRED_VECTOR_BITS}".encode())
    return "numba_ln-sha256:" + digest.hexdigest()


def _prepare_cache(dispatcher):
    """Replace the dispatcher's cache stamp, lock its saves, and read a damaged entry as a
    miss (_damaged_cache; Numba internals, hence the guards: on a Numba without them its
    own stamp, loads and saves stay)."""
    cache_file = getattr(getattr(dispatcher, "_cache", None), "_cache_file", None)
    if cache_file is not None and hasattr(cache_file, "_source_stamp"):
        cache_file._source_stamp = _DEPENDENCIES_STAMP
    if fcntl is not None and hasattr(cache_file, "save") and hasattr(cache_file, "_cache_path"):
        name = f"{dispatcher.py_func.__module__}.{dispatcher.py_func.__qualname__}"
        folder = cache_file._cache_path
        if hasattr(cache_file, "_load_index") and hasattr(cache_file, "_index_path"):
            cache_file.save = repairing_save(cache_file.save, cache_file, name)
            cache_file.load = checked_load(cache_file.load, name, folder)
        cache_file.save = _locked(cache_file.save, folder)
        cache = dispatcher._cache
        if hasattr(cache, "save_overload"):  # (its folder check, before the save, too)
            cache.save_overload = refused_saves_skipped(cache.save_overload, cache_file, name)
        if hasattr(cache, "load_overload") and hasattr(dispatcher, "compile"):
            load = tolerant_load(cache.load_overload, name, folder)  # (damaged files: a miss)
            cache.load_overload = _waiting_load(load, folder, name)
            dispatcher.compile = _releasing(dispatcher.compile)


# Numba's save of a kernel reads the module's index, picks the first free data-file number,
# writes the index and the data file, without a lock.  Two processes compiling kernels of one
# module at once (a cold start of several workers, precompile's processes) can then pick the
# same number for two kernels, and the index may end up naming another kernel's machine
# code: numba/numba#4807.  Each file is written whole (temporary file and rename), so one
# lock per cache folder around the whole save is enough: every save then sees the others'
# entries.  Loads need none (they read whole files).
def _locked(save, folder):
    def locked_save(key, data):
        # A lock file that cannot be made, opened or locked (a shared folder whose lock
        # file another user owns, a file system without locks): saved as Numba saves,
        # unlocked, rather than failing the user's call.
        try:
            os.makedirs(folder, exist_ok=True)
            lock = open(os.path.join(folder, "numba_ln.lock"), "a")
        except OSError:
            return save(key, data)
        with lock:
            try:
                with interruptible():  # (Ctrl-C while another process saves: _interrupts)
                    fcntl.flock(lock, fcntl.LOCK_EX)  # (released when the file closes)
            except OSError:
                pass
            return save(key, data)
    return locked_save


# A process about to compile a kernel that another process is compiling waits for it and
# loads it from the cache instead (4 cold processes making the same first calls took 2.15x
# the time of one without this).  Numba tries the cache first (load_overload), compiles on
# a miss and saves: after a miss we take an exclusive lock for that kernel and signature,
# and try the cache again once we hold it; the lock is kept while Numba compiles and saves,
# and released when Dispatcher.compile returns or raises.  Kernels calling kernels take
# locks callers-first, along the call graph, which has no cycles: no deadlock.  One small
# lock file per kernel signature, in the module's cache folder.
class _ThreadLocks(threading.local):
    def __init__(self):
        self.held = []  # this thread's compile locks, innermost last


_LOCKS = _ThreadLocks()


def _waiting_load(load, folder, name):
    def waiting_load(sig, target_context):
        found = load(sig, target_context)
        if found is not None:
            return found
        key = hashlib.sha256(f"{name}{sig}".encode()).hexdigest()[:16]
        try:
            os.makedirs(folder, exist_ok=True)
            lock = open(os.path.join(folder, f"numba_ln-compiling-{key}.lock"), "a")
            with interruptible():  # (Ctrl-C while waiting: _interrupts)
                fcntl.flock(lock, fcntl.LOCK_EX)  # (waits while another process compiles it)
        except OSError:  # (a file system without locks: compile without waiting)
            return None
        found = load(sig, target_context)
        if found is not None:
            lock.close()
            return found
        _LOCKS.held.append(lock)
        _ALL_HELD.add(lock)
        return None
    return waiting_load


def _holding_interrupts(compile_):
    # (Numba's compiler lock, which Dispatcher.compile takes first, is waited for before
    # SIGINT is held off: while other threads compile, a Ctrl-C waited for all of them,
    # 10-40 s; that wait leaves nothing half done, and plain Numba is interrupted there)
    def holding_compile(sig):
        with _COMPILER_LOCK, held_off():  # (_interrupts; outside _releasing: the locks'
            return compile_(sig)          # release too)
    return holding_compile


def _releasing(compile_):
    def releasing_compile(sig):
        held = _LOCKS.held
        depth = len(held)
        try:
            return compile_(sig)
        finally:
            while len(held) > depth:
                lock = held.pop()
                _ALL_HELD.discard(lock)
                lock.close()  # (closing releases the flock)
    return releasing_compile


# A child forked while a thread compiles shares that lock (flock belongs to the open file,
# which fork shares): it must not keep it after the parent is done.  Closing the child's
# copies leaves the parent's lock held until the parent closes its own.
_ALL_HELD = set()


def _close_inherited_locks():
    for lock in list(_ALL_HELD):
        lock.close()
    _ALL_HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_inherited_locks)


_DEPENDENCIES_STAMP = _dependencies_stamp()


class _FirstCompileNotice(event.Listener):
    """Logs one line, the first time in a process that one of our kernels compiles (not
    when it loads from the cache): a first call may take seconds, and the user should know
    why and that it happens once.  ``NUMBA_LN_QUIET=1`` or the ``numba_ln`` logger's level
    silences it."""

    said = False

    def on_start(self, ev):
        dispatcher = ev.data.get("dispatcher")
        func = getattr(dispatcher, "py_func", None)
        # (a user's function compiled from exec'd code has __module__ None)
        if self.said or not (getattr(func, "__module__", None) or "").startswith(__package__):
            return
        self.said = True
        if os.environ.get("NUMBA_LN_QUIET", "") not in ("", "0"):
            return
        logging.getLogger("numba_ln").warning(
            "numba_ln: compiling kernels (first: %s for %s) on first use; they are cached "
            "afterwards (NUMBA_LN_QUIET=1 silences this; `python -m numba_ln.precompile` "
            "compiles the common ones ahead)", func.__name__, _array_dtypes(ev.data["args"]))

    def on_end(self, ev):
        pass


def _array_dtypes(types):
    """The distinct dtypes of the arrays among Numba argument types (inside tuples too)."""
    found, stack = [], list(types)
    while stack:
        t = stack.pop(0)
        if isinstance(t, numba.types.BaseTuple):
            stack[:0] = list(t.types)
        elif isinstance(t, numba.types.Array):
            name = _BITS.get(str(t.dtype), str(t.dtype))
            if name not in found:
                found.append(name)
    return ", ".join(found) or "scalars"


_BITS = {"int16": "float16", "uint16": "bfloat16"}  # 16-bit floats reach kernels as bits


event.register("numba:compile", _FirstCompileNotice())


def kernel(**options):
    # IEEE division (x/0 -> inf or NaN, like NumPy) instead of Python's ZeroDivisionError;
    # it also spares every division a zero check.
    options.setdefault("error_model", "numpy")
    # Explicit, so that a kernel first compiled from a user's @njit(fastmath=True) code
    # does not inherit flags that would let NaN and inf vanish (see _config).
    options.setdefault("fastmath", _config.KERNEL_FASTMATH)
    # The same machine code cold and cached (_local_copies)
    if _PIPELINE is not None:
        options.setdefault("pipeline_class", _PIPELINE)
    # (a thin caller: the kernels it calls are linked after its own optimization,
    # _local_copies.link_after_optimizing)
    link_late = options.pop("link_late", False)

    def decorate(func):
        global _warned
        if link_late:
            link_after_optimizing(func)
        try:
            dispatcher = numba.njit(cache=True, **options)(func)
        except RuntimeError as exc:  # "cannot cache function ...: no locator available"
            if not _warned:
                _warned = True
                warnings.warn(
                    f"numba_ln: no writable cache folder ({exc}); kernels compile in every "
                    "process. Set NUMBA_CACHE_DIR to a writable folder to cache them.",
                    RuntimeWarning,
                    stacklevel=2,
                )
            dispatcher = numba.njit(cache=False, **options)(func)
        else:
            _prepare_cache(dispatcher)
        if hasattr(dispatcher, "compile"):  # (Ctrl-C between kernels, not inside Numba)
            dispatcher.compile = _holding_interrupts(dispatcher.compile)
        return dispatcher

    return decorate
