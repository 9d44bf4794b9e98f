"""The lean lane: a cached kind's commonest call in few Python steps.

Calls above the small-call bound take the general path (_engine.run), whose Python --
the kind's lookup, the value checks and their ``Call`` record, the overlap rule, the
direct run's views and kernel choice -- took ~10 us a call at (192..256, 1024) float32
(2026-12-08), a fifth of the call, and more in whole calls than measured alone: it runs
after a kernel that filled the caches with x and y.  A kind whose arrays all lie where
the kernels read them, with no statistics, a residual only with fresh outputs,
parameters used as they are and float32/float64 data (``Kind.lean``), runs here: the
checks that depend on values (eps, writeability, overlaps), written out, then the row
kernels (_engine.run_rows) on the planned views.  Anything else -- eps of another type
or out of range, a read-only parameter or output, an output with a zero stride or
overlapping an input (out=x included) -- returns None, and the general steps take the
call, with their errors and copies: the lane decides nothing they would decide
otherwise, so the bits are theirs.
"""
import math

import numpy as np

from . import _engine, _stand_ins

_may_share = np.may_share_memory


def run(kind, x, weight, bias, eps, out, residual=None):
    """y of a call of a lean kind (the caller's out itself when given), or (y, s) with a
    residual; None for the general steps."""
    if not (type(eps) is float and 0.0 <= eps < math.inf):  # (NaN fails the compares)
        return None
    if (weight is not None and not weight.flags.writeable) or (
            bias is not None and not bias.flags.writeable):
        return None  # (prepare_param copies read-only parameters)
    plan, steps = kind.plan, kind.direct
    if residual is not None:  # (fresh outputs, Kind.lean: nothing to overlap)
        s, s_view = plan.fresh(x.dtype)  # (s first, as _engine._run_direct makes them)
        y, y_view = plan.fresh(x.dtype)
        _engine.run_rows(y_view, s_view, (x.reshape(-1), *steps),
                         (residual.reshape(-1), *kind.residual_steps), weight, bias,
                         _stand_ins.stats(plan.rows), plan.rows, plan.cols, eps,
                         kind.typed.variant.centered)
        return y, s
    if out is None:
        y, y_view = plan.fresh(x.dtype)
    else:
        if not out.flags.writeable or 0 in out.strides or _may_share(out, x) or (
                weight is not None and _may_share(out, weight)) or (
                bias is not None and _may_share(out, bias)):
            return None
        y, y_view = out, (out.reshape(-1), *steps)
    _engine.run_rows(y_view, None, (x.reshape(-1), *steps), None, weight, bias,
                     _stand_ins.stats(plan.rows), plan.rows, plan.cols, eps,
                     kind.typed.variant.centered)
    return y
