"""The numerics of the float32-width CPU kernels against the float64 oracle, on every kernel
path: the poor-shift and float32-range fallbacks of the statistics (cpu/_moments.py),
constant rows, NaN/inf isolation, in-place outputs, long rows and float64 far from zero.

Every test states the kernel it means to run and checks it (the ``ran`` fixture records
which kernel the front launched), so a change of thresholds cannot silently move a test off
its path.  Paths (numba_ln/_engine.py, _small_front.py, thresholds in _config.py):

``small``          C-contiguous, last axis, <= SERIAL_MAX_ELEMENTS: cpu/small.py (with
                   return_stats=True too, and moments())
``parallel``       rows_parallel, about TASK_ELEMENTS // 1024 rows a task, several tasks
``long-parallel``  rows_parallel over rows longer than PIECE (one row a task, 2 pieces)
``split``          fewer than SPLIT_MAX_ROWS rows longer than PIECE: rows_split
``channels``       axis=1 of an NCHW array: channels_parallel (channels_serial on 1 thread)
``long-channels``  the same with 16384 channels (poor-shift test only)

Data are built as (rows, cols) float64 rows and laid out per path (``arrange``); results are
brought back to that rows layout (``back``) and checked against the oracle over the rows.

Tolerances: float32 results within ATOL (2e-6) x max(|w| * (1 + |t|), |y_ref|) per
element, t = (x - mean) * rstd from the oracle -- the bound of cpu/_moments.py for these
rows, whose shift gives G near 1 (rstd within 0.7e-6 relative, the mean within 21 u of the
row's spread, ~4 u of rounding in the normalization; the worst case, G near 2, allows
2.5e-6 |t w| + 1.3e-6 |w| for rows of whole vectors); variances within 2e-6 relative (1.4e-6 near G = 1), means
within 2e-6 of the row's standard deviation.
"""
import os
import subprocess
import sys

import numba
import numpy as np
import pytest
from _oracle import ATOL, assert_close, same_bits, small_kernel_callers

import numba_ln
from numba_ln import _config, _engine, _threading
from numba_ln import reference as ref
from numba_ln.cpu import channels as _channels
from numba_ln.cpu import rows as _rows

F32, F64 = np.float32, np.float64
EPS = 1e-5
HEAD = _config.HEAD

# (rows, cols) of the data per path; "channels" is 256 positions x 1024 channels, laid out
# as (4, 1024, 8, 8) and normalized over axis=1 (4 tiles of 64 positions).  Every shape has
# more than 131072 elements but "small" (10240).
SHAPES = {
    "small": (10, 1024),
    "parallel": (320, 1024),
    "long-parallel": (9, 70000),
    "split": (5, 70000),
    "channels": (256, 1024),
    "long-channels": (16, 16384),  # (1, 16384, 4, 4) over axis=1: G up to 1024 (hard_rows)
}
ALL_PATHS = list(SHAPES)[:-1]
CHANNELS_PATHS = {"channels": (4, 8, 8), "long-channels": (1, 4, 4)}  # (N, H, W)


# --- which kernel ran -------------------------------------------------------------------------

@pytest.fixture
def ran(monkeypatch):
    """The names of the kernels the front launched (a small-call kernel that declined the
    call, returning 1, is not counted)."""
    calls = []

    def spy(module, name, family=None):
        kernel = getattr(module, name)

        def launch(*args):
            declined = kernel(*args)
            if not declined:
                calls.append(family or name)
            return declined

        monkeypatch.setattr(module, name, launch)

    spy(_engine, "rows_block")  # (where the engine calls it: kernels compiled while the spy
    for name in ("rows_parallel", "rows_split"):  # is in place must still see the kernel)
        spy(_rows, name)
    for name in ("channels_serial", "channels_parallel"):
        spy(_channels, name)
    for module, name, family in small_kernel_callers(("small_norm", "small_add_norm",
                                                      "small_moments")):
        spy(module, name, family)
    return calls


def kernel_of(path, small=None):
    """The kernel a call on path runs: small is the small-call kernel's name for calls that
    can take it, None for those that cannot (the fused forms with return_stats)."""
    if path == "small":
        return small or "rows_block"
    if path in CHANNELS_PATHS:
        return "channels_parallel" if numba.get_num_threads() > 1 else "channels_serial"
    return "rows_split" if path == "split" else "rows_parallel"


def took(ran, path, small=None):
    """Assert that every launch since the last check ran path's kernel."""
    expected = kernel_of(path, small)
    assert ran and set(ran) == {expected}, f"ran {ran}, expected {expected} ({path})"
    ran.clear()


# --- layouts ----------------------------------------------------------------------------------

def arrange(path, rows):
    """(x, axis): the (rows, cols) data laid out for path."""
    if path in CHANNELS_PATHS:
        n, h, w = CHANNELS_PATHS[path]
        return np.ascontiguousarray(rows.reshape(n, h, w, -1).transpose(0, 3, 1, 2)), 1
    return rows.copy(), -1


def back(path, y):
    """A result of arrange(path, ...)'s layout, as (rows, cols)."""
    if path in CHANNELS_PATHS:
        return y.transpose(0, 2, 3, 1).reshape(-1, y.shape[1])
    return y


def channel_tiles(path):
    """The channels task (tile) of each row (position), as _engine cuts them."""
    rows, cols = SHAPES[path]
    _, h, w = CHANNELS_PATHS[path]
    inner = h * w
    tile = max(_config.TILE_MIN_BYTES // 4,
               min(_config.TILE_MAX_POSITIONS, _config.TILE_BYTES // (cols * 4), inner))
    i = np.arange(rows)
    return (i // inner) * -(-inner // tile) + (i % inner) // tile


def per_row(stat):
    """Per-row statistics (keepdims or not, any layout) as a flat array in row order."""
    return np.asarray(stat).reshape(-1)


# --- data -------------------------------------------------------------------------------------

def hard_rows(rng, shape, offset=0.0, scale=1.0, dtype=F32, first_kind=0):
    """Rows whose head shift k (mean of the first HEAD elements) is poor, cycling through
    five kinds; G = S2/M2 is the rounding gain of the sums about k (cpu/_moments.py):

    0  HEAD outliers (+100) then N(0,1): G up to cols/16, summed again about the mean
    1  a sorted ramp: the head holds the row's lowest values, G ~ 10: summed again
    2  half step [-1]*(cols/2) + [+1]*(cols/2): G = 2 exactly, the edge of SHIFT_GAIN_MAX
    3  quarter step [-1]*(cols/4) + [+1]*(3cols/4): G = 4, summed again
    4  plain N(0,1): G ~ 1
    """
    rows, cols = shape
    data = np.empty(shape)
    j = np.arange(cols)
    for i in range(rows):
        kind = (first_kind + i) % 5
        v = rng.standard_normal(cols)
        if kind == 0:
            v[:HEAD] = 100.0
        elif kind == 1:
            v.sort()
        elif kind == 2:
            v = np.where(j < cols // 2, -1.0, 1.0)
        elif kind == 3:
            v = np.where(j < cols // 4, -1.0, 1.0)
        data[i] = v
    return (offset + scale * data).astype(dtype)


def range_rows(rng, shape, first_kind=0, kinds=range(11)):
    """float32 rows that leave float32's range in the sums or in rstd (for eps=0), cycling
    through kinds (from kinds[first_kind]):

    0  1e20 * N(0,1)           (x - k)**2 overflows float32: summed again in float64
    1  1e20 * (5 + N(0,1))     the same, far from zero
    2  1e-30 * N(0,1)          squares underflow: float64 sums; rstd ~ 1e30 >= 2**96:
                               normalized in float64
    3  1e-30 * (5 + N(0,1))    the same, far from zero
    4  N(0,1) and one 1e19     1e38 fits float32: stays on the float32 path
    5  N(0,1), four 1e19 in a chunk: the chunk's sum of squares (4e38) overflows
    6  N(0,1), a 1e19 in the head: shift 6e17, poor (G ~ 5): summed again about the mean
    7  1e-40 * N(0,1)          float32 subnormals: squares underflow to 0
    8  [-1e-30]*(cols/2) + [1e-30]*(cols/2)
    9  N(0,1)
    10 +-3e38, a tenth positive: x - mean (up to 5.7e38) overflows float32, and rstd (6e-39)
       is a float32 subnormal: normalized in float64 (rstd < 2**-96)
    """
    rows, cols = shape
    data = np.empty(shape)
    for i in range(rows):
        kind = kinds[(first_kind + i) % len(kinds)]
        v = rng.standard_normal(cols)
        if kind == 0:
            v *= 1e20
        elif kind == 1:
            v = 1e20 * (5 + v)
        elif kind == 2:
            v *= 1e-30
        elif kind == 3:
            v = 1e-30 * (5 + v)
        elif kind == 4:
            v[cols // 3] = 1e19
        elif kind == 5:
            v[[600, 700, 800, 900]] = 1e19
        elif kind == 6:
            v[3] = 1e19
        elif kind == 7:
            v *= 1e-40
        elif kind == 8:
            v = np.where(np.arange(cols) < cols // 2, -1e-30, 1e-30)
        elif kind == 10:
            v = np.where(rng.random(cols) < 0.1, 3e38, -3e38) * (1 - 0.01 * rng.random(cols))
        data[i] = v
    return data.astype(F32)


def params(rng, cols, dtype=F32):
    w, b = rng.standard_normal((2, cols))
    return w.astype(dtype), b.astype(dtype)


# --- checks against the oracle (rows layout, axis -1) -----------------------------------------

def conditioning(rows, eps):
    """Per-row error scale of float64 results, as tests/test_properties.py: the inputs'
    rounding eps*|x| is multiplied by rstd (1 for float32 results)."""
    if rows.dtype != F64:
        return 1.0
    rstd = ref.layer_norm(rows, eps=eps)[2]
    return np.maximum(1.0, np.abs(rows).max(axis=-1, keepdims=True) * rstd)


def check_layer_norm(y, rows, w, b, eps=EPS):
    """y (rows layout) against the oracle on rows, to |w| * (1 + |t|) per element."""
    y_ref = ref.layer_norm(rows, w, b, eps=eps)[0]
    t = ref.layer_norm(rows, eps=eps)[0]
    scale = (1.0 if w is None else np.abs(w)) * (1 + np.abs(t)) * conditioning(rows, eps)
    assert_close(y, y_ref, scale=scale)


def check_rms_norm(y, rows, w, eps):
    y_ref, rstd_ref = ref.rms_norm(rows, w, eps=eps)
    t = rows * rstd_ref
    assert_close(y, y_ref, scale=np.abs(w) * (1 + np.abs(t)))


def assert_stat_close(actual, expected, scale):
    """assert_close for statistics, which are returned in the result dtype: where the
    oracle's value overflows float32 the result is inf (of its sign), and a float32 result
    may also be off by the spacing of float32's subnormals (its rounding there)."""
    scale = per_row(np.broadcast_to(scale, np.shape(expected)))
    actual, expected = per_row(actual), per_row(expected)
    if actual.dtype == F32:
        with np.errstate(over="ignore"):
            rounded = expected.astype(F32)
        huge = np.isinf(rounded) & np.isfinite(expected)
        assert same_bits(actual[huge], rounded[huge])
        keep = ~huge
        actual, expected = actual[keep], expected[keep]
        scale = np.maximum(scale[keep], 2.0**-149 / ATOL[np.dtype(F32)])
    assert_close(actual, expected, scale=scale)


def check_mean(mean, rows):
    """mean to ATOL of the row's standard deviation (or of its own size: its rounding)."""
    mean_ref, var_ref = ref.moments(rows)
    assert_stat_close(mean, mean_ref, np.sqrt(var_ref))


def check_moments(mean, var, rows):
    """check_mean, and var to ATOL relative (2e-6; float64: 1e-12)."""
    check_mean(mean, rows)
    var_ref = ref.moments(rows)[1]
    assert_stat_close(var, var_ref, var_ref)


def check_rstd(rstd, rows, eps=EPS):
    rstd_ref = ref.layer_norm(rows, eps=eps)[2]
    assert_stat_close(rstd, rstd_ref, rstd_ref)


# --- 1. the poor-shift fallback ---------------------------------------------------------------

OFFSETS = [(0.0, 1.0), (1e3, 1.0), (1e4, 1.0), (1e5, 1.0), (1e4, 1e-2)]


@pytest.mark.parametrize("offset,scale", OFFSETS, ids=["0", "1e3", "1e4", "1e5", "1e4-scale1e-2"])
@pytest.mark.parametrize("path", [*ALL_PATHS, "long-channels"])
def test_poor_head_shift_is_summed_again(rng, ran, path, offset, scale):
    """Rows whose first HEAD elements are a poor shift (hard_rows) keep float32 accuracy:
    layer_norm, add_layer_norm, moments (and layer_norm's stats) against the oracle.  On
    the parallel path every kind of row is both the first row of a task (summed alone) and
    a row summed by a fused sweep."""
    shape = SHAPES[path]
    rows = hard_rows(rng, shape, offset, scale)
    w, b = params(rng, shape[1])
    x, axis = arrange(path, rows)

    y = numba_ln.layer_norm(x, w, b, axis=axis)
    took(ran, path, "small_norm")
    check_layer_norm(back(path, y), rows, w, b)

    y, mean, rstd = numba_ln.layer_norm(x, w, b, axis=axis, return_stats=True)
    took(ran, path, "small_norm")
    check_layer_norm(back(path, y), rows, w, b)
    check_mean(mean, rows)
    check_rstd(rstd, rows)

    mean, var = numba_ln.moments(x, axis=axis)
    took(ran, path, "small_moments")
    check_moments(mean, var, rows)

    # add: s = x + r keeps the rows' structure (r is small noise and x = rows - r)
    r_rows = (scale * 0.5 * rng.standard_normal(shape)).astype(F32)
    x_rows = (rows.astype(F64) - r_rows).astype(F32)
    (xa, _), (ra, _) = arrange(path, x_rows), arrange(path, r_rows)
    y, s = numba_ln.add_layer_norm(xa, ra, w, b, axis=axis)
    took(ran, path, "small_add_norm")
    s_rows = x_rows + r_rows
    assert same_bits(back(path, s), s_rows)
    check_layer_norm(back(path, y), s_rows, w, b)


# --- 2. the float32 range fallbacks -----------------------------------------------------------

@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")  # rstd 1e40
@pytest.mark.parametrize("path", ALL_PATHS)
def test_rows_beyond_float32_range(rng, ran, path):
    """Huge (1e20, +-3e38), tiny (1e-30), subnormal and 1e19-spiked rows, eps=0, mixed
    with normal rows (on the parallel path a row normalized in float64 is followed by one
    summed on its own): layer_norm, rms_norm and moments against the oracle."""
    shape = SHAPES[path]
    w, b = params(rng, shape[1])
    for first_kind in range(0, 11, shape[0]):  # few rows: every kind in 2 or 3 calls
        rows = range_rows(rng, shape, first_kind)
        if first_kind == 0 and shape[0] > 7:
            subnormal = rows[7]
            assert (subnormal != 0).mean() > 0.99 and (np.abs(subnormal) < 2.0**-126).all()
        if path == "channels":  # a tile of tiny rows only: no huge row sends it to float64
            tile = channel_tiles(path) == 0
            rows[tile] = range_rows(rng, (tile.sum(), shape[1]), kinds=[2, 3, 7, 8, 9])
        x, axis = arrange(path, rows)

        y = numba_ln.layer_norm(x, w, b, axis=axis, eps=0.0)
        took(ran, path, "small_norm")
        check_layer_norm(back(path, y), rows, w, b, eps=0.0)

        y, rstd = numba_ln.rms_norm(x, w, axis=axis, eps=0.0, return_stats=True)
        took(ran, path, "small_norm")
        check_rms_norm(back(path, y), rows, w, eps=0.0)
        rstd_ref = ref.rms_norm(rows, eps=0.0)[1]
        assert_stat_close(rstd, rstd_ref, rstd_ref)

        mean, var = numba_ln.moments(x, axis=axis)
        took(ran, path, "small_moments")
        check_moments(mean, var, rows)


# --- 3. constant rows -------------------------------------------------------------------------

CONSTANTS = [0.1, -3.7e5, 1e-30, 1e20, 0.0, 7.25, 1e-40, -123456.79]


@pytest.mark.filterwarnings("ignore::RuntimeWarning:numba_ln.reference")  # eps=0: 0 * inf
@pytest.mark.parametrize("path", ALL_PATHS)
def test_constant_rows_normalize_to_exactly_bias(rng, ran, path):
    """Every other row constant (CONSTANTS, float32 subnormal 1e-40 among them), the others
    N(1e4, 1): constant rows give exactly bias (exactly 0 without one), mean exactly the
    value and var exactly 0; with eps=0 they give NaN, as the oracle (0 * inf)."""
    shape = SHAPES[path]
    data = 1e4 + rng.standard_normal(shape)
    const = np.arange(shape[0]) % 2 == 1
    values = np.resize(np.array(CONSTANTS, F32), const.sum())
    data[const] = values[:, None]
    rows = data.astype(F32)
    w, b = params(rng, shape[1])
    x, axis = arrange(path, rows)

    y = back(path, numba_ln.layer_norm(x, w, b, axis=axis))
    took(ran, path, "small_norm")
    assert same_bits(y[const], np.broadcast_to(b, y[const].shape))
    check_layer_norm(y[~const], rows[~const], w, b)

    y = back(path, numba_ln.layer_norm(x, axis=axis))
    took(ran, path, "small_norm")
    assert (y[const] == 0).all()
    check_layer_norm(y[~const], rows[~const], None, None)

    mean, var = numba_ln.moments(x, axis=axis)
    took(ran, path, "small_moments")
    assert same_bits(per_row(mean)[const], values) and (per_row(var)[const] == 0).all()

    y_ref = ref.layer_norm(rows, w, b, eps=0.0)[0]
    assert np.isnan(y_ref[const]).all()  # var 0, rstd inf: (x - mean) * rstd = 0 * inf
    y = back(path, numba_ln.layer_norm(x, w, b, axis=axis, eps=0.0))
    took(ran, path, "small_norm")
    assert np.isnan(y[const]).all()
    check_layer_norm(y[~const], rows[~const], w, b, eps=0.0)


# --- 4. NaN and inf ---------------------------------------------------------------------------

def bad_rows(path):
    """Rows to poison per path: on the parallel path the first row of a task, rows in the
    middle of one (the next row is then summed on its own) and a task's last row."""
    rows, cols = SHAPES[path]
    if path == "parallel":
        per_task = _threading.rows_per_task(rows, cols)
        assert rows >= 4 * per_task
        return [0, 30, per_task, 2 * per_task - 1, 3 * per_task + 7]
    if path == "channels":
        return [0, 17, 130, 150]  # in tiles 0 and 2 (channel_tiles): 1 and 3 stay clean
    return {"small": [0, 4, 9], "long-parallel": [0, 4], "split": [1, 3]}[path]


def poison(rows, bad):
    """NaN, +inf, -inf and +inf, NaN in the head, NaN as the last element, in turn; the
    second piece of long rows."""
    cols = rows.shape[1]
    spots = [[(cols - 7, np.nan)], [(0, np.inf)], [(5, -np.inf), (cols // 2 + 3, np.inf)],
             [(2, np.nan)], [(cols - 1, np.nan)]]
    out = rows.copy()
    for i, spot in zip(bad, spots):
        for j, v in spot:
            out[i, j] = v
    return out


@pytest.mark.parametrize("path", ALL_PATHS)
def test_nan_and_inf_poison_only_their_row(rng, ran, path):
    """A row holding NaN or inf normalizes to all NaN (its var is NaN); every other row is
    exactly what it is when that row is finite (same array otherwise) and matches the
    oracle."""
    shape = SHAPES[path]
    clean = hard_rows(rng, shape, 1e4)
    bad = bad_rows(path)
    dirty = poison(clean, bad)
    good = np.setdiff1d(np.arange(shape[0]), bad)
    w, b = params(rng, shape[1])
    x_clean, axis = arrange(path, clean)
    x_dirty, _ = arrange(path, dirty)

    y_clean = back(path, numba_ln.layer_norm(x_clean, w, b, axis=axis))
    y_dirty = back(path, numba_ln.layer_norm(x_dirty, w, b, axis=axis))
    took(ran, path, "small_norm")
    check_layer_norm(y_clean, clean, w, b)
    assert np.isnan(y_dirty[bad]).all()
    assert not np.isnan(y_dirty[good]).any()
    check_layer_norm(y_dirty[good], clean[good], w, b)
    if path == "channels":  # the rows of tiles without a bad row (see the xfail below)
        tiles = channel_tiles(path)
        good = np.flatnonzero(~np.isin(tiles, tiles[bad]))
        assert len(good) >= shape[0] // 2
    assert same_bits(y_dirty[good], y_clean[good])

    mean_c, var_c = numba_ln.moments(x_clean, axis=axis)
    mean_d, var_d = numba_ln.moments(x_dirty, axis=axis)
    took(ran, path, "small_moments")
    assert np.isnan(per_row(var_d)[bad]).all()
    assert not np.isfinite(per_row(mean_d)[bad]).any()
    assert same_bits(per_row(mean_d)[good], per_row(mean_c)[good])
    assert same_bits(per_row(var_d)[good], per_row(var_c)[good])


def test_channels_nan_leaves_other_positions_bits(rng):
    """The channels path's counterpart of the exact equality above, for the other
    positions of the bad position's own tile: the channels kernel decides its fallbacks
    (a poor shift, float64 sums, float64 normalizing) position by position since
    2026-12-06 (cpu/_channel_stats.tile_moments, channels.tile_normalize); per tile, a NaN
    position changed the last bits of its tile's others."""
    shape = SHAPES["channels"]
    clean = (1e4 + rng.standard_normal(shape)).astype(F32)  # no fallback in any tile
    w, b = params(rng, shape[1])
    dirty = clean.copy()
    dirty[17, 100] = np.nan
    y_clean = back("channels", numba_ln.layer_norm(arrange("channels", clean)[0], w, b, axis=1))
    y_dirty = back("channels", numba_ln.layer_norm(arrange("channels", dirty)[0], w, b, axis=1))
    assert np.isnan(y_dirty[17]).all()
    good = np.arange(shape[0]) != 17
    assert same_bits(y_dirty[good], y_clean[good])


# --- 5. in place ------------------------------------------------------------------------------

CACHED_VS_FRESH_CODE = """
import sys, numpy as np, numba_ln
from numba_ln.cpu import small
rng = np.random.default_rng(0)
x = (1e4 + rng.standard_normal((10, 1024))).astype(np.float32)
w, b = rng.standard_normal((2, 1024)).astype(np.float32)
y = numba_ln.layer_norm(x, w, b)  # small_layer_norm: rows 0-8 normalized in sweeps
x = rng.standard_normal((64, 768)).astype(np.float32)
w, b = rng.standard_normal((2, 768)).astype(np.float32)
y2 = numba_ln.layer_norm(x, w, b)  # (differed cold: cpu/_local_copies.py)
print(sum(small.small_layer_norm._cache_hits.values()), (y.tobytes() + y2.tobytes()).hex())
"""


@pytest.mark.parametrize("func,path", [
    *[("layer_norm", p) for p in ("small", "parallel", "split")],
    *[("add_rms_norm", p) for p in ("small", "parallel", "split")],
    *[("add_layer_norm", p) for p in ("small", "parallel", "split")],
])
def test_in_place_gives_the_same_bits(rng, ran, func, path):
    """out=x (layer_norm) and residual_out=r (add_layer_norm, add_rms_norm) run the
    IN_PLACE kernels: exactly the bits of the same call with fresh outputs (hard_rows at
    1e4), which match the oracle.  (On the split path, s over r once gave a wrong mean: the
    pieces read their shift from r's head while piece 0 overwrote it.)"""
    shape = SHAPES[path]
    x = hard_rows(rng, shape, 1e4)
    r = (0.5 * rng.standard_normal(shape)).astype(F32)
    w, b = params(rng, shape[1])
    if func == "layer_norm":
        y = numba_ln.layer_norm(x, w, b)
        check_layer_norm(y, x, w, b)
        z = x.copy()
        assert numba_ln.layer_norm(z, w, b, out=z) is z
        y2 = z
        check_layer_norm(z, x, w, b)
    else:
        fn = getattr(numba_ln, func)
        args = (w, b) if func == "add_layer_norm" else (w,)
        y, s = fn(x, r, *args)
        stream = r.copy()
        y2, s2 = fn(x, stream, *args, residual_out=stream)
        assert s2 is stream
        assert same_bits(s, x + r) and same_bits(s2, s)
        if func == "add_layer_norm":
            check_layer_norm(y2, s, w, b)
        else:
            check_rms_norm(y2, s, w, eps=1e-6)
    took(ran, path, "small_norm" if func == "layer_norm" else "small_add_norm")
    assert same_bits(y2, y)


def test_cached_kernel_gives_the_bits_of_a_fresh_compile(tmp_path):
    """Two processes with an empty cache folder: the first compiles (and caches) the
    small-call kernel, the second loads it; both must give the same bits.  (~10 s: one
    compilation every run.)  They once differed in rows normalized inside the fused sweep,
    whose `reassoc` reached the normalizing product (now exact_mul, cpu/_elements.py), and
    in (64, 768) rows, whose helper kernels the compiling process ran as compiled alone
    and the loading one as linked into small_layer_norm (cpu/_local_copies.py)."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}

    def run():
        done = subprocess.run([sys.executable, "-c", CACHED_VS_FRESH_CODE], env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        hits, bits = done.stdout.split()
        return int(hits), bits

    fresh_hits, fresh = run()
    cached_hits, cached = run()
    assert fresh_hits == 0 and cached_hits == 1  # compiled, then loaded from the cache
    fresh, cached = (np.frombuffer(bytes.fromhex(h), F32) for h in (fresh, cached))
    assert same_bits(fresh, cached), f"{(fresh != cached).sum()} of {fresh.size} differ"


# --- 6. long rows -----------------------------------------------------------------------------

@pytest.mark.parametrize("shape,first_kind,path", [
    ((2, 200000), 0, "split"),        # head outliers (G ~ 5600), sorted ramp
    ((1, 300000), 3, "split"),        # quarter step; 5 pieces, the last not whole chunks
    ((9, 70000), 1, "long-parallel"),
])
def test_long_rows(rng, ran, shape, first_kind, path):
    """Rows of several pieces at offset 1e4 (hard_rows): layer_norm and its stats,
    add_layer_norm, rms_norm and moments against the oracle.  (Split rows need not give
    a one-row call's bits; thread-count independence: tests/test_concurrency.py.)"""
    rows = hard_rows(rng, shape, 1e4, first_kind=first_kind)
    w, b = params(rng, shape[1])
    y, mean, rstd = numba_ln.layer_norm(rows, w, b, return_stats=True)
    took(ran, path)
    check_layer_norm(y, rows, w, b)
    check_rstd(rstd, rows)
    check_mean(mean, rows)

    r = rng.standard_normal(shape).astype(F32)
    y, s = numba_ln.add_layer_norm(rows, r, w, b)
    took(ran, path)
    assert same_bits(s, rows + r)
    check_layer_norm(y, s, w, b)

    y = numba_ln.rms_norm(rows, w)
    took(ran, path)
    check_rms_norm(y, rows, w, eps=1e-6)

    mean, var = numba_ln.moments(rows)
    took(ran, path, "small_moments")
    check_moments(mean, var, rows)


# --- 7. float64 far from zero -----------------------------------------------------------------

@pytest.mark.parametrize("path", ALL_PATHS)
def test_float64_far_from_zero(rng, ran, path):
    """float64 hard_rows at offset 1e5: layer_norm to 1e-12 relative, scaled by the
    conditioning |x| * rstd as tests/test_properties.py; var to 1e-12 relative."""
    shape = SHAPES[path]
    rows = hard_rows(rng, shape, 1e5, dtype=F64)
    w, b = params(rng, shape[1], F64)
    x, axis = arrange(path, rows)

    y = numba_ln.layer_norm(x, w, b, axis=axis)
    took(ran, path, "small_norm")
    check_layer_norm(back(path, y), rows, w, b)

    mean, var = numba_ln.moments(x, axis=axis)
    took(ran, path, "small_moments")
    check_moments(mean, var, rows)
