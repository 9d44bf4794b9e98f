"""Which numba.cuda this is: numba-cuda (preferred), Numba's built-in (deprecated in Numba
0.68), or either one's simulator (``NUMBA_ENABLE_CUDASIM=1``).

The differences the GPU modules care about are settled here, once:

- ``SIMULATOR``: kernels run as Python threads; no warp shuffles, no intrinsics, device
  arrays are ``FakeCUDAArray`` (no ``__cuda_array_interface__``, no external streams).
- ``types`` / ``intrinsic`` / ``cgutils``: numba-cuda ships its own copies.  Kernels call
  no ``cuda.jit(device=True)`` functions (only intrinsics and inline code): a device
  function compiles through a dispatcher that asks the driver for the current device's
  compute capability, and ``compile_ptx`` must work without a GPU.
"""
from numba import cuda

try:  # numba-cuda has a full type system of its own
    from numba.cuda import types

    types.float32
except (ImportError, AttributeError):  # Numba's built-in numba.cuda (its .types is partial)
    from numba import types

try:
    from numba.cuda import cgutils
except ImportError:
    from numba.core import cgutils

try:  # the CUDA target's intrinsic (numba-cuda's own, or the built-in's target='cuda' one)
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
