"""The lean lane: a cached kind's commonest call in few Python steps.

Calls above the small-call bound take the general path (_engine.run), whose Python --
the kind's lookup, the value checks and their ``Call`` record, the overlap rule, the
direct run's views and kernel choice -- took ~10 us a call at (192..256, 1024) float32
(2026-12-08), a fifth of the call, and more in whole calls than measured alone: it runs
after a kernel that filled the caches with x and y.  A kind whose arrays all lie where the
kernels read them, with parameters used as they are (``Kind.lean``; 16-bit data as their
bits, ``Kind.bits``), runs here: the general path's own checks and rules
(``_spec.check_eps``, ``check_writable``, ``check_outputs_apart``, the overlap rule
``_engine._inputs_to_copy``, the outputs' views ``_engine._direct_output``), called
directly rather than through ``_with_values``' ``Call`` record and ``_run_direct``'s
layers, then the row kernels (``_engine.run_rows``).  Errors are raised as the general
path raises them, in its order.  Statistics (``return_stats``) are formed from the
kernels' float64 rows by one compiled call (cpu/small.returned_stats: the small calls'
rounding, the general path's bits), into one array whose rows are the returned mean and
rstd, as the small calls return them: such calls took the general path until 2026-12-08
(its checks, then five NumPy calls and an np.errstate for the statistics), 0.82-0.92 of
its time at (192..512, 1024) on the Zen 4.  A read-only parameter (which ``prepare_param``
copies) or an output that overlaps an input other than in a promised way (which the
general steps read from a copy) returns None, and the general steps take the call: the
lane decides nothing they would decide otherwise, so the bits are theirs.
"""
import numpy as np

from . import _engine, _spec, _stand_ins
from ._small_front import MAX_DIMS
from .cpu.small import returned_moments, returned_stats


def run(kind, x, weight, bias, eps, out, residual=None, residual_out=None):
    """What the public function returns for a call of a lean kind (the caller's out and
    residual_out themselves when given), or None for the general steps."""
    typed = kind.typed
    centered = typed.variant.centered
    eps = _spec.check_eps(eps, work=None if centered else typed.work)
    if out is not None:
        _spec.check_writable(_engine.NUMPY, out, "out")
    if residual_out is not None:
        _spec.check_writable(_engine.NUMPY, residual_out, "residual_out")
        _spec.check_outputs_apart(_engine.NUMPY, out, residual_out)
    if (weight is not None and not weight.flags.writeable) or (
            bias is not None and not bias.flags.writeable):
        return None  # (prepare_param copies read-only parameters)
    if weight is not None and weight.ndim != 1:  # (of several axes: read as their row)
        weight = weight.reshape(-1)
    if bias is not None and bias.ndim != 1:
        bias = bias.reshape(-1)
    if (out is not None or residual_out is not None) and _engine._inputs_to_copy(
            {"x": x, "residual": residual, "weight": weight, "bias": bias}, out,
            residual_out):
        return None  # (an output over an input it does not replace: read from a copy)
    plan, steps, dtype, bits = kind.plan, kind.direct, x.dtype, kind.bits
    rows = plan.rows
    if typed.want_stats:  # (every output allocated before anything is written)
        sums = (np.empty(rows), np.empty(rows))
        stats = np.empty((2 if centered else 1, rows, 1), kind.stats_dtype)
    else:
        sums = _stand_ins.stats(rows)
    s = s_view = r_view = None
    if residual is not None:  # (s first, as _engine._run_direct makes them)
        s, s_view = _engine._direct_output(plan, residual_out, residual, dtype, bits, steps)
        r_view = (_engine._buffer(residual, bits), *kind.residual_steps)
    y, y_view = _engine._direct_output(plan, out, x if residual is None else None, dtype,
                                       bits, steps)
    _engine.run_rows(y_view, s_view, (_engine._buffer(x, bits), *steps), r_view, weight,
                     bias, sums, rows, plan.cols, eps, centered)
    if not typed.want_stats:
        return y if residual is None else (y, s)
    returned_stats(*sums, stats, eps)
    first, *second = _each_as(stats, plan.stats_shape())
    return typed.variant.results(y, s, first, second[0] if second else None, True)


def moments(kind, x, keepdims):
    """moments' (mean, var) for a call of a lean kind: the row kernels' float64 rows rounded
    once to the result's dtype by one compiled call, in one array whose rows are returned
    (NumPy scalars where every axis is reduced without keepdims, as x.mean() gives them)."""
    plan = kind.plan
    rows = plan.rows
    sums = (np.empty(rows), np.empty(rows))
    both = np.empty((2, rows), kind.stats_dtype)
    _engine.run_rows(None, None, (_engine._buffer(x, kind.bits), *kind.direct), None, None,
                     None, sums, rows, plan.cols, 0.0, True)
    returned_moments(*sums, both)
    return _each_as(both, plan.stats_shape() if keepdims else plan.reduced_shape)


def _each_as(stats, shape):
    """The rows of stats (one statistic a row) viewed in shape (NumPy scalars for ()): one
    array reshaped in place, unless it would pass NumPy's 64 dimensions."""
    if len(shape) < MAX_DIMS:
        stats.shape = stats.shape[:1] + shape
        return tuple(stats)
    return tuple(row.reshape(shape) for row in stats)
