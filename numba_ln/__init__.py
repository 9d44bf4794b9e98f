"""numba_ln: exact LayerNorm, RMSNorm and fused residual norms at memory speed.

CPU kernels are compiled with Numba (parallel over rows, at the data's SIMD width, with
exact statistics); GPU arrays (CuPy, torch CUDA tensors, Numba device arrays) go to
numba.cuda kernels, imported lazily.
"""
import numba as _numba

if _numba.config.DISABLE_JIT:
    # (the kernels' loads, stores and launches are Numba intrinsics, which have no Python
    # form: run as Python, calls returned uninitialized memory, without an error)
    raise ImportError("numba_ln needs Numba's compiler: it cannot run with "
                      "NUMBA_DISABLE_JIT=1 (its kernels exist only as compiled code); unset "
                      "NUMBA_DISABLE_JIT")
del _numba

from . import _threading  # noqa: F401,E402  (selects a fork- and thread-safe layer first)
from ._api import add_layer_norm, add_rms_norm, layer_norm, moments, rms_norm  # noqa: E402
from ._backward_api import layer_norm_backward, rms_norm_backward  # noqa: E402
from ._buffers import release_buffers, set_buffer_pool  # noqa: E402
from . import _njit  # noqa: F401,E402  (makes them callable inside users' @njit code)
from ._modules import LayerNorm, RMSNorm  # noqa: E402

__version__ = "0.1.0"


def __getattr__(name):
    # numba_ln.precompile(): the module numba_ln/precompile.py, which is callable, imported
    # on first use (importing it here would make `python -m numba_ln.precompile` warn)
    if name == "precompile":
        import importlib

        return importlib.import_module(".precompile", __name__)
    raise AttributeError(f"module 'numba_ln' has no attribute {name!r}")


__all__ = [
    "layer_norm",
    "rms_norm",
    "add_layer_norm",
    "add_rms_norm",
    "moments",
    "layer_norm_backward",
    "rms_norm_backward",
    "LayerNorm",
    "RMSNorm",
    "release_buffers",
    "set_buffer_pool",
    "precompile",
]
