"""numba_ln on NVIDIA GPUs: the public functions for device arrays.

``numba_ln.layer_norm`` and friends send GPU arrays here (numba_ln/_api.py imports this
package on the first one, so ``import numba_ln`` never needs CUDA).  Calling these directly
is the same, minus the dispatch.

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
from .._validate import normalize_axes
from ._front import run as _run
from ._kernels import STATS_MEAN_RSTD, STATS_MEAN_VAR, STATS_NONE, STATS_RSTD

__all__ = ["layer_norm", "rms_norm", "add_layer_norm", "add_rms_norm", "moments"]


def layer_norm(x, weight=None, bias=None, *, axis=-1, eps=1e-5, out=None, return_stats=False):
    """Layer normalization of a GPU array; see :func:`numba_ln.layer_norm`.

    Returns y, or (y, mean, rstd) with the statistics in keepdims shape.
    """
    y, _, mean, rstd = _run(x, None, weight, bias, axis, eps, out, None, centered=True,
                            stats=STATS_MEAN_RSTD if return_stats else STATS_NONE,
                            want_y=True)
    return (y, mean, rstd) if return_stats else y


def rms_norm(x, weight=None, *, axis=-1, eps=1e-6, out=None, return_stats=False):
    """RMS normalization of a GPU array; see :func:`numba_ln.rms_norm`.

    Returns y, or (y, rstd).
    """
    y, _, rstd, _ = _run(x, None, weight, None, axis, eps, out, None, centered=False,
                         stats=STATS_RSTD if return_stats else STATS_NONE, want_y=True)
    return (y, rstd) if return_stats else y


def add_layer_norm(x, residual, weight=None, bias=None, *, axis=-1, eps=1e-5, out=None,
                   residual_out=None, return_stats=False):
    """``s = x + residual``, ``y = layer_norm(s)`` in one pass; see
    :func:`numba_ln.add_layer_norm`.  Returns (y, s), or (y, s, mean, rstd)."""
    y, s, mean, rstd = _run(x, residual, weight, bias, axis, eps, out, residual_out,
                            centered=True,
                            stats=STATS_MEAN_RSTD if return_stats else STATS_NONE,
                            want_y=True)
    return (y, s, mean, rstd) if return_stats else (y, s)


def add_rms_norm(x, residual, weight=None, *, axis=-1, eps=1e-6, out=None, residual_out=None,
                 return_stats=False):
    """``s = x + residual``, ``y = rms_norm(s)`` in one pass; see
    :func:`numba_ln.add_rms_norm`.  Returns (y, s), or (y, s, rstd)."""
    y, s, rstd, _ = _run(x, residual, weight, None, axis, eps, out, residual_out,
                         centered=False, stats=STATS_RSTD if return_stats else STATS_NONE,
                         want_y=True)
    return (y, s, rstd) if return_stats else (y, s)


def moments(x, axis=-1, *, keepdims=False):
    """(mean, var) over ``axis`` of a GPU array; see :func:`numba_ln.moments`.

    float32 for float16/float32 data, float64 otherwise.
    """
    _, _, mean, var = _run(x, None, None, None, axis, 0.0, None, None, centered=True,
                           stats=STATS_MEAN_VAR, want_y=False)
    if not keepdims:
        axes = normalize_axes(axis, len(mean.shape))
        shape = tuple(n for a, n in enumerate(mean.shape) if a not in axes)
        mean, var = mean.reshape(shape), var.reshape(shape)
    return mean, var
