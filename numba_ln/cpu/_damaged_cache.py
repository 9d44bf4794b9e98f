"""Cache files that cannot be read are cache misses, not errors.

A kernel's cached code lives in an index file (``.nbi``) and data files (``.nbc``) that
Numba reads with pickle and LLVM.  A file cut short (a full disk, a process killed while
copying a cache into an image) or damaged otherwise made every call that needs it raise
Numba's raw error (EOFError, UnpicklingError, "LLVM bitcode parsing error") in every new
process, until the user found and deleted the cache by hand.  Here a load that fails is
logged once and treated as a miss: the kernel compiles and its entry is written anew; a
save that cannot read the damaged index starts a new one.  An entry holding another
signature's code is a miss too, and a save the file system refuses is skipped: the
cache only ever saves compiling.  (Damage that still reads as a valid file, bytes changed
inside the machine code, is not detected: Numba keeps no checksum.)
"""
import logging
import os
import signal

from numba.core.typing.templates import Signature

_LOG = logging.getLogger("numba_ln")
_said = set()  # the kernels whose damaged entries were reported (once each)


def _say(name, error, folder):
    """The damaged entry's log line, once a kernel; it names the cache folder, which a
    user may want to delete or inspect."""
    if name not in _said:
        _said.add(name)
        _LOG.warning("numba_ln: the cached code of %s could not be read (%s: %s) from the "
                     "cache folder %s; compiling it again", name, type(error).__name__,
                     error, folder)


def tolerant_load(load, name, folder):
    """Numba's Cache.load_overload, a failure to read the entry being a miss (None)."""
    def load_or_miss(sig, target_context):
        try:
            return load(sig, target_context)
        except Exception as error:  # (any reader's error: pickle, LLVM, a decoder, ...)
            if _from_signal_handler(error):
                raise  # (a SIGALRM timeout that fired during the load: not damage)
            _say(name, error, folder)
            return None
    return load_or_miss


def _from_signal_handler(error):
    """Whether error was raised in a Python signal handler (or a function it called):
    a timeout's exception, of any class, that fired while an entry loaded was taken for
    a damaged entry, logged, the kernel compiled again, and the user's timeout never
    fired.  (Damaged bytes raise anything too -- OverflowError, MemoryError,
    RecursionError from pickle and Numba -- so the class cannot tell them apart.)"""
    handlers = set()
    for signum in signal.valid_signals():
        try:
            handler = signal.getsignal(signum)
        except (ValueError, OSError):
            continue
        for _ in range(8):  # (functools.partial of a partial ...: to the function)
            if not hasattr(handler, "func"):
                break
            handler = handler.func
        if not hasattr(handler, "__code__") and not hasattr(handler, "__func__"):
            handler = getattr(type(handler), "__call__", None)  # (a callable instance)
        code = getattr(getattr(handler, "__func__", handler), "__code__", None)
        if code is not None:
            handlers.add(code)
    frame = error.__traceback__
    while frame is not None:
        if frame.tb_frame.f_code in handlers:
            return True
        frame = frame.tb_next
    return False


def checked_load(load, name, folder):
    """Numba's IndexDataCacheFile.load(key), an entry whose data hold another signature's
    code being a miss (None): an index naming another kernel's data file (the race of
    numba/numba#4807 where saves go unlocked, a cache copied over an older one and cut
    short) ran that code on these arrays, silently wrong (bfloat16 data through the
    float16 kernel) or raising Numba's unboxing error, in every process.  Numba's data
    carry the signature they were compiled for; key[0] is the one asked for.  The miss
    compiles and saves, which writes the right code into the data file the key names."""
    def load_checked(key):
        data = load(key)
        held, asked = _signature_of(data), key[0]
        asked = tuple(asked.args if isinstance(asked, Signature) else asked)
        if held is not None and tuple(held.args) != asked:
            _say(name, LookupError(f"its entry for {asked} held the code of "
                                   f"{tuple(held.args)}"), folder)
            return None
        return data
    return load_checked


def _signature_of(data):
    """The Signature in a cached CompileResult's data (Numba's _reduce: the fourth item),
    or None when the data have another form."""
    if isinstance(data, tuple) and len(data) > 3 and isinstance(data[3], Signature):
        return data[3]
    return None


def repairing_save(save, cache_file, name):
    """Numba's IndexDataCacheFile.save, which reads the index first: when that index
    cannot be read, it is removed and the save tried once more, with a new index."""
    def save_anew(key, data):
        try:
            return save(key, data)
        except Exception as error:
            if not _index_damaged(cache_file):
                raise  # (another failure: a refused save is refused_saves_skipped's)
            _say(name, error, cache_file._cache_path)
            os.remove(cache_file._index_path)
            return save(key, data)
    return save_anew


def refused_saves_skipped(save_overload, cache_file, name):
    """Numba's Cache.save_overload, whose every step -- the check of the cache folder (a
    temporary file made in it), the index and data files -- may be refused by the file
    system: a full disk or one out of inodes, a quota, a file-size limit, a read-only
    remount.  It raised Numba's OSError out of the call, in every process while the disk
    stayed full; now the kernel, compiled, runs uncached, and the refusal is logged once
    a process (unsaved)."""
    def save_or_skip(sig, data):
        try:
            return save_overload(sig, data)
        except OSError as error:
            return unsaved(error, name, cache_file)
    return save_or_skip


def unsaved(error, name, cache_file):
    """The refused save's log line, once a process; None."""
    global _unsaved_said
    if not _unsaved_said:
        _unsaved_said = True
        folder = getattr(cache_file, "_cache_path", "?")
        _LOG.warning("numba_ln: the compiled code of %s could not be saved in the cache "
                     "folder %s (%s: %s); it runs, and compiles again in each new process "
                     "until the folder takes it", name, folder, type(error).__name__, error)
    return None


_unsaved_said = False


def _index_damaged(cache_file):
    """Whether the cache file's index exists and its contents cannot be read.  A file the
    process cannot open or read now (too many open files, another user's file it may not
    read, an I/O error) is not damaged: removing it lost every cached signature of the
    kernel, for every process sharing the cache."""
    try:
        cache_file._load_index()
    except OSError:  # (FileNotFoundError too: no index)
        return False
    except Exception:
        return os.path.exists(cache_file._index_path)
    return False
