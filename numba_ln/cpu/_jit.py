"""The one place kernels are compiled from: ``@kernel(...)`` is ``numba.njit`` with the
on-disk cache on (a new process loads machine code instead of recompiling), NumPy's
floating-point error model and the kernels' fastmath flags (``_config.KERNEL_FASTMATH``).

Numba caches next to the source (``__pycache__``) or, when that folder is read-only, in
the user's cache folder.  When neither is writable it refuses to decorate; we then compile
without a cache rather than fail at import.
"""
import warnings
from pathlib import Path

import numba

from .. import _config

_warned = False

# Numba invalidates a cached kernel only when the file that defines it changes (its index
# stamp is that file's mtime and size), but our kernels inline helpers from their sibling
# modules and read _config at compile time: without the patch below, an edit to
# _moments.py leaves rows.py's cached kernels running the old code (it happened twice
# while tuning, silently).  Numba has no public way to name a function's dependencies, so
# every kernel's stamp is extended with these files' mtimes and sizes.  Checked on Numba
# 0.68.1 by tests/test_concurrency.py::test_editing_a_helper_module_invalidates_cached_
# kernels, which fails without it; on a Numba whose internals differ the guard below
# leaves the per-file stamp, which is only less strict.
_DEPENDENCIES = sorted(Path(__file__).parent.glob("*.py")) + [
    Path(__file__).parent.parent / "_config.py"
]


def _dependencies_stamp():
    return tuple((p.name, p.stat().st_mtime, p.stat().st_size) for p in _DEPENDENCIES)


def _stamp_dependencies(dispatcher):
    """Extend the dispatcher's cache stamp (Numba internals, hence the guards: on a Numba
    without them the per-file stamp stays, which is only less strict)."""
    cache_file = getattr(getattr(dispatcher, "_cache", None), "_cache_file", None)
    if cache_file is not None and hasattr(cache_file, "_source_stamp"):
        cache_file._source_stamp = (cache_file._source_stamp, _DEPENDENCIES_STAMP)


_DEPENDENCIES_STAMP = _dependencies_stamp()


def kernel(**options):
    # IEEE division (x/0 -> inf or NaN, like NumPy) instead of Python's ZeroDivisionError;
    # it also spares every division a zero check.
    options.setdefault("error_model", "numpy")
    # Explicit, so that a kernel first compiled from a user's @njit(fastmath=True) code
    # does not inherit flags that would let NaN and inf vanish (see _config).
    options.setdefault("fastmath", _config.KERNEL_FASTMATH)

    def decorate(func):
        global _warned
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
            return numba.njit(cache=False, **options)(func)
        _stamp_dependencies(dispatcher)
        return dispatcher

    return decorate
