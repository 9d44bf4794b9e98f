"""Bits that do not depend on where the outputs lie.

A kernel's loop that stores one array while it reads others is vectorized by LLVM behind
a run-time test that they do not overlap, unless the kernel tells LLVM they cannot
(numba_ln/cpu/_alias.py).  Where such a test fails, the loop's scalar copy runs, whose
sums add in another order: the same call then gave results differing in the last bit
depending on where the allocator put an output.  Short rows show it (a vector's reach
is 64 elements), so these place the outputs 0 to a few rows from the inputs, within one
buffer, and compare the bits with the same call on fresh arrays, on every path.
"""
import numba
import numpy as np
import pytest
from _oracle import general_axes

import numba_ln


@numba.njit
def _add_rms_norm_in_njit(x, r, out, residual_out):
    # (one dispatcher for every test: a function made in each would compile in each, ~6 s)
    return numba_ln.add_rms_norm(x, r, out=out, residual_out=residual_out)


@pytest.mark.parametrize("dtype, cols", [(np.float64, 4), (np.float32, 8), (np.float32, 19)])
@pytest.mark.parametrize("centered", [True, False])
def test_fused_forms_give_the_same_bits_wherever_the_sum_lies(rng, dtype, cols, centered):
    """residual_out placed 0-2 rows (and a few elements) after x and the residual, or
    written over the residual placed there, y apart: the bits of the call on fresh arrays,
    on the small, general and @njit paths.  (The row sweep checked s's stores against x's
    and the residual's loads at run time until 2026-12-06: residual_out lying within 256
    bytes after the residual chose the scalar loop.)"""
    rows = 7
    x0 = (rng.standard_normal((rows, cols)) * 10 + 100).astype(dtype)
    r0 = rng.standard_normal((rows, cols)).astype(dtype)
    n = x0.size
    fused = numba_ln.add_layer_norm if centered else numba_ln.add_rms_norm
    calls = {
        "small": (lambda x, r, o, s: fused(x, r, out=o, residual_out=s), fused(x0, r0)),
        "general": (lambda x, r, o, s: fused(x, r, axis=general_axes(1), out=o, residual_out=s),
                    fused(x0, r0)),
        "njit": (_add_rms_norm_in_njit, numba_ln.add_rms_norm(x0, r0)),
    }
    for name, (call, want) in calls.items():
        want = b"".join(a.tobytes() for a in want)
        for gap in range(0, 2 * n + 20, 3):
            buf = np.zeros(6 * n + 40, dtype)
            x, r = buf[:n].reshape(x0.shape), buf[n + 1:2 * n + 1].reshape(x0.shape)
            o = buf[5 * n + 30:6 * n + 30].reshape(x0.shape)
            over_r = gap % 2 == 1  # (residual_out=residual, the residual moved instead)
            if over_r:
                r = buf[n + 1 + gap:2 * n + 1 + gap].reshape(x0.shape)
            s = r if over_r else buf[2 * n + 1 + gap:3 * n + 1 + gap].reshape(x0.shape)
            x[...], r[...] = x0, r0
            got = b"".join(a.tobytes() for a in call(x, r, o, s))
            assert got == want, (name, gap)


# (float32 only: the float64 case compiled ~15-24 s of kernel variants no other test
# needs, the suite is near its 10-minute limit, and 8-byte elements in place are covered by
# tests/test_in_place_parameters.py's small calls)
@pytest.mark.parametrize("dtype, cols", [(np.float32, 12)])
def test_param_grads_off_gives_the_full_calls_dx_wherever_dx_lies(rng, dtype, cols):
    """Short rows, dx placed 0-12 elements before or after the inputs in one buffer: the
    same bits as the call with param_grads, on every path (small, general, @njit).  (The
    row sweep without parameter gradients summed in another order when dx lay within a
    row of the next rows of x and dy: LLVM's runtime overlap check chose its scalar loop.)"""
    x0 = (rng.standard_normal((3, cols)) * 10 + 100).astype(dtype)
    dy0 = rng.standard_normal((3, cols)).astype(dtype)
    n = x0.size

    @numba.njit
    def in_njit(dy, x, out):
        return numba_ln.rms_norm_backward(dy, x, out=out, param_grads=False)[0]

    calls = {
        "small": (lambda dy, x, o: numba_ln.layer_norm_backward(dy, x, out=o,
                                                                param_grads=False)[0],
                  numba_ln.layer_norm_backward(dy0, x0)[0]),
        "general": (lambda dy, x, o: numba_ln.layer_norm_backward(
            dy, x, axis=general_axes(1), out=o, param_grads=False)[0],
                    numba_ln.layer_norm_backward(dy0, x0)[0]),
        "njit": (in_njit, numba_ln.rms_norm_backward(dy0, x0)[0]),
    }
    for name, (call, want) in calls.items():
        for gap in range(-12, 13):
            buf = np.zeros(3 * n + 40, dtype)
            lo, hi = (0, n + abs(gap)) if gap < 0 else (n + 2 + gap, 0)
            o = buf[lo:lo + n].reshape(x0.shape)
            x = buf[hi:hi + n].reshape(x0.shape) if gap < 0 else buf[:n].reshape(x0.shape)
            dy = buf[2 * n + 20:3 * n + 20].reshape(x0.shape)
            x[...], dy[...] = x0, dy0
            assert call(dy, x, o).tobytes() == want.tobytes(), (name, gap)


@pytest.mark.parametrize("centered", [True, False])
def test_reversed_rows_of_residual_out_keep_the_bits(rng, centered):
    """residual_out with its rows reversed (a negative row stride): the row sweep, which
    reads the row of s it normalizes while it stores the next one, then stored before the
    row it read, and LLVM's overlap test chose the scalar loop for rows under its vector
    reach (y differed in the last bits at 20 and 37 columns): s is computed into a fresh
    array and copied."""
    fused = numba_ln.add_layer_norm if centered else numba_ln.add_rms_norm
    for rows, cols in ((3, 37), (2, 20), (4, 64)):
        x, r = rng.standard_normal((2, rows, cols)).astype(np.float32)
        want = fused(x, r)
        for kwargs in ({"residual_out": np.zeros((rows, cols), np.float32)[::-1]},
                       {"residual_out": np.zeros((rows, cols), np.float32)[::-1],
                        "out": np.zeros((rows, cols), np.float32)[::-1]}):
            got = fused(x, r, **kwargs)
            assert got[1] is kwargs["residual_out"]
            assert all(np.array_equal(g.view(np.int32), w.view(np.int32))
                       for g, w in zip(got, want)), (rows, cols, list(kwargs))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_channels_first_gives_the_same_bits_wherever_out_lies(rng, monkeypatch, dtype):
    """axis=1 of (N, C, P): the tiles start where out's rows cross a 64-byte line
    (cpu/channels.tile_task), so where out lies moves the tiles' bounds; each position's
    results are its own (a poor shift, float32's range left, an rstd out of float32's
    range: decided position by position), so no bit moves.  Positions of each such kind
    next to where tile bounds fall, small tiles (TILE_BYTES) so that a row holds several;
    against the float64 formula too."""
    chans, positions = 40, 300
    monkeypatch.setattr(numba_ln._config, "TILE_BYTES", chans * 64 * np.dtype(dtype).itemsize)
    monkeypatch.setattr(numba_ln._config, "TILE_MIN_BYTES", 16 * np.dtype(dtype).itemsize)
    x = rng.standard_normal((2, chans, positions))
    # next to the bounds the tiles may have (multiples of 64 positions, or 16-31 less):
    x[:, :16, [60, 250]] += 3e3  # (a poor head shift: the first 16 channels' mean is far)
    eps = 1e-5
    if dtype is not np.float16:  # (float32: squares below its range, rstd 1e30 > 2**96)
        x[:, :, [61, 251]] *= 1e-30 if dtype is np.float32 else 1e-100
        eps = 0.0
    x = x.astype(dtype)
    w = rng.standard_normal(chans).astype(dtype)
    want = numba_ln.layer_norm(x, w, w, eps=eps, axis=1, return_stats=True)
    want_bits = b"".join(a.tobytes() for a in want)
    for shift in range(0, 80, 3):
        buf = np.zeros(x.size + 200, dtype)
        out = buf[shift:shift + x.size].reshape(x.shape)
        got = numba_ln.layer_norm(x, w, w, eps=eps, axis=1, out=out, return_stats=True)
        assert got[0] is out
        assert b"".join(a.tobytes() for a in got) == want_bits, shift
    x64 = x.astype(np.float64)
    mean = x64.mean(1, keepdims=True)
    rstd = 1 / np.sqrt(x64.var(1, keepdims=True) + eps)
    y = (x64 - mean) * rstd * w[:, None] + w[:, None]
    tol = {np.float32: 1e-5, np.float64: 1e-12, np.float16: 4e-3}[dtype]
    assert np.max(np.abs(want[0] - y) / (1 + np.abs(y))) <= tol
    assert np.max(np.abs(want[2] - rstd) / rstd) <= tol


@pytest.mark.parametrize("rows", [3, 300])  # (the small-call kernel; the threaded path)
def test_an_input_under_an_output_that_is_not_its_own(rng, rows):
    """Only out=x and residual_out=residual are written over their own input in place.
    x that *is* the residual, with residual_out over it, and out over the residual are
    read from a copy: the bits of fresh outputs (the small kernel took the first row's
    shift from the residual after s was stored over it, and @njit code too; y differed
    in the last bits).  out and residual_out both over the residual are refused, on every
    path, before anything is written (the small kernel returned y as both, s lost)."""
    x0 = (rng.standard_normal((rows, 200)) * 3 + 10).astype(np.float32)
    r0 = rng.standard_normal((rows, 200)).astype(np.float32)
    calls = [lambda x, r, **kw: numba_ln.add_layer_norm(x, r, **kw),
             lambda x, r, **kw: numba_ln.add_rms_norm(x, r, **kw),
             lambda x, r, **kw: _add_rms_norm_in_njit(x, r, kw.get("out"),
                                                      kw.get("residual_out"))]
    for k, call in enumerate(calls):
        fused = numba_ln.add_layer_norm if k == 0 else numba_ln.add_rms_norm
        xr = x0.copy()  # x is the residual, s over it
        assert_bits(call(xr, xr, residual_out=xr), fused(x0, x0))
        r = r0.copy()  # out over the residual
        assert_bits(call(x0, r, out=r), fused(x0, r0))
        r = r0.copy()
        with pytest.raises(ValueError, match="out and residual_out must not overlap"):
            call(x0, r, out=r, residual_out=r)
        assert np.array_equal(r, r0)


@pytest.mark.parametrize("cols", [64, 20000])  # (the small-call kernels; the threaded path)
def test_an_output_over_its_input_with_the_other_input_rows_away(rng, cols):
    """out=x (or out=r, out=dy) in place while the other input lies 1-2 rows away in the
    same buffer: that input is read from a copy, the bits of fresh arrays.  The small
    kernels write row i while they sum row i + 1, so an input two rows on was overwritten
    before it was read: y and s (dx) wrong by O(1) in the last rows."""
    buf0 = rng.standard_normal((6, cols)).astype(np.float32)
    for shift in (1, 2):
        for fused in (numba_ln.add_layer_norm, numba_ln.add_rms_norm):
            for over in ("x", "r"):
                buf = buf0.copy()
                x, r = (buf[:4], buf[shift:4 + shift]) if over == "r" else (
                    buf[shift:4 + shift], buf[:4])
                expected = fused(x.copy(), r.copy())
                assert_bits(fused(x, r, out=x if over == "x" else r), expected)
        for backward in (numba_ln.layer_norm_backward, numba_ln.rms_norm_backward):
            buf = buf0.copy()
            dy, x = buf[shift:4 + shift], buf[:4]
            expected = backward(dy.copy(), x.copy())
            assert_bits(backward(dy, x, out=dy), expected)


def assert_bits(got, expected):
    assert all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True))
