"""The narrow-row kernel (cpu/narrow.py: rows of at most NARROW_ROW_BYTES, blocks of 16 rows)
gives the bits of rows_block, which the small calls run: a parallel call is compared with
the same rows cut into small calls.  The rows include every fallback of the statistics
(a constant row, a poor shift, float32's range left both ways, rstd beyond float32's
normalizing range, NaN and inf) and a last block shorter than 16 rows.  (16-bit data reach
the kernel as the same code through _storage's loads and stores; not compiled here, for
the suite's time.)"""
import numba
import numpy as np
import pytest
from _oracle import assert_close, record_calls, same_bits

import numba_ln
from numba_ln import _config
from numba_ln import reference as ref
from numba_ln.cpu import narrow as _narrow
from numba_ln.cpu import rows as _rows

pytestmark = pytest.mark.filterwarnings("ignore:overflow", "ignore:invalid value")


@pytest.fixture
def launched(monkeypatch):
    """The names of the parallel row kernels the engine launched (that ran: a kernel
    handed another block's key runs nothing and returns its own, cpu/_indirect.py)."""
    return record_calls(monkeypatch, [(_narrow, "narrow_parallel", "narrow_parallel"),
                                      (_rows, "rows_parallel", "rows_parallel")])


def hard_rows(rows, cols, dtype, seed=0):
    """(rows, cols) data, far from zero, with every fallback the statistics have."""
    rng = np.random.default_rng(seed)
    x = 1e3 + rng.standard_normal((rows, cols))
    x[3] = 7.25                      # constant: exactly 0 (+ bias)
    x[5, :16] += 500.0               # poor shift: summed again about the mean
    x[6] *= 1e-25                    # float32 squares underflow: float64 sums, big rstd
    x[7] *= 1e30                     # float32 squares overflow: float64 sums
    x[8, 2] = np.nan
    x[9, 1] = np.inf
    x[10] = 1e-30 * rng.standard_normal(cols)  # rstd beyond float32: float64 normalize
    x[11] = np.where(np.arange(cols) % 8 == 0, 3e38, -3e38)  # x - mean past float32: too
    return x.astype(dtype)


def in_small_calls(func, x, step, **kw):
    """func over x's rows, cut into calls of `step` rows (each a small call: rows_block),
    the results joined."""
    parts = [func(x[i:i + step], **kw) for i in range(0, len(x), step)]
    if isinstance(parts[0], tuple):
        return tuple(np.concatenate(p) for p in zip(*parts))
    return np.concatenate(parts)


@pytest.mark.parametrize("cols, eps", [(64, 1e-5), (64, 0.0), (33, 1e-5), (12, 1e-5),
                                       (_config.NARROW_ROW_BYTES // 4, 1e-5)])
def test_layer_norm_gives_rows_block_bits(launched, cols, eps):
    rows = _config.SERIAL_MAX_ELEMENTS // cols + 21  # (parallel; a last block of 5 rows)
    x = hard_rows(rows, cols, np.float32)
    w = np.linspace(0.5, 2.0, cols, dtype=np.float32)
    b = np.linspace(-1.0, 1.0, cols, dtype=np.float32)
    got = numba_ln.layer_norm(x, w, b, eps=eps, return_stats=True)
    assert launched == ["narrow_parallel"]
    step = _config.SERIAL_MAX_ELEMENTS // cols
    assert same_bits(got, in_small_calls(numba_ln.layer_norm, x, step, weight=w, bias=b,
                                         eps=eps, return_stats=True))
    assert np.isnan(got[0][8]).all() and np.isnan(got[0][9]).all()
    if eps:
        assert (got[0][3] == b).all()
    finite = np.isfinite(x).all(axis=1)
    expected = ref.layer_norm(x.astype(np.float64), w, b, eps=eps)[0]
    assert_close(got[0][finite], expected[finite],
                 scale=8.0)  # (~|w| * (1 + |t|): the bound of test_numerics, roughly)


def test_rms_norm_and_moments_give_rows_block_bits(launched):
    cols = 64
    rows = _config.SERIAL_MAX_ELEMENTS // cols + 7
    step = _config.SERIAL_MAX_ELEMENTS // cols
    x = hard_rows(rows, cols, np.float32, seed=1)
    w = np.linspace(0.5, 2.0, cols, dtype=np.float32)
    got = numba_ln.rms_norm(x, w, return_stats=True)
    assert same_bits(got, in_small_calls(numba_ln.rms_norm, x, step, weight=w,
                                         return_stats=True))
    assert same_bits(numba_ln.moments(x), in_small_calls(numba_ln.moments, x, step))
    assert launched == ["narrow_parallel"] * 2


def test_in_place_gives_rows_block_bits(launched):
    cols = 64
    rows = _config.SERIAL_MAX_ELEMENTS // cols + 3
    step = _config.SERIAL_MAX_ELEMENTS // cols
    x = hard_rows(rows, cols, np.float32, seed=2)
    expected = in_small_calls(numba_ln.layer_norm, x, step)
    assert numba_ln.layer_norm(x, out=x) is x
    assert same_bits(x, expected)
    assert launched == ["narrow_parallel"]


def test_fused_forms_give_rows_block_bits(launched):
    """add_layer_norm and add_rms_norm in blocks (arrays of at most NARROW_FUSED_MAX_BYTES):
    y, s = x + r and the statistics, into fresh arrays and into the residual itself, are
    the bits of the same rows cut into serial calls."""
    cols = 64
    rows = _config.SERIAL_MAX_ELEMENTS // cols + 21
    step = _config.SERIAL_MAX_ELEMENTS // (cols * _config.FUSED_COST)
    x = hard_rows(rows, cols, np.float32, seed=5)
    r = np.random.default_rng(6).standard_normal((rows, cols)).astype(np.float32)
    r[:12] = 0.0  # (s = x there: hard_rows' fallbacks reach the statistics of s)
    w = np.linspace(0.5, 2.0, cols, dtype=np.float32)
    b = np.linspace(-1.0, 1.0, cols, dtype=np.float32)

    def in_serial_calls(func, *params, **kw):
        parts = [func(x[i:i + step], r[i:i + step], *params, **kw)
                 for i in range(0, rows, step)]
        return tuple(np.concatenate(p) for p in zip(*parts))

    for func, params in ((numba_ln.add_layer_norm, (w, b)), (numba_ln.add_rms_norm, (w,))):
        launched.clear()
        want = in_serial_calls(func, *params, return_stats=True)
        assert launched == []
        assert same_bits(func(x, r, *params, return_stats=True), want)
        r_in_place = r.copy()
        got = func(x, r_in_place, *params, residual_out=r_in_place)
        assert got[1] is r_in_place and same_bits(got, want[:2])
        assert launched == ["narrow_parallel"] * 2


def test_large_fused_and_wider_rows_keep_rows_parallel(launched, monkeypatch):
    """add_layer_norm past NARROW_FUSED_MAX_BYTES and rows wider than NARROW_ROW_BYTES."""
    x = np.ones((_config.SERIAL_MAX_ELEMENTS // 64 + 1, 64), np.float32)
    monkeypatch.setattr(_config, "NARROW_FUSED_MAX_BYTES", x.nbytes - 1)
    numba_ln.add_layer_norm(x, x)
    wide = np.ones((_config.SERIAL_MAX_ELEMENTS // 1024 + 1, 1024), np.float32)
    numba_ln.layer_norm(wide)
    assert launched == ["rows_parallel"] * 2


def test_one_thread_gives_the_bits_of_two():
    x = hard_rows(_config.SERIAL_MAX_ELEMENTS // 64 + 11, 64, np.float32, seed=4)
    two = numba_ln.layer_norm(x, return_stats=True)
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        one = numba_ln.layer_norm(x, return_stats=True)
    finally:
        numba.set_num_threads(threads)
    assert same_bits(one, two)
