"""The dask backend's front: a call on a dask array, validated at call time by the call
spec (numba_ln/_spec.py, the CPU's rules and messages) through the adapter below, then
planned as a dask graph of CPU-kernel tasks (_blocks, _partials).  Nothing is computed
here; shapes, dtypes and chunks are all the plan needs.

Two plans, chosen by x's chunks along the normalized axes:

``whole``  every normalized axis in one chunk: one task per chunk (a ``blockwise`` layer,
           explicit ``meta``) runs the CPU path on the block; the results are the NumPy
           path's, bit for bit.  Several outputs (``(y, s)``, statistics) come from that
           one task, each picked by a cheap blockwise layer.
``split``  a normalized axis over several chunks: a ``da.reduction`` of per-block
           (count, mean, M2) partials in a tree (``split_every``, dask's config), merged
           with Chan's formula, then a blockwise pass normalizes each block with its
           rows' merged statistics.  x is read twice and never rechunked.

x's chunks are never changed.  A residual, weight or bias chunked unlike x (along the
axes they share) is rechunked to x's chunks; NumPy ones are wrapped with
``da.from_array`` in x's chunks (the ``whole`` plan passes NumPy weight and bias to the
tasks as they are).
"""
import math
from functools import partial

import numpy as np

from .. import _dtypes, _rstd, _spec, _validate
from .._backends import is_dask_array
from .._variants import STATS_MEAN_RSTD, STATS_MEAN_VAR, STATS_RSTD
from . import _blocks, _partials


class _DaskArrays:
    """The spec's array adapter for dask arrays (see numba_ln/_spec.py)."""

    name = "dask"  # the dtype table's entry (the CPU's forward dtypes: its kernels run the tasks)

    @staticmethod
    def input(a, name):
        if not is_dask_array(a):
            return _validate.as_array(a, name)
        if any(math.isnan(n) for n in a.shape):
            raise ValueError(f"{name} has unknown chunk sizes (shape {a.shape}); call "
                             f"{name}.compute_chunk_sizes() first")
        meta = getattr(a, "_meta", None)
        if not isinstance(meta, np.ndarray) or isinstance(meta, np.ma.MaskedArray):
            raise TypeError(f"{name} is a dask array of {type(meta).__module__}."
                            f"{type(meta).__name__} chunks; numba_ln's dask backend runs "
                            "its CPU kernels on NumPy chunks")
        return a

    @staticmethod
    def output(a, name):
        result = {"out": "y", "residual_out": "s"}[name]
        raise TypeError(f"{name}= cannot be used when x is a dask array: dask arrays are "
                        f"immutable.  Use the returned dask array {result} instead, and "
                        f"dask.array.store({result}, target) to write it into an existing "
                        "array (NumPy, zarr, HDF5)")

    @staticmethod
    def readonly(a):  # pragma: no cover  (output() refuses every out= first)
        return True

    @staticmethod
    def overlap(a, b):  # pragma: no cover
        return False

    @staticmethod
    def param(p, name, norm_shape, dtype):
        """weight/bias of the normalized shape in the kernels' dtype: NumPy ones as the CPU
        prepares them, copied (the graph computes with their values at the call, whatever
        the chunks: the caller's own array was read at compute time by one plan and not
        by the other), dask ones broadcast and cast lazily."""
        if is_dask_array(p):
            import dask.array as da

            # a length-1 axis in several chunks (compute_chunk_sizes() after a filter):
            # one chunk first, which broadcast_to requires
            ones = {i: 1 for i, n in enumerate(p.shape) if n == 1 and len(p.chunks[i]) > 1}
            p = da.broadcast_to(p.rechunk(ones) if ones else p, norm_shape)
            # (rounded as the kernels round them: a 1e300 past float32's is inf, silently)
            return p.map_blocks(_rstd.narrowed, dtype, dtype=dtype)
        prepared = _validate.prepare_param(p, name, norm_shape, dtype).reshape(norm_shape)
        return prepared.copy() if np.may_share_memory(prepared, p) else prepared


DASK = _DaskArrays()


def run(variant, x, residual, weight, bias, axis, eps, out, residual_out, return_stats,
        keepdims=True):
    """One public call on a dask array: validated now, computed at ``.compute()``.
    Returns what the public function returns, every array a dask array."""
    want_stats = return_stats or not variant.want_y
    call = _spec.build(variant, DASK, x, residual, weight, bias, axis, eps, out,
                       residual_out, want_stats)
    x, axes = call.x, call.axes
    r = None if call.residual is None else _like_x(call.residual, x)
    if all(len(x.chunks[a]) == 1 for a in axes):
        first, second, y, s = _whole(call, x, r)
    else:
        first, second, y, s = _split(call, x, r, keepdims or variant.want_y)
    if not variant.want_y:  # moments: (mean, var)
        if not keepdims and first.ndim == x.ndim:
            first, second = first.squeeze(axis=axes), second.squeeze(axis=axes)
        return first, second
    return variant.results(y, s, first, second, want_stats)


def _blockwise(*args, **kwargs):
    """da.blockwise over arrays whose chunks already agree (_like_x, _param_arg and the
    reduction make them so), without dask's chunk unification: that rechunks an axis of
    length 1 split into several chunks (``((0, 1), ...)``, as ``compute_chunk_sizes()``
    leaves a filter that kept one row) into one chunk and broadcasts it, and the result
    had other chunks than declared (a row twice) or a missing dependency."""
    import dask.array as da

    return da.blockwise(*args, align_arrays=False, **kwargs)


def _meta(ndim, dtype):
    return np.empty((0,) * ndim, dtype)


def _like_x(a, x):
    """a (NumPy or dask, broadcastable to x) as a dask array of x's shape and chunks."""
    import dask.array as da

    lead = x.ndim - len(a.shape)
    chunks = tuple((1,) if n == 1 and x.shape[lead + i] != 1 else x.chunks[lead + i]
                   for i, n in enumerate(a.shape))
    if not is_dask_array(a):
        a = da.from_array(a, chunks=chunks)
    elif a.chunks != chunks:
        a = a.rechunk(chunks)
    return da.broadcast_to(a, x.shape, chunks=x.chunks)


def _param_arg(p, x, axes, ind, literal_ok):
    """(argument, index) for weight/bias in a blockwise call over x's index ``ind``."""
    if p is None:
        return None, None
    if literal_ok and not is_dask_array(p):
        return p, None
    import dask.array as da

    chunks = tuple(x.chunks[a] for a in axes)
    if is_dask_array(p):
        p = p if p.chunks == chunks else p.rechunk(chunks)
    else:
        p = da.from_array(p, chunks=chunks)
    return p, tuple(ind[a] for a in axes)


def _whole(call, x, r):
    """Normalized axes in one chunk: one CPU-path task per block."""
    variant, axes, dtype = call.variant, call.axes, call.dtype
    ind = tuple(range(x.ndim))
    w, w_ind = _param_arg(call.weight, x, axes, ind, literal_ok=True)
    b, b_ind = _param_arg(call.bias, x, axes, ind, literal_ok=True)
    kinds = ((["y"] if variant.want_y else []) + (["s"] if r is not None else [])
             + (["stat"] * (1 if variant.stats == STATS_RSTD else 2) if call.want_stats else []))
    task = partial(_blocks.whole_rows, variant)
    args = (x, ind, r, None if r is None else ind, w, w_ind, b, b_ind, axes, None,
            call.eps, None, call.want_stats, None, True, None)
    token = f"numba_ln-{variant.name}"
    if kinds == ["y"]:
        return None, None, _blockwise(task, ind, *args, token=token, dtype=dtype,
                                     meta=_meta(x.ndim, dtype)), None
    both = _blockwise(task, ind, *args, token=token + "-block", dtype=dtype,
                     meta=_meta(x.ndim, dtype))
    picked = []
    for i, kind in enumerate(kinds):
        adjust = {a: 1 for a in axes} if kind == "stat" else None
        kind_dtype = _dtypes.stats_dtype(dtype) if kind == "stat" else dtype
        picked.append(_blockwise(_blocks.pick, ind, both, ind, i, None, token=f"{token}-{kind}",
                                dtype=kind_dtype, adjust_chunks=adjust,
                                meta=_meta(x.ndim, kind_dtype)))
    outs = dict(zip(kinds, picked))  # y and s by name; the statistics in order
    stats = picked[len(kinds) - kinds.count("stat"):] + [None, None]
    return stats[0], stats[1], outs.get("y"), outs.get("s")


def _split(call, x, r, keepdims):
    """A normalized axis over several chunks: partials reduced in a tree, then normalize."""
    import dask.array as da

    variant, axes, dtype, eps = call.variant, call.axes, call.dtype, call.eps
    centered = variant.centered
    ind = tuple(range(x.ndim))
    batch = tuple(i for i in ind if i not in axes)
    token = f"numba_ln-{variant.name}"
    src = x
    if r is not None:
        src = _blockwise(_blocks.add, ind, x, ind, r, ind, dtype, None, token=token + "-add",
                        dtype=dtype, meta=_meta(x.ndim, dtype))
    stats = da.reduction(src, partial(_partials.chunk, centered=centered), _partials.aggregate,
                         combine=_partials.combine, axis=axes, keepdims=False,
                         dtype=_partials.STATS, concatenate=False,
                         meta=_meta(len(batch), _partials.STATS), name=token + "-stats")
    y = None
    if variant.want_y:
        w, w_ind = _param_arg(call.weight, x, axes, ind, literal_ok=False)
        b, b_ind = _param_arg(call.bias, x, axes, ind, literal_ok=False)
        y = _blockwise(_blocks.split_rows, ind, src, ind, stats, batch, w, w_ind, b, b_ind,
                      axes, None, eps, None, centered, None, dtype, None, token=token,
                      dtype=dtype, meta=_meta(x.ndim, dtype))
    first = second = None
    if call.want_stats:
        fields = {STATS_MEAN_RSTD: ("mean", "rstd"), STATS_RSTD: ("rstd",),
                  STATS_MEAN_VAR: ("mean", "second")}[variant.stats]
        out_ind = ind if keepdims else batch
        new_axes = {a: 1 for a in axes} if keepdims else None
        stats_dtype = _dtypes.stats_dtype(dtype)
        picked = [_blockwise(_blocks.statistic, out_ind, stats, batch, field, None, eps,
                            None, stats_dtype, None, axes if keepdims else (), None,
                            token=f"{token}-{field}", new_axes=new_axes, dtype=stats_dtype,
                            meta=_meta(len(out_ind), stats_dtype))
                  for field in fields] + [None]
        first, second = picked[0], picked[1]
    return first, second, y, (src if r is not None else None)
