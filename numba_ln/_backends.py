"""The backend registry: the type of x picks the backend, once per call.

Each backend is a module with ``run(variant, x, residual, weight, bias, axis, eps, out,
residual_out, return_stats, keepdims)`` returning what the public function returns (see
_variants).  Backends are imported on first use: ``import numba_ln`` needs neither CUDA
nor dask.  An array no predicate claims goes to the CPU backend (NumPy arrays, and
anything ``np.asarray`` reads).  Adding a backend is one ``register`` call.
"""
import importlib
import sys

import numpy as np

from . import _engine  # the CPU backend: always there

_REGISTRY = []  # (name, predicate, module), in order of precedence


def register(name, predicate, module):
    """Send arrays for which ``predicate(x)`` is true to ``module`` (imported lazily)."""
    _REGISTRY.append((name, predicate, module))


def backend_for(x):
    """The backend module for a call whose array is x."""
    if type(x) is not np.ndarray:
        for _, predicate, module in _REGISTRY:
            if predicate(x):
                return importlib.import_module(module)
    return _engine


def is_gpu_array(a):
    """CuPy, torch CUDA and Numba device arrays, and the CUDA simulator's fake arrays."""
    if isinstance(a, np.ndarray):
        return False
    return hasattr(a, "__cuda_array_interface__") or type(a).__name__ == "FakeCUDAArray"


def is_dask_array(a):
    """dask.array.Array and its subclasses, without importing dask (none exists before)."""
    core = sys.modules.get("dask.array.core")
    return core is not None and isinstance(a, core.Array)


register("cuda", is_gpu_array, "numba_ln.cuda")
register("dask", is_dask_array, "numba_ln.dask")
