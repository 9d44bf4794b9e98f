"""Streamed outputs (cpu/_stream.py) give the bits of ordinary stores.

Large outputs of the threaded row kernels are written row by row into a scratch row and
streamed past the caches; the decision is a run-time flag (streams), so the same
calls, made with the size bound lowered to 0, stream rows of every alignment: odd widths
(rows that start mid-line, short heads and tails), a strided out=, 16-bit data, the widest
row the scratch holds and one wider (not streamed).
"""
import os
import subprocess
import sys

import ml_dtypes
import numpy as np
import pytest

import numba_ln
from numba_ln import _config
from numba_ln.cpu._elements import IN_PLACE
from numba_ln.cpu._stream import STREAM_MAX_ROW_BYTES, streams

BF16 = np.dtype(ml_dtypes.bfloat16)


def _results(x, g, out):
    return (*numba_ln.layer_norm(x, g, g, return_stats=True),
            numba_ln.layer_norm(x, g, g, out=out).copy(),
            *numba_ln.add_layer_norm(x, x[::-1], g, g),
            numba_ln.rms_norm(x, g))


def _plain_and_streamed(monkeypatch, dtype, shape, out):
    rng = np.random.default_rng(0)
    x = (3 + rng.standard_normal(shape)).astype(dtype)
    g = rng.standard_normal(shape[1]).astype(np.float32)
    plain = _results(x, g, out)
    monkeypatch.setattr(_config, "STREAM_MIN_BYTES", 0)
    return plain, _results(x, g, out)


def _assert_same_bits(plain, streamed):
    for a, b in zip(plain, streamed):
        assert a.dtype == b.dtype
        if a.dtype == BF16:
            a, b = a.view(np.uint16), b.view(np.uint16)
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, BF16])
@pytest.mark.parametrize("cols", [7, 100, 1001])  # (7: the fused forms' rows, shorter
# than a line; the plain forms' go to the narrow kernel, which does not stream)
def test_streamed_rows_have_the_bits_of_stored_ones(monkeypatch, dtype, cols):
    rows = -(-200_000 // cols)  # (above the serial bound: the threaded kernel)
    out = np.empty((rows, cols), dtype)
    plain, streamed = _plain_and_streamed(monkeypatch, dtype, (rows, cols), out)
    _assert_same_bits(plain, streamed)


def test_a_strided_out_is_streamed_row_by_row(monkeypatch):
    whole = np.full((300, 1024), 7.0, np.float32)
    out = whole[:, 3:1003]  # (rows 4096 bytes apart, each starting 12 bytes into a line)
    plain, streamed = _plain_and_streamed(monkeypatch, np.float32, (300, 1000), out)
    _assert_same_bits(plain, streamed)
    x = plain[0] - 1
    r, r2 = x[::-1].copy(), x[::-1].copy()  # (s written over r: IN_PLACE, y streamed)
    got = numba_ln.add_rms_norm(x, r, None, residual_out=r)
    monkeypatch.setattr(_config, "STREAM_MIN_BYTES", 1 << 62)
    _assert_same_bits(numba_ln.add_rms_norm(x, r2, None, residual_out=r2), got)
    np.testing.assert_array_equal(whole[:, :3], 7.0)  # (nothing written outside out)
    np.testing.assert_array_equal(whole[:, 1003:], 7.0)


@pytest.mark.parametrize("extra", [0, 1])
def test_rows_up_to_the_scratch_row_stream_and_wider_ones_do_not(monkeypatch, extra):
    cols = STREAM_MAX_ROW_BYTES // 4 + extra
    out = np.empty((24, cols), np.float32)
    plain, streamed = _plain_and_streamed(monkeypatch, np.float32, (24, cols), out)
    _assert_same_bits(plain, streamed)
    view = (out.reshape(-1), 0, cols)
    assert streams(view, 24 * cols, cols, 2) is (extra == 0)


def test_what_is_never_streamed():
    x = np.zeros((16384, 1024), np.float32)
    view = (x.reshape(-1), 0, 1024)
    assert streams(view, 16384 * 1024, 1024, 2)  # (64 MB read, 64 written)
    assert not streams(view, 4096 * 1024, 1024, 2)  # (16 and 16)
    assert streams(view, 6144 * 1024, 1024, 4)  # (add_layer_norm: 48 MB read, 48 written)
    assert not streams(view, 16384 * 1024, 16384, 2)  # (a row longer than the scratch row)
    assert not streams(None, 16384 * 1024, 1024, 2)  # (statistics only)
    assert not streams(IN_PLACE, 16384 * 1024, 1024, 2)  # (over x: read just before)


def test_the_bound_is_read_from_the_environment():
    assert _config._stream_min_bytes("80M") == 80 * 2**20
    assert _config._stream_min_bytes("0") == 0
    assert _config._stream_min_bytes("1048577") == 2**20 + 1
    assert _config._stream_min_bytes("512k") == _config._stream_min_bytes("512K") == 2**19
    assert _config._stream_min_bytes("2G") == 2**31
    for bad in ("", "-1", "32MB", "1.5M", "M", "32 M", "lots"):
        with pytest.raises(ValueError, match=f"NUMBA_LN_STREAM_MIN_BYTES .*not {bad!r}"):
            _config._stream_min_bytes(bad)
    code = "from numba_ln import _config; print(_config.STREAM_MIN_BYTES)"
    for setting, expected in (("32M", str(32 * 2**20)), (None, str(80 * 2**20)),
                              ("32MB", "ValueError: NUMBA_LN_STREAM_MIN_BYTES must be")):
        env = {k: v for k, v in os.environ.items() if k != "NUMBA_LN_STREAM_MIN_BYTES"}
        if setting is not None:
            env["NUMBA_LN_STREAM_MIN_BYTES"] = setting
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              text=True, timeout=300)
        assert expected in done.stdout + done.stderr
        assert (done.returncode == 0) is (setting != "32MB")


@pytest.mark.parametrize("dtype", [np.float32, BF16])
@pytest.mark.parametrize("cols", [100, 1001])
def test_streamed_gradients_have_the_bits_of_stored_ones(monkeypatch, dtype, cols):
    rng = np.random.default_rng(1)
    rows = -(-200_000 // cols)  # (above the backward's serial bound: the threaded kernel)
    dy, x, gr = ((2 + rng.standard_normal((rows, cols))).astype(dtype) for _ in range(3))
    w = rng.standard_normal(cols).astype(np.float32)

    def gradients():
        out = np.empty_like(x)
        return (*numba_ln.layer_norm_backward(dy, x, w, grad_residual=gr),
                *numba_ln.rms_norm_backward(dy, x, w),
                numba_ln.layer_norm_backward(dy, x, w, out=out)[0].copy())
    plain = gradients()
    monkeypatch.setattr(_config, "STREAM_MIN_BYTES", 0)
    _assert_same_bits(plain, gradients())


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_streamed_channels_have_the_bits_of_stored_ones(monkeypatch, dtype):
    rng = np.random.default_rng(2)
    x = (1 + rng.standard_normal((3, 70, 33, 37))).astype(dtype)  # (odd tiles and offsets)
    xf = np.asfortranarray((1 + rng.standard_normal((301, 1001))).astype(dtype))
    g = rng.standard_normal(70).astype(np.float32)

    def results():
        return (numba_ln.layer_norm(x, g, g, axis=1), numba_ln.layer_norm(xf),
                numba_ln.rms_norm(x, axis=1))
    plain = results()
    monkeypatch.setattr(_config, "STREAM_MIN_BYTES", 0)
    _assert_same_bits(plain, results())


def test_outputs_off_their_element_size_and_short_rows(monkeypatch):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((300, 1001)).astype(np.float32)
    raw = np.zeros(x.nbytes + 1, np.uint8)
    odd = raw[1:].view(np.float32).reshape(x.shape)  # (no whole line can be streamed)
    tiny = rng.standard_normal((40000, 9)).astype(np.float32)  # (rows shorter than a line)
    plain = (numba_ln.layer_norm(x), *numba_ln.add_layer_norm(tiny, tiny, None, None))
    monkeypatch.setattr(_config, "STREAM_MIN_BYTES", 0)
    numba_ln.layer_norm(x, out=odd)
    _assert_same_bits(plain, (odd, *numba_ln.add_layer_norm(tiny, tiny, None, None)))
    assert raw[0] == 0


@pytest.mark.parametrize("dtype", [np.float32, BF16])
def test_rows_computed_in_float64_stream_their_own_results(monkeypatch, dtype):
    """A row whose rstd leaves float32's range (a NaN in it, or a spread of 1e30) is
    computed in float64 into the scratch row; the next row's lone sums then wrote a dummy
    row there before it was streamed: such rows came out as the bias (forward, bfloat16)
    or 0 (backward), NaN lost, unless last in their task.  (The other tests' forms: no
    kernel variant of its own.)"""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((600, 256)).astype(np.float32)  # (threaded: above both bounds)
    x[10, 7] = np.nan
    x[20] = 1e30 * rng.standard_normal(256)
    x, dy, gr = x.astype(dtype), *(rng.standard_normal(x.shape).astype(dtype) for _ in "ab")
    g = rng.standard_normal(256).astype(np.float32)

    def results():
        return (numba_ln.layer_norm(x, g, g), numba_ln.rms_norm(x, g),
                *numba_ln.layer_norm_backward(dy, x, g, grad_residual=gr),
                *numba_ln.rms_norm_backward(dy, x, g))

    plain = results()
    monkeypatch.setattr(_config, "STREAM_MIN_BYTES", 0)
    _assert_same_bits(plain, results())
    assert np.isnan(plain[0][10].astype(np.float32)).all()  # (the NaN row: NaN throughout)
    dx = plain[2].astype(np.float32)
    assert np.isnan(dx[10]).all() and np.isfinite(dx[20]).all() and dx[20].any()
