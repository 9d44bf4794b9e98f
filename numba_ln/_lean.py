"""The lean lane: a cached kind's commonest call in few Python steps.

Calls above the small-call bound take the general path (_engine.run), whose Python --
the kind's lookup, the value checks and their ``Call`` record, the overlap rule, the
direct run's views and kernel choice -- took ~10 us a call at (192..256, 1024) float32
(2026-12-08), a fifth of the call, and more in whole calls than measured alone: it runs
after a kernel that filled the caches with x and y.  A kind whose arrays all lie where
the kernels read them, with no statistics, parameters used as they are and
float32/float64 data (``Kind.lean``), runs here: the checks that depend on values (eps,
writeability, overlaps), written out, then the row kernels (_engine.run_rows) on the
planned views.  Anything else -- eps of another type or out of range, a read-only
parameter or output, an output with a zero stride or overlapping an input other than in
the fused forms' promised ways (out=x, residual_out=residual), outputs overlapping each
other -- returns None, and the general steps take the call, with their errors and
copies: the lane decides nothing they would decide otherwise, so the bits are theirs.
"""
import math

import numpy as np

from . import _engine, _stand_ins
from .cpu._elements import IN_PLACE

_may_share = np.may_share_memory


def run(kind, x, weight, bias, eps, out, residual=None, residual_out=None):
    """y of a call of a lean kind (the caller's out itself when given), or (y, s) with a
    residual (the caller's residual_out as s when given); None for the general steps."""
    if not (type(eps) is float and 0.0 <= eps < math.inf):  # (NaN fails the compares)
        return None
    if (weight is not None and not weight.flags.writeable) or (
            bias is not None and not bias.flags.writeable):
        return None  # (prepare_param copies read-only parameters)
    plan, steps = kind.plan, kind.direct
    if residual is None:
        if out is None:
            y, y_view = plan.fresh(x.dtype)
        elif _writable(out) and _apart(out, (x, weight, bias)):  # (out=x: general steps)
            y, y_view = out, (out.reshape(-1), *steps)
        else:
            return None
        _engine.run_rows(y_view, None, (x.reshape(-1), *steps), None, weight, bias,
                         _stand_ins.stats(plan.rows), plan.rows, plan.cols, eps,
                         kind.typed.variant.centered)
        return y
    # The fused forms, as _engine._run_direct has them: s over the residual it replaces
    # is IN_PLACE, y over x is written through its view (rows_block reads each row of x
    # before it writes that row of y); any other overlap takes the general steps.
    if out is not None and not (_writable(out) and (
            _apart(out, (x, residual, weight, bias)) or (
                _engine.same_view(out, x) and _apart(out, (residual, weight, bias))))):
        return None
    if residual_out is None:
        s, s_view = plan.fresh(x.dtype)  # (s first, as _engine._run_direct makes them)
    elif not _writable(residual_out) or (
            out is not None and _may_share(out, residual_out)):
        return None
    elif _apart(residual_out, (x, residual, weight, bias)):
        s, s_view = residual_out, (residual_out.reshape(-1), *steps)
    elif _engine.same_view(residual_out, residual) and _apart(residual_out,
                                                              (x, weight, bias)):
        s, s_view = residual_out, IN_PLACE
    else:
        return None
    if out is None:
        y, y_view = plan.fresh(x.dtype)
    else:
        y, y_view = out, (out.reshape(-1), *steps)
    _engine.run_rows(y_view, s_view, (x.reshape(-1), *steps),
                     (residual.reshape(-1), *kind.residual_steps), weight, bias,
                     _stand_ins.stats(plan.rows), plan.rows, plan.cols, eps,
                     kind.typed.variant.centered)
    return y, s


def _writable(out):
    """_spec.check_writable's test, passing: writeable, no zero stride (the general steps
    raise the error, or judge a zero stride along a size-1 axis)."""
    return out.flags.writeable and 0 not in out.strides


def _apart(out, inputs):
    """Whether out shares no memory with any of inputs (None for an absent one)."""
    for a in inputs:
        if a is not None and _may_share(out, a):
            return False
    return True
