"""numba_ln on NVIDIA GPUs: the GPU backend.

``numba_ln.layer_norm`` and friends send GPU arrays here (the registry in
numba_ln/_backends.py imports this package on the first one, so ``import numba_ln``
never needs CUDA); ``run`` is the entry point every public function calls.

Accepted arrays: anything with ``__cuda_array_interface__`` (CuPy, detached torch CUDA
tensors, Numba device arrays) and, under ``NUMBA_ENABLE_CUDASIM=1``, the simulator's device
arrays.  Results are Numba device arrays (``out=``/``residual_out=`` may be any GPU array and
are written in place and returned as given).  Host weight/bias/residual are copied to the
device; a host ``out`` is a TypeError.  Kernels run on the producer's current stream (CuPy's
or torch's current stream, a Numba array's own stream) and nothing waits for them.

Same axis, dtype, eps, stats and error rules as the CPU functions, plus float16: float16 in
gives float16 out, computed in float32; weight/bias are used in float32 and statistics come
back in float32 (as torch's ``native_layer_norm`` does).  Everything is computed in float32
for float16/float32 data and float64 for float64 data (and integers/bools, which give
float64 as on the CPU).
"""
from ._front import run

__all__ = ["run"]
