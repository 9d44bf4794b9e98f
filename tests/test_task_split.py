"""A forward row's result does not depend on how the rows are cut into tasks.

The task split is a function of the shape only (_threading.rows_per_task), so results never
depend on the thread count either way; but a dask chunk of rows is normalized as an array
of its own, its first row then starts a task, so it equals the NumPy call on the whole
array bit for bit only if a row's result is the same whether it was summed on its own (a
task's first row: _moments.row_sums) or in a fused sweep (_sweep.sweep).  Checked with
the same arrays cut into tasks of ~65536 elements and of a few rows.
"""
import ml_dtypes
import numpy as np
import pytest

import numba_ln
from numba_ln import _config

BF16 = np.dtype(ml_dtypes.bfloat16)


def _bits(a):
    return a.view(np.uint16) if a.dtype == BF16 else a


def _results(x, g):
    return (*numba_ln.layer_norm(x, g, g, return_stats=True),
            *numba_ln.add_layer_norm(x, x, g, g, return_stats=True),
            *numba_ln.rms_norm(x, g, return_stats=True))


def _split_twice(monkeypatch, dtype, shape):
    rng = np.random.default_rng(0)
    x = (5 + rng.standard_normal(shape)).astype(dtype)
    g = rng.standard_normal(shape[1]).astype(np.float32)
    whole = _results(x, g)
    monkeypatch.setattr(_config, "TASK_ELEMENTS", 3 * shape[1])  # (tasks of 3-4 rows)
    return whole, _results(x, g)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_rows_do_not_depend_on_the_task_split(monkeypatch, dtype):
    whole, split = _split_twice(monkeypatch, dtype, (400, 1000))
    for a, b in zip(whole, split):
        assert np.array_equal(_bits(a), _bits(b))


@pytest.mark.xfail(strict=True, reason=(
    "bfloat16: LLVM vectorizes a task's first row's sums (_moments.chunk_sums) and a swept "
    "row's (_sweep.shifted_part) with different lanes at some widths (100, 300, 1000), so "
    "those rows' rstd, and at 1000 y, differ in the last bit with the task split, and a "
    "dask chunk's first rows from the NumPy call on the whole array (within the error "
    "bound); sums in explicit lanes would make it hold (README, Same bits)"))
def test_bfloat16_rows_do_not_depend_on_the_task_split(monkeypatch):
    whole, split = _split_twice(monkeypatch, BF16, (400, 1000))
    for a, b in zip(whole, split):
        assert np.array_equal(_bits(a), _bits(b))
