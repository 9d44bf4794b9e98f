"""The one place kernels are compiled from: ``@kernel(...)`` is ``numba.njit`` with the
on-disk cache on, so a new process loads machine code instead of recompiling, and NumPy's
floating-point error model.

Numba caches next to the source (``__pycache__``) or, when that folder is read-only, in
the user's cache folder.  When neither is writable it refuses to decorate; we then compile
without a cache rather than fail at import.
"""
import warnings

import numba

_warned = False


def kernel(**options):
    # IEEE division (x/0 -> inf or NaN, like NumPy) instead of Python's ZeroDivisionError;
    # it also spares every division a zero check.
    options.setdefault("error_model", "numpy")
    # Explicit, so that a kernel first compiled from a user's @njit(fastmath=True) code
    # does not inherit flags that would let NaN and inf vanish.
    options.setdefault("fastmath", False)

    def decorate(func):
        global _warned
        try:
            return numba.njit(cache=True, **options)(func)
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

    return decorate
