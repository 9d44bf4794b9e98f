"""What a dask task runs on one block: plain NumPy arrays in, NumPy arrays out, through the
CPU backend (numba_ln/_engine.py, numba_ln/cpu/).  Nothing here imports dask, and every
function is defined at module level, so that spawned worker processes unpickle tasks by
importing this module (which imports, or loads from the on-disk cache, the kernels).

Each task runs under the thread budget of _budget.py.
"""
import numpy as np

from .. import _dtypes, _engine, _rstd, _threading
from .._layout import Plan
from ..cpu import given_stats as _given
from ..cpu.given_stats import given_block
from ._budget import budget


def whole_rows(variant, x, residual, weight, bias, axes, eps, want_stats, keepdims):
    """A block whose normalized axes are whole: the CPU path on it, returning what the
    public function returns for the block.  Rows are normalized on their own, so the
    result is the NumPy path's, bit for bit.  A non-contiguous block (a view dask sliced
    from a NumPy array) is copied first: for a channels-first block the CPU path would
    otherwise copy it into rows order, and the rows kernel's last bits differ from the
    channels kernel's that a contiguous array gets.  Not a block whose normalized axes are
    its last ones, contiguous: its rows are read where they lie, with a C copy's bits (a
    block of a broadcast, 512 MiB copied for a 512 MiB chunk of one row before)."""
    if x.size and not x.flags.c_contiguous and not _rows_where_they_lie(x, axes):
        x = np.ascontiguousarray(x)
    with budget():
        return _engine.run(variant, x, residual, weight, bias, axes, eps, None, None,
                           want_stats, keepdims)


def _rows_where_they_lie(x, axes):
    """Whether x's normalized axes are its last ones and one row of them is C-contiguous
    (the batch axes may have any strides, zero too)."""
    n = len(axes)
    if sorted(a % x.ndim for a in axes) != list(range(x.ndim - n, x.ndim)):
        return False
    return x[(0,) * (x.ndim - n)].flags.c_contiguous


def add(x, residual, dtype):
    """s = x + residual in the result dtype, as the fused kernels form it."""
    return np.add(x.astype(dtype, copy=False), residual.astype(dtype, copy=False))


def split_rows(x, stats, weight, bias, axes, eps, centered, dtype):
    """A block of rows split over chunks, normalized with their merged statistics (stats: a
    block of the batch axes with fields ``mean`` and ``second``, see _partials).  weight and
    bias are this block's part of them (normalized shape), or None."""
    x = x.astype(dtype, copy=False)
    plan = Plan(x.shape, axes, "rows", False, False)  # rows order, copied if need be
    if plan.rows == 0:
        return np.empty(x.shape, dtype)
    rows, cols = plan.rows, plan.cols
    second = np.ascontiguousarray(stats["second"], dtype=np.float64).reshape(rows)
    rstd = _rstd.of_second(second, eps)
    center = (np.ascontiguousarray(stats["mean"], dtype=np.float64).reshape(rows) if centered
              else np.zeros(rows))
    # (in the work dtype, as _spec.check_param prepares them)
    work = _dtypes.work_dtype(dtype)
    w, b = (None if p is None else np.ascontiguousarray(p, dtype=work).reshape(cols)
            for p in (weight, bias))
    y = plan.empty(dtype)
    args = (_engine.kernel_view(plan.kernel_output(y)), _engine.kernel_view(plan.kernel_input(x)),
            w, b, center, rstd, rows, cols)
    with budget():
        if _threading.runs_serial(rows * cols):
            given_block(*args[:-2], cols, np.int64(0), rows)  # (all rows as one block)
        else:
            _threading.launch(_given.given_parallel, *args, _threading.rows_per_task(rows, cols))
    return y


def pick(result, index):
    """One array of a block's result tuple."""
    return result[index]


def statistic(stats, field, eps, dtype, axes):
    """A per-row statistic of a block of merged stats, in the result dtype: ``mean``,
    ``second`` (the variance, or the mean square) or ``rstd``; a size-1 axis is inserted
    at each of ``axes`` (keepdims shapes)."""
    if field == "rstd":
        # into its own copy: with every axis normalized it is 0-d, and NumPy's ufuncs give
        # a scalar for a 0-d array without out=, which of_second's next step refused
        second = np.array(stats["second"], dtype=np.float64)
        value = _rstd.narrowed(_rstd.of_second(second, eps, out=second), dtype)
    else:
        value = _rstd.narrowed(np.array(stats[field], dtype=np.float64), dtype)
    return np.expand_dims(value.astype(dtype, copy=False), axes) if axes else value.astype(dtype)
