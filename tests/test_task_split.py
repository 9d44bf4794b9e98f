"""A forward row's result does not depend on how the rows are cut into tasks.

The task split is a function of the shape only (_threading.rows_per_task), so results never
depend on the thread count either way; but a dask chunk of rows is normalized as an array
of its own, its first row then starts a task, so it equals the NumPy call on the whole
array bit for bit only if a row's result is the same whether it was summed on its own (a
task's first row: _moments.row_sums) or in a fused sweep (_sweep.sweep).  Checked with
the same arrays cut into tasks of ~65536 elements and of a few rows, and a row normalized
alone against the same row in a batch.
"""
import ml_dtypes
import numpy as np
import pytest

import numba_ln
from numba_ln import _config

BF16 = np.dtype(ml_dtypes.bfloat16)
DTYPES = pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, BF16],
                                 ids=["float32", "float64", "float16", "bfloat16"])


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


@DTYPES
def test_rows_do_not_depend_on_the_task_split(monkeypatch, dtype):
    whole, split = _split_twice(monkeypatch, dtype, (400, 1000))
    for a, b in zip(whole, split):
        assert np.array_equal(_bits(a), _bits(b))


@pytest.mark.parametrize("cols", [100, 300, 768])
def test_bfloat16_rows_do_not_depend_on_the_task_split_at_other_widths(monkeypatch, cols):
    """The widths where LLVM summed a task's first bfloat16 row in other lanes than a
    swept row (rows.lone_row_stats), and a common one."""
    whole, split = _split_twice(monkeypatch, BF16, (400, cols))
    for a, b in zip(whole, split):
        assert np.array_equal(_bits(a), _bits(b))


@DTYPES
@pytest.mark.parametrize("shape", [(200, 100), (200, 1000), (4096, 64)])
def test_a_row_alone_gives_its_bits_in_a_batch(dtype, shape):
    """A token normalized on its own (a small call: a task's first row) has the bits it
    has as a row of a batch: a small call's rows after the first, and a parallel call's,
    are swept (cpu/_sweep.py), and rows of at most 64 elements run in blocks
    (cpu/narrow.py)."""
    rng = np.random.default_rng(1)
    x = (5 + rng.standard_normal(shape)).astype(dtype)
    g = rng.standard_normal(shape[1]).astype(np.float32)
    batch = numba_ln.layer_norm(x, g, g, return_stats=True)
    for i in (0, 1, 77, shape[0] - 1):
        alone = numba_ln.layer_norm(x[i:i + 1], g, g, return_stats=True)
        for a, b in zip(alone, batch):
            assert np.array_equal(_bits(a[0]), _bits(b[i]))


@DTYPES
@pytest.mark.parametrize("cols", [16, 64, 100, 768])
def test_a_backward_row_alone_gives_its_bits_in_a_batch(dtype, cols):
    """A row's dx on its own (a small call) has the bits it has in a batch: every row is
    summed by the sweep (_backward_sums.lone_sums for a task's first row).
    rms_norm_backward's float32 and float64 rows differed in the last bit in about half
    the rows at every width before, bfloat16's in a few."""
    rng = np.random.default_rng(3)
    shape = (2000, cols)
    x = (3 + rng.standard_normal(shape)).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal(cols).astype(np.float64 if dtype == np.float64 else np.float32)
    for backward in (numba_ln.layer_norm_backward, numba_ln.rms_norm_backward):
        batch = backward(dy, x, w)[0]
        for i in range(0, shape[0], 50):
            alone = backward(dy[i:i + 1], x[i:i + 1], w)[0]
            assert np.array_equal(_bits(alone[0]), _bits(batch[i])), (backward.__name__, i)


@pytest.mark.parametrize("rows", [3, 16])
def test_bfloat16_rows_longer_than_the_scratch_row(rows):
    """Rows past rows.lone_row_stats' scratch row (16384 bfloat16) are summed alone, as
    before: within one bfloat16 ulp of the float64 result (unweighted), small call and
    parallel call alike."""
    rng = np.random.default_rng(2)
    x = (3 + rng.standard_normal((rows, 20000))).astype(BF16)
    got = _bits(numba_ln.layer_norm(x)).astype(np.int32)
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=1, keepdims=True)
    want = ((x64 - mean) / np.sqrt(x64.var(axis=1, keepdims=True) + 1e-5)).astype(BF16)
    want = _bits(want).astype(np.int32)
    # (bfloat16 bits of one sign are ordered like their values: an ulp is a step of 1,
    # and values of opposite signs are far apart)
    assert np.abs(got - want).max() <= 1


def test_bfloat16_dask_chunks_give_the_numpy_calls_bits():
    """A dask chunk of rows is normalized as an array of its own, its first row starting
    a task: the result is the NumPy call's on the whole array bit for bit (at a width
    where a task's first bfloat16 row used to differ)."""
    da = pytest.importorskip("dask.array")
    import dask
    rng = np.random.default_rng(3)
    x = (5 + rng.standard_normal((400, 1000))).astype(BF16)
    g = rng.standard_normal(1000).astype(np.float32)
    whole = numba_ln.layer_norm(x, g, g, return_stats=True)
    lazy = numba_ln.layer_norm(da.from_array(x, chunks=(150, 1000)), g, g,
                               return_stats=True)
    for a, b in zip(dask.compute(*lazy, scheduler="synchronous"), whole):
        assert np.array_equal(_bits(a), _bits(b))
