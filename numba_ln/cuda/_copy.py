"""Strided copies on the GPU, for what has no row view (numba_ln/cuda/_rowviews.py):
non-trailing axes, broadcasts, other layouts.  A gather fills a contiguous buffer from a
strided view, a scatter writes one back."""
from . import _config
from ._compat import cuda
from ._compile import jit_options


def make_copy_kernel(ndim, scatter):
    """gather: ``dst[i] = src[start + sum(idx_k * strides[k])]`` for i in C order of shape;
    scatter: the reverse.  ``src``/``dst`` are flat 1-D views, strides in elements; the
    assignment converts dtypes."""
    SCATTER = scatter  # a compile-time constant: each kernel keeps only its branch

    def copy(flat, dense, shape, strides, start):
        i = cuda.grid(1)
        step = cuda.gridsize(1)
        while i < dense.size:
            rem = i
            off = start
            for k in range(ndim - 1, -1, -1):
                off += (rem % shape[k]) * strides[k]
                rem //= shape[k]
            if SCATTER:
                flat[off] = dense[i]
            else:
                dense[i] = flat[off]
            i += step

    return copy


_COPY_KERNELS = {}


def copy_kernel(ndim, scatter, threads):
    """The compiled copy kernel, built once per process."""
    key = (ndim, scatter, threads)
    kernel = _COPY_KERNELS.get(key)
    if kernel is None:
        kernel = _COPY_KERNELS[key] = cuda.jit(make_copy_kernel(ndim, scatter),
                                               **jit_options(threads))
    return kernel


def copy_grid(size):
    """(blocks, threads) for a copy of ``size`` elements."""
    threads = _config.COPY_THREADS
    return max(1, min(_config.MAX_BLOCKS, -(-size // threads))), threads
