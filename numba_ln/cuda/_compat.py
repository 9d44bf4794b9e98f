"""Which numba.cuda this is: numba-cuda (preferred), Numba's built-in (deprecated in Numba
0.68), or either one's simulator (``NUMBA_ENABLE_CUDASIM=1``).

The differences the GPU modules care about are settled here, once:

- ``SIMULATOR``: kernels run as Python threads; no warp shuffles, no intrinsics, device
  arrays are ``FakeCUDAArray`` (no ``__cuda_array_interface__``, no external streams).
- ``types`` / ``intrinsic`` / ``cgutils``: numba-cuda ships its own copies.
"""
from numba import cuda

try:  # numba-cuda
    from numba.cuda import types
except ImportError:  # Numba's built-in numba.cuda
    from numba import types

try:
    from numba.cuda import cgutils
except ImportError:
    from numba.core import cgutils

try:
    from numba.cuda.extending import intrinsic
except ImportError:
    from numba.core.extending import intrinsic


def _simulator():
    config = getattr(cuda, "config", None)
    if config is None:
        from numba.core import config
    return bool(getattr(config, "ENABLE_CUDASIM", False))


SIMULATOR = _simulator()

# numba-cuda installs itself as ``numba.cuda`` from the ``numba_cuda`` distribution.
NUMBA_CUDA = "numba_cuda" in (getattr(cuda, "__file__", None) or "")

__all__ = ["cuda", "types", "cgutils", "intrinsic", "SIMULATOR", "NUMBA_CUDA"]
