"""The backward row kernels (numba_ln/cpu/backward.py), called directly with row views,
against the float64 NumPy formula (numba_ln.reference) and torch autograd when installed.

Bar (issue 12): float32 dx, dweight, dbias within 1e-5 * max(1, max|ref|) of the float64
reference, float64 within 1e-10, also at offset 1e4 with recomputed statistics; results
bitwise the same for 1 and 2 threads.
"""
import numba
import numpy as np
import pytest

from numba_ln import _config
from numba_ln import reference as ref
from numba_ln.cpu import _backward_tasks as tasks
from numba_ln.cpu import backward as bw
from numba_ln.cpu._elements import IN_PLACE

TOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-10}


# --- helpers ----------------------------------------------------------------------------------

def rows_array(a, layout="c"):
    """(array, row view) with a's values: C order, rows sliced out of wider rows
    ("sliced"), or rows in reverse order in memory ("reversed")."""
    rows, cols = a.shape
    if layout == "c":
        out = np.ascontiguousarray(a)
        return out, (out.reshape(-1), 0, cols)
    wide = np.full((rows, cols + 5), np.nan, a.dtype)
    if layout == "sliced":
        out = wide[:, 2:cols + 2]
        out[...] = a
        return out, (wide.reshape(-1), 2, cols + 5)
    out = wide[::-1, :cols]  # row i lives at wide row rows-1-i
    out[...] = a
    return out, (wide.reshape(-1), (rows - 1) * (cols + 5), -(cols + 5))


def backward(dy, x, w=None, stats=None, gr=None, *, centered=True, eps=1e-5,
             in_place=False, param_grads=True, layout="c"):
    """(dx, dweight, dbias) from run_backward; dy is not modified (in place works on a
    copy)."""
    rows, cols = x.shape
    dy_arr, dy_view = rows_array(dy.copy(), layout)
    _, x_view = rows_array(x, layout)
    gr_view = None if gr is None else rows_array(gr, layout)[1]
    if in_place:
        dx, dx_view = dy_arr, IN_PLACE
    else:
        dx, dx_view = rows_array(np.full_like(x, np.nan), layout)
    # (float64 gradients: the kernels' sums, unrounded)
    dw, db = np.full(cols, np.nan), (np.full(cols, np.nan) if centered else None)
    bw.run_backward(dx_view, dy_view, x_view, w, stats, gr_view, rows, cols, eps, centered,
                    (dw, db) if param_grads else None)
    return (np.array(dx), dw, db) if param_grads else (np.array(dx), None, None)


def reference(dy, x, w=None, stats=None, gr=None, *, centered=True, eps=1e-5):
    """float64 (dx, dweight, dbias or None) of the formula, from the same inputs."""
    if centered:
        mean = rstd = None
        if stats is not None:
            mean, rstd = (s.reshape(-1, 1) for s in stats)
        return ref.layer_norm_backward(dy, x, w, mean=mean, rstd=rstd, eps=eps,
                                       grad_residual=gr)
    rstd = None if stats is None else stats[1].reshape(-1, 1)
    return (*ref.rms_norm_backward(dy, x, w, rstd=rstd, eps=eps, grad_residual=gr), None)


def error(actual, expected):
    """max |actual - expected| / max(1, max |expected|)."""
    expected = np.asarray(expected, np.float64)
    return np.max(np.abs(np.asarray(actual, np.float64) - expected)) / max(
        1.0, np.max(np.abs(expected)))


def assert_matches(got, want, dtype):
    dx, dw, db = got
    rdx, rdw, rdb = want
    assert dx.dtype == dtype
    tol = TOL[np.dtype(dtype)]
    assert error(dx, rdx) <= tol, ("dx", error(dx, rdx))
    if rdw is not None and dw is not None:
        assert dw.dtype == np.float64 and dw.shape == rdw.shape
        assert error(dw, rdw) <= tol, ("dweight", error(dw, rdw))
    if rdb is not None and db is not None:
        assert db.dtype == np.float64 and db.shape == rdb.shape
        assert error(db, rdb) <= tol, ("dbias", error(db, rdb))


def data(rng, shape, dtype, offset=0.0, weight=True):
    x = (rng.standard_normal(shape) * 2.0 + offset).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    w = (rng.standard_normal(shape[1]) + 1.0).astype(dtype) if weight else None
    return dy, x, w


def stats_of(x, centered, eps, dtype):
    """(mean, rstd) per row as the forward returns them, rounded to dtype."""
    if centered:
        _, mean, rstd = ref.layer_norm(x, eps=eps)
        return mean.reshape(-1).astype(dtype), rstd.reshape(-1).astype(dtype)
    _, rstd = ref.rms_norm(x, eps=eps)
    return None, rstd.reshape(-1).astype(dtype)


# --- accuracy ---------------------------------------------------------------------------------

# (Each dtype and array combination compiles a kernel variant: the suite samples them.)
@pytest.mark.parametrize("offset", [0.0, 1e3, 1e4])
@pytest.mark.parametrize("centered", [True, False])
@pytest.mark.parametrize("dtype, weight", [(np.float32, True), (np.float32, False),
                                           (np.float64, True)])
def test_recomputed_stats_match_reference(rng, dtype, weight, centered, offset):
    dy, x, w = data(rng, (37, 300), dtype, offset, weight)
    eps = 1e-5 if centered else 1e-6
    got = backward(dy, x, w, centered=centered, eps=eps)
    assert_matches(got, reference(dy, x, w, centered=centered, eps=eps), dtype)
    if not centered:
        assert got[2] is None


@pytest.mark.parametrize("dtype, stats_dtype, centered", [
    (np.float32, np.float32, True), (np.float32, np.float32, False),
    (np.float32, np.float64, True), (np.float32, np.float64, False),
    (np.float64, np.float64, True)])
def test_given_stats_are_used_as_given(rng, dtype, stats_dtype, centered):
    dy, x, w = data(rng, (29, 257), dtype, 1e3)
    stats = stats_of(x, centered, 1e-5, stats_dtype)
    got = backward(dy, x, w, stats, centered=centered)
    assert_matches(got, reference(dy, x, w, stats, centered=centered), dtype)


def test_given_mean_between_float32s_is_used_exactly(rng):
    """The sums are taken about the given mean rounded to float32 (sums_center): a float64
    mean between two float32s, with a given rstd above 1 / (its distance to them)."""
    dy, x, w = data(rng, (12, 200), np.float32)
    x = (1e5 + 0.01 * rng.standard_normal(x.shape)).astype(np.float32)
    # means 0.3-0.45 float32 units (1/128) off the nearest float32, rstd 1e3: 2.3-3.5 > 1
    mean = x.mean(axis=1, dtype=np.float64)
    mean = np.round(mean * 128) / 128 + rng.uniform(0.3, 0.45, 12) / 128
    rstd = np.full(12, 1e3)
    assert np.all(np.abs(mean - mean.astype(np.float32)) * rstd > 1)
    got = backward(dy, x, w, (mean, rstd))
    assert_matches(got, reference(dy, x, w, (mean, rstd)), np.float32)


@pytest.mark.parametrize("centered", [True, False])
def test_given_forward_stats_agree_with_recomputed(rng, centered):
    """Statistics from the forward kernel, passed in, give what recomputing gives."""
    from numba_ln.cpu.rows import FIRST_ROW, rows_block

    dy, x, w = data(rng, (16, 384), np.float32, 1e4)
    y = np.empty_like(x)
    mean, second = np.empty(16), np.empty(16)
    rows_block(((y.reshape(-1), 0, 384), None, (x.reshape(-1), 0, 384), None),
               (None, None, 1e-5, centered), (mean, second), 384, FIRST_ROW, 16,
               False)  # (as the engine calls it)
    stats = (mean if centered else None, 1.0 / np.sqrt(second + 1e-5))
    given = backward(dy, x, w, stats, centered=centered)
    recomputed = backward(dy, x, w, centered=centered)
    for a, b in zip(given, recomputed):
        if a is not None:
            assert error(a, b) <= 1e-6


@pytest.mark.parametrize("centered, case", [
    (True, "residual"), (True, "in_place"), (True, "residual_in_place"),
    (False, "residual_in_place")])
def test_grad_residual_and_in_place(rng, centered, case):
    dy, x, w = data(rng, (23, 130), np.float32, 1e2)
    gr = rng.standard_normal(x.shape).astype(np.float32) if "residual" in case else None
    got = backward(dy, x, w, gr=gr, centered=centered, in_place="in_place" in case)
    assert_matches(got, reference(dy, x, w, gr=gr, centered=centered), np.float32)
    # Another kernel variant: LLVM may split the same sums into lanes differently, so the
    # last bits may differ from the call that is not in place (as between forward variants).
    assert error(got[0], backward(dy, x, w, gr=gr, centered=centered)[0]) <= 1e-6


def test_float64_residual_in_place(rng):
    dy, x, w = data(rng, (11, 70), np.float64, 1e4)
    gr = rng.standard_normal(x.shape)
    got = backward(dy, x, w, gr=gr, in_place=True)
    assert_matches(got, reference(dy, x, w, gr=gr), np.float64)


@pytest.mark.parametrize("centered", [True, False])
def test_param_grads_off(rng, centered):
    dy, x, w = data(rng, (19, 200), np.float32, 1e3)
    dx, dw, db = backward(dy, x, w, centered=centered, param_grads=False)
    assert dw is None and db is None
    assert error(dx, reference(dy, x, w, centered=centered)[0]) <= 1e-5
    assert error(dx, backward(dy, x, w, centered=centered)[0]) <= 1e-6


@pytest.mark.parametrize("layout", ["sliced", "reversed"])
def test_strided_row_views(rng, layout):
    dy, x, w = data(rng, (21, 100), np.float32, 1e3)
    got = backward(dy, x, w, layout=layout)
    assert_matches(got, reference(dy, x, w), np.float32)
    assert np.array_equal(got[0], backward(dy, x, w)[0])  # the same kernel: the same bits


def test_inputs_not_modified(rng):
    dy, x, w = data(rng, (9, 64), np.float32)
    gr = rng.standard_normal(x.shape).astype(np.float32)
    copies = [a.copy() for a in (dy, x, w, gr)]
    bw.run_backward(rows_array(np.empty_like(x))[1], rows_array(dy)[1], rows_array(x)[1], w,
                    None, rows_array(gr)[1], 9, 64, 1e-5, True, (np.empty(64), np.empty(64)))
    for a, b in zip((dy, x, w, gr), copies):
        assert np.array_equal(a, b)


# --- kernel choice, tasks and determinism -----------------------------------------------------

PARALLEL_SHAPE = (1100, 300)  # above SERIAL_MAX_ELEMENTS: the parallel kernel, 6 tasks


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_parallel_matches_reference_and_serial(rng, dtype):
    dy, x, w = data(rng, PARALLEL_SHAPE, dtype, 1e4)
    got = backward(dy, x, w)
    assert_matches(got, reference(dy, x, w), dtype)
    # run in this thread (from Python, as below the serial bound): the same tasks, the
    # same bits
    rows, cols = x.shape
    dx, grads = np.empty_like(x), (np.empty(cols), np.empty(cols))
    bw._run_here(((dx.reshape(-1), 0, cols), (dy.reshape(-1), 0, cols),
                  (x.reshape(-1), 0, cols), None), (w, 1e-5, True), bw.RECOMPUTED, grads,
                 rows, cols, tasks.task_rows(rows, cols))
    assert np.array_equal(dx, got[0])
    assert np.array_equal(grads[0], got[1])
    assert np.array_equal(grads[1], got[2])


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 threads")
@pytest.mark.parametrize("centered", [True, False])
def test_one_and_two_threads_bitwise(rng, centered):
    dy, x, w = data(rng, PARALLEL_SHAPE, np.float32, 1e3)
    before = numba.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 1):
            numba.set_num_threads(threads)
            results.append(backward(dy, x, w, centered=centered))
    finally:
        numba.set_num_threads(before)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert (a is None and b is None) or np.array_equal(a, b)


def test_task_rows_depend_on_shape_only():
    for rows, cols in [(1, 10), (4096, 1024), (16384, 1024), (4096, 4096), (10, 100000),
                       (64, 10**6), (65536, 64), (100000, 7)]:
        per_task = tasks.task_rows(rows, cols)
        assert per_task >= tasks.TASK_MIN_ROWS
        assert -(-rows // per_task) <= tasks.MAX_TASKS
    assert tasks.task_rows(4096, 1024) == 64  # TASK_ELEMENTS // cols
    assert tasks.task_rows(64, 10**6) == 8
    # one task's rows, split in two where the call runs in parallel (above
    # SERIAL_MAX_ELEMENTS / BACKWARD_COST elements), and kept whole where it runs serially
    assert tasks.task_rows(65, 1024) == 33
    assert tasks.task_rows(64, 1024) == 64
    assert tasks.task_rows(8, 8192) == 8  # (two tasks would be shorter than TASK_MIN_ROWS)


def test_capped_tasks(rng, monkeypatch):
    """More rows than MAX_TASKS tasks of TASK_ELEMENTS: longer tasks, same accuracy."""
    monkeypatch.setattr(tasks, "MAX_TASKS", 3)
    dy, x, w = data(rng, PARALLEL_SHAPE, np.float32, 1e3)
    assert tasks.task_rows(*PARALLEL_SHAPE) == 367
    assert_matches(backward(dy, x, w), reference(dy, x, w), np.float32)


def test_long_rows_in_pieces(rng):
    """Rows longer than PIECE: the sums are added piece by piece, as the forward's (and
    two tasks of TASK_MIN_ROWS rows)."""
    dy, x, w = data(rng, (2 * tasks.TASK_MIN_ROWS, _config.PIECE + 1000), np.float32, 1e3)
    assert_matches(backward(dy, x, w), reference(dy, x, w), np.float32)


def test_no_rows():
    x = np.empty((0, 5), np.float32)
    dx, dw, db = backward(x, x)
    assert dx.shape == (0, 5)
    assert np.array_equal(dw, np.zeros(5)) and np.array_equal(db, np.zeros(5))


# --- awkward rows -----------------------------------------------------------------------------

@pytest.mark.parametrize("centered", [True, False])
def test_rows_beyond_float32_range_run_in_float64(rng, centered):
    """rstd >= NARROW_RSTD_MAX (spread ~1e-30, eps 0) or < NARROW_RSTD_MIN (+-3e38, where
    x - mean overflows float32): such rows are computed in float64, between ordinary rows
    (a sweep, then a float64 row, then a lead)."""
    dy, x, w = data(rng, (12, 96), np.float32)
    x[3:5] *= np.float32(1e-31)
    x[9] *= np.float32(1e-31)
    x[9] += np.float32(1e-29) * centered
    x[6] = np.where(np.arange(96) % 8 == 0, 3e38, -3e38)
    got = backward(dy, x, w, centered=centered, eps=0.0)
    want = reference(dy, x, w, centered=centered, eps=0.0)
    for i in range(12):  # rows of very different scales: each against its own scale
        assert error(got[0][i], want[0][i]) <= 1e-5
    assert error(got[1], want[1]) <= 1e-5


def test_poor_shift_is_summed_again(rng):
    """Rows whose first HEAD elements sit far from the rest: the shift is poor, the row is
    summed again about its mean, and sum(g * xhat) about it too."""
    dy, x, w = data(rng, (8, 512), np.float32, 1e4)
    x[:, :16] += np.float32(50.0)
    assert_matches(backward(dy, x, w), reference(dy, x, w), np.float32)


@pytest.mark.parametrize("value", [0.0, 3.0, 1e4])
def test_constant_rows(rng, value):
    dy, x, w = data(rng, (6, 100), np.float32)
    x[1::2] = np.float32(value)
    assert_matches(backward(dy, x, w), reference(dy, x, w), np.float32)
    assert_matches(backward(dy, x, w, centered=False), reference(dy, x, w, centered=False),
                   np.float32)


def test_nan_propagates_to_its_row(rng):
    dy, x, w = data(rng, (10, 64), np.float32)
    x[4, 7] = np.nan
    dx, dw, db = backward(dy, x, w)
    rdx, rdw, rdb = reference(dy, x, w)
    assert np.isnan(dx[4]).all() and np.isnan(dw).all()
    rest = np.arange(10) != 4
    assert error(dx[rest], rdx[rest]) <= 1e-5
    assert error(db, rdb) <= 1e-5


# --- torch autograd ---------------------------------------------------------------------------

@pytest.mark.parametrize("offset", [0.0, 1e4])
@pytest.mark.parametrize("centered", [True, False])
def test_matches_torch_autograd(rng, centered, offset):
    torch = pytest.importorskip("torch")
    dy, x, w = data(rng, (33, 200), np.float32, offset)
    tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    tw = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    if centered:
        tb = torch.zeros(200, dtype=torch.float64, requires_grad=True)
        y = torch.nn.functional.layer_norm(tx, (200,), tw, tb, eps=1e-5)
    else:
        tb = None
        y = torch.nn.functional.rms_norm(tx, (200,), tw, eps=1e-6)
    y.backward(torch.tensor(dy, dtype=torch.float64))
    want = (tx.grad.numpy(), tw.grad.numpy(), None if tb is None else tb.grad.numpy())
    got = backward(dy, x, w, centered=centered, eps=1e-5 if centered else 1e-6)
    assert_matches(got, want, np.float32)
