"""Cache files that cannot be read are cache misses, not errors.

A kernel's cached code lives in an index file (``.nbi``) and data files (``.nbc``) that
Numba reads with pickle and LLVM.  A file cut short (a full disk, a process killed while
copying a cache into an image) or damaged otherwise made every call that needs it raise
Numba's raw error (EOFError, UnpicklingError, "LLVM bitcode parsing error") in every new
process, until the user found and deleted the cache by hand.  Here a load that fails is
logged once and treated as a miss: the kernel compiles and its entry is written anew; a
save that cannot read the damaged index starts a new one.  (Damage that still reads as a
valid file, bytes changed inside the machine code, is not detected: Numba keeps no
checksum.)
"""
import logging
import os

_LOG = logging.getLogger("numba_ln")
_said = set()  # the kernels whose damaged entries were reported (once each)


def _say(name, error):
    if name not in _said:
        _said.add(name)
        _LOG.warning("numba_ln: the cached code of %s could not be read (%s: %s); compiling "
                     "it again", name, type(error).__name__, error)


def tolerant_load(load, name):
    """Numba's Cache.load_overload, a failure to read the entry being a miss (None)."""
    def load_or_miss(sig, target_context):
        try:
            return load(sig, target_context)
        except Exception as error:  # (any reader's error: pickle, LLVM, a decoder)
            _say(name, error)
            return None
    return load_or_miss


def repairing_save(save, cache_file, name):
    """Numba's IndexDataCacheFile.save, which reads the index first: when that index
    cannot be read, it is removed and the save tried once more, with a new index."""
    def save_anew(key, data):
        try:
            return save(key, data)
        except Exception as error:
            if not _index_damaged(cache_file):
                raise  # (another failure: a full disk, permissions)
            _say(name, error)
            os.remove(cache_file._index_path)
            return save(key, data)
    return save_anew


def _index_damaged(cache_file):
    """Whether the cache file's index exists and cannot be read."""
    try:
        cache_file._load_index()
    except FileNotFoundError:
        return False
    except Exception:
        return os.path.exists(cache_file._index_path)
    return False
