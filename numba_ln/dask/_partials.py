"""Row statistics of rows split over chunks: the three functions of a ``da.reduction``
(as dask/array/reductions.py's moment_chunk / moment_combine / moment_agg), run on the
workers with ``concatenate=False`` so that the partials travel as dicts.

A partial of a block of rows is, per row (float64, keepdims shape of the block):

``LayerNorm``  ``n`` (a count, the same for every row of the block), ``mean`` and ``m2``
               (the sum of squared deviations), as flox keeps variance partials
``RMSNorm``    ``n`` and ``ss`` (the sum of squares)

A block's partial comes from the CPU kernels' exact row statistics (_engine.normalize on
the block, float64 totals: the same maths as a whole row), and partials merge with Chan's
formula (``m2 = m2a + m2b + delta**2 * na * nb / n``), which adds no cancellation: the
merged statistics keep the float64 quality of the parts.  Partials are merged one after
the other in block order, so a result depends only on the chunks and ``split_every``.  The
aggregate is a structured array over the batch axes with fields ``mean`` and ``second``
(the variance, or the mean square): one array that the normalize pass and the
``return_stats`` outputs read blockwise.
"""
import math

import numpy as np

from .. import _engine, _spec
from .._variants import MOMENTS, RMS_NORM
from ._budget import budget

STATS = np.dtype([("mean", np.float64), ("second", np.float64)])
_MEAN_SQUARE = RMS_NORM._replace(name="mean_square", want_y=False)  # statistics only


def chunk(x, axis, keepdims, centered, computing_meta=False):
    """The partial of one block (see the module docstring)."""
    if computing_meta:  # dask asks for a meta object: run nothing on fake data
        return x
    n = math.prod(x.shape[a] for a in axis)
    shape = tuple(1 if a in axis else s for a, s in enumerate(x.shape))
    if n == 0 or x.size == 0:  # an empty chunk along a normalized (or a batch) axis
        zeros = np.zeros(shape)
        return ({"n": n, "mean": zeros, "m2": zeros} if centered
                else {"n": n, "ss": zeros})
    variant = MOMENTS if centered else _MEAN_SQUARE
    call = _spec.build(variant, _engine.NUMPY, x, None, None, None, axis, 0.0, None, None,
                       True)
    with budget():
        mean, second = _engine.normalize(call)[2:]
    if centered:
        return {"n": n, "mean": mean, "m2": second * n}
    return {"n": n, "ss": second * n}


def _merge(a, b):
    """Two partials of the same rows as one (Chan et al. for mean and m2)."""
    if b["n"] == 0:
        return a
    if a["n"] == 0:
        return b
    n = a["n"] + b["n"]
    # (rows holding inf or NaN; sums of squares past float64's range, inf as the kernels
    # give them; rows of float64 data spread under 1e-154, whose squared deltas underflow:
    # silently, whatever NumPy's settings, as the NumPy path)
    with np.errstate(invalid="ignore", over="ignore", under="ignore"):
        if "ss" in a:
            return {"n": n, "ss": a["ss"] + b["ss"]}
        delta = b["mean"] - a["mean"]
        mean = a["mean"] + delta * (b["n"] / n)
        m2 = a["m2"] + b["m2"] + delta * delta * (a["n"] * (b["n"] / n))
        # A row holding inf: Chan's form gave inf + (-inf) * k = NaN; NumPy's sum gives
        # inf (NaN with +inf and -inf), as the weighted mean does.  (m2 is NaN there, as
        # the variance of such a row is.)
        finite = np.isfinite(a["mean"]) & np.isfinite(b["mean"])
        if not np.all(finite):
            weighted = (a["mean"] * a["n"] + b["mean"] * b["n"]) / n
            mean = np.where(finite, mean, weighted)
    return {"n": n, "mean": mean, "m2": m2}


def _flatten(parts):
    """The partials of a (nested, with several reduced axes) list, in block order."""
    if isinstance(parts, dict):
        yield parts
        return
    for p in parts:
        yield from _flatten(p)


def _merge_all(parts):
    merged = None
    for p in _flatten(parts):
        merged = p if merged is None else _merge(merged, p)
    return merged


def combine(parts, axis, keepdims, computing_meta=False):
    """Partials of neighbouring blocks (split_every of them) merged into one."""
    if computing_meta:
        return parts
    return _merge_all(parts)


def aggregate(parts, axis, keepdims, computing_meta=False):
    """The last merge: per-row (mean, second) over the batch axes (keepdims False)."""
    if computing_meta:
        return parts
    p = _merge_all(parts)
    with np.errstate(under="ignore"):  # (a subnormal m2: rounded as the kernels round it)
        if "ss" in p:
            mean, second = np.zeros_like(p["ss"]), p["ss"] / p["n"]
        else:
            mean, second = p["mean"], p["m2"] / p["n"]
    out = np.empty(mean.shape, STATS)
    out["mean"], out["second"] = mean, second
    return out if keepdims else out.squeeze(axis=tuple(axis))
