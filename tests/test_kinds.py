"""The CPU fronts' kind caches (numba_ln/_kinds.py): a call whose kind was planned before
gives the same bits and the same errors as its first call, values are still checked on
every call, the caches are bounded, and they serve concurrent threads.  Also the
``--latency`` table's pieces (numba_ln/bench/latency.py)."""
import argparse
import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from _oracle import assert_close

import numba_ln
from numba_ln import _engine, _kinds, _lean
from numba_ln import reference as ref
from numba_ln.bench import latency


@pytest.fixture(autouse=True)
def _tuple_axes_to_the_kind_table(monkeypatch):
    """These tests are the kind table's: tuple axes reach it here, not the small-call gate
    that takes axes which are rows in memory (numba_ln/_small_axes.py)."""
    from numba_ln import _small_axes, _small_axes_backward

    for name in ("small_axes_call", "small_axes_moments_call"):
        monkeypatch.setattr(_small_axes, name, lambda *args: None)
    monkeypatch.setattr(_small_axes_backward, "small_axes_backward_call", lambda *args: None)


def _forms(rng):
    x = rng.standard_normal((6, 5, 8)).astype(np.float32)
    w64 = rng.standard_normal(8)
    return [
        lambda: numba_ln.layer_norm(x, w64, np.full(8, 0.5, np.float32), eps=np.float32(1e-3)),
        lambda: numba_ln.layer_norm(x, axis=(0, 2), return_stats=True),
        lambda: numba_ln.rms_norm(x[:, ::2], axis=1, return_stats=True),
        lambda: numba_ln.add_layer_norm(x, x[:1], w64, return_stats=True),
        lambda: numba_ln.moments(x, axis=(1, 2), keepdims=True),
        lambda: numba_ln.layer_norm_backward(x, x, w64),
        lambda: numba_ln.rms_norm_backward(x, x, axis=0, out=np.empty_like(x)),
    ]


def _same(a, b):
    if isinstance(a, tuple):
        return all(_same(p, q) for p, q in zip(a, b))
    return a.dtype == b.dtype and np.array_equal(a, b)


def test_a_planned_kind_gives_the_first_calls_bits(rng):
    for form in _forms(rng):
        first = form()
        for _ in range(3):
            assert _same(form(), first)


def test_values_are_checked_on_every_call_of_a_planned_kind():
    x = np.ones((4, 6), np.float32)
    out = np.empty_like(x)
    numba_ln.layer_norm(x, axis=(1,), eps=1e-5, out=out)  # plans the kind
    for eps, error in ((-1.0, ValueError), (float("nan"), ValueError), ("1", TypeError)):
        with pytest.raises(error, match="eps"):
            numba_ln.layer_norm(x, axis=(1,), eps=eps, out=out)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="out is read-only"):
        numba_ln.layer_norm(x, axis=(1,), out=out)
    r = np.zeros_like(x)
    both = np.empty((2, 4, 6), np.float32)
    numba_ln.add_layer_norm(x, r, axis=(1,), out=both[0], residual_out=both[1])
    with pytest.raises(ValueError, match="out and residual_out must not overlap"):
        numba_ln.add_layer_norm(x, r, axis=(1,), out=both[0], residual_out=both[0])


@pytest.mark.parametrize("rows", [4, 600])  # (the small-call gate and the threaded path)
@pytest.mark.parametrize("fused", [numba_ln.add_layer_norm, numba_ln.add_rms_norm])
def test_outputs_in_one_buffer_without_a_common_element(rows, fused):
    """out and residual_out may be two halves, or the even and odd rows, of one buffer:
    their address ranges overlap, their elements do not (np.may_share_memory refused
    them).  One element in common is still refused, before anything is written."""
    rng = np.random.default_rng(rows)
    x, r = rng.standard_normal((2, rows, 512)).astype(np.float32)
    expected = fused(x, r)
    halves = np.zeros((rows, 1024), np.float32)
    interleaved = np.zeros((2 * rows, 512), np.float32)
    for out, residual_out in ((halves[:, :512], halves[:, 512:]),
                              (interleaved[0::2], interleaved[1::2])):
        y, s = fused(x, r, out=out, residual_out=residual_out)
        assert y is out and s is residual_out
        assert np.array_equal(y, expected[0]) and np.array_equal(s, expected[1])
    buf = np.zeros((rows + 1, 512), np.float32)
    with pytest.raises(ValueError, match="out and residual_out must not overlap"):
        fused(x, r, out=buf[:rows], residual_out=buf[1:])
    assert not buf.any()


def test_parameters_are_read_on_every_call():
    x = np.arange(12.0).reshape(3, 4)
    w = np.ones(4)
    first = numba_ln.layer_norm(x, w, axis=(1,))
    w[:] = 2.0  # the same array, new values: the cache keeps decisions, never values
    assert np.array_equal(numba_ln.layer_norm(x, w, axis=(1,)), 2 * first)


def test_arguments_without_a_hashable_kind_take_the_full_rules():
    x = [[1.0, 2.0, 4.0], [3.0, 3.0, 3.0]]
    want = ref.layer_norm(np.array(x))[0]
    assert_close(numba_ln.layer_norm(x, axis=[1]), want, scale=4)
    assert_close(numba_ln.layer_norm(np.array(x), axis=(np.int64(1),)), want, scale=4)
    with pytest.raises(TypeError, match="axis"):
        numba_ln.layer_norm(np.array(x), axis=([1],))


def test_caches_are_bounded_lrus():
    for cache in (_kinds._forward_kind, _kinds._backward_kind, _kinds._plan):
        assert cache.cache_info().maxsize == _kinds.MAX_PLANS
    before = _kinds._forward_kind.cache_info().hits
    x = np.ones((2, 3))
    numba_ln.layer_norm(x, axis=(0,))
    numba_ln.layer_norm(x, axis=(0,))
    assert _kinds._forward_kind.cache_info().hits > before


def test_a_bool_axis_is_refused_after_its_integer_was_planned():
    # (x strided, so that the kind table plans axis=1: the small-call gates take the last
    # axis of a C-contiguous x, whatever int names it)
    x, w = np.ones((3, 8), np.float32)[:, ::2], np.ones(4, np.float32)
    numba_ln.layer_norm(x, axis=1)
    numba_ln.layer_norm_backward(x, x, w, axis=1)
    with pytest.raises(TypeError, match="axis must be an integer"):
        numba_ln.layer_norm(x, axis=True)
    with pytest.raises(TypeError, match="axis must be an integer"):
        numba_ln.layer_norm_backward(x, x, w, axis=True)


def _direct_cases(rng):
    """(name, call(out) -> result) of kinds planned direct, without out= and with an out=
    laid out as x: each must give the bits of the general steps, which an out= of another
    layout takes."""
    x = rng.standard_normal((6, 5, 8)).astype(np.float32)
    w, b = rng.standard_normal(8).astype(np.float32), rng.standard_normal(8).astype(np.float32)
    xt = np.ascontiguousarray(x.reshape(30, 8).T)  # the normalized axis first
    r = rng.standard_normal(x.shape).astype(np.float32)
    w2 = rng.standard_normal((5, 8))
    return [  # (axis=(2,) rather than -1 or 2: those calls take the small-call kernels)
        ("rows", lambda out: numba_ln.layer_norm(x, w, b, axis=(2,), out=out,
                                                 return_stats=True)),
        ("axis=0", lambda out: numba_ln.layer_norm(xt, w[:8], axis=0, out=out)),
        ("channels", lambda out: numba_ln.rms_norm(x, np.ones(5), axis=1, out=out)),
        ("two axes", lambda out: numba_ln.layer_norm(x, w2, axis=(1, 2), out=out)),
        ("residual", lambda out: numba_ln.add_layer_norm(x, r, w, b, axis=(2,), out=out)),
        # one row broadcast over x's rows: read in place with a row step of 0
        ("residual row", lambda out: numba_ln.add_layer_norm(x, r[0, 0], w, b, axis=(2,),
                                                             out=out, return_stats=True)),
        ("residual (1, 1, 8)", lambda out: numba_ln.add_rms_norm(x, r[:1, :1], w, axis=(2,),
                                                                 out=out)),
        ("float64", lambda out: numba_ln.layer_norm(x.astype(np.float64), w, axis=(2,),
                                                    out=out)),
        ("float16", lambda out: numba_ln.layer_norm(x.astype(np.float16), axis=(2,),
                                                    out=out)),
    ]


def _counting(monkeypatch, module, name):
    calls = []
    original = getattr(module, name)

    def counted(*args):
        calls.append(name)
        return original(*args)
    monkeypatch.setattr(module, name, counted)
    return calls


def _counting_direct(monkeypatch):
    """The calls that run direct: _engine._run_direct's, and the lean lane's (_lean.py)
    where it took the call."""
    ran = _counting(monkeypatch, _engine, "_run_direct")
    lean = _lean.run

    def counted(*args):
        got = lean(*args)
        if got is not None:
            ran.append("lean")
        return got
    monkeypatch.setattr(_lean, "run", counted)
    return ran


def test_direct_kinds_give_the_bits_of_the_general_steps(rng, monkeypatch):
    ran_direct = _counting_direct(monkeypatch)
    for name, call in _direct_cases(rng):
        direct = call(None)
        assert len(ran_direct) == 1, name
        y = direct[0] if isinstance(direct, tuple) else direct
        into_out = call(np.empty_like(y))  # (x's layout: direct too)
        assert len(ran_direct) == 2, name
        general = call(np.empty(y.shape[::-1], y.dtype).T)  # (another layout)
        assert len(ran_direct) == 2, name
        assert _same(direct, general) and _same(into_out, general), name
        ran_direct.clear()


def test_broadcast_residuals_give_the_bits_of_a_full_one(rng, monkeypatch):
    """A residual broadcast over x's rows runs direct (it took the general steps, 34 us
    against 12 at (1, 768)); one broadcast over some batch axes only, or along the
    normalized axis, still takes them (the kernels cannot walk it in place)."""
    ran_direct = _counting_direct(monkeypatch)
    x = rng.standard_normal((6, 5, 8)).astype(np.float32)
    for r, direct in ((rng.standard_normal(8), True), (rng.standard_normal((1, 5, 1)), False),
                      (rng.standard_normal((5, 8)), False)):
        r = r.astype(np.float32)
        full = np.ascontiguousarray(np.broadcast_to(r, x.shape))
        for fused in (numba_ln.add_layer_norm, numba_ln.add_rms_norm):
            ran_direct.clear()
            s_out = np.empty_like(x)
            got = fused(x, r, axis=(2,), residual_out=s_out, return_stats=True)
            assert len(ran_direct) == direct and got[1] is s_out
            assert _same(got, fused(x, full, axis=(2,), return_stats=True))
    # residual_out whose first row is the residual: it starts where the output does, with
    # its strides, and was taken for the output's own input (written in place, row 0 only)
    x2 = x.reshape(30, 8)
    s_out = np.zeros_like(x2)
    s_out[0] = rng.standard_normal(8)
    expected = numba_ln.add_layer_norm(x2, np.broadcast_to(s_out[:1], x2.shape).copy())
    got = numba_ln.add_layer_norm(x2, s_out[:1], residual_out=s_out)
    assert got[1] is s_out and _same(got, expected)


def test_outputs_over_inputs_run_direct_only_in_place(rng, monkeypatch):
    """out=x and residual_out=residual run direct (in place); an output that overlaps an
    input it does not replace takes the general steps, which read a copy."""
    ran_direct = _counting_direct(monkeypatch)
    x = rng.standard_normal((40, 6000)).astype(np.float32)  # (above the small-call bound)
    r = rng.standard_normal(x.shape).astype(np.float32)
    expected = numba_ln.layer_norm(x, axis=1)
    expected_y, expected_s = numba_ln.add_layer_norm(x, r, axis=1)
    ran_direct.clear()
    xc = x.copy()
    assert numba_ln.layer_norm(xc, axis=1, out=xc) is xc and np.array_equal(xc, expected)
    rc = r.copy()
    y, s = numba_ln.add_layer_norm(x, rc, axis=1, residual_out=rc)
    assert s is rc and np.array_equal(s, expected_s) and np.array_equal(y, expected_y)
    assert len(ran_direct) == 2
    # out one row past x in one buffer: every row written overlaps the next row read
    buf = np.concatenate([x.reshape(-1), np.zeros(6000, np.float32)]).reshape(41, 6000)
    got = numba_ln.layer_norm(buf[:40], axis=1, out=buf[1:])
    assert len(ran_direct) == 2
    assert np.array_equal(got, expected)


def test_a_broadcast_weight_is_never_read_as_a_flat_one(rng):
    x = rng.standard_normal((3, 8))
    assert np.array_equal(numba_ln.layer_norm(x, np.full(1, 2.0)),
                          numba_ln.layer_norm(x, np.full(8, 2.0)))
    assert np.array_equal(numba_ln.layer_norm_backward(x, x, np.full(1, 2.0))[0],
                          numba_ln.layer_norm_backward(x, x, np.full(8, 2.0))[0])


def test_direct_backward_gives_the_bits_of_the_general_steps(rng):
    x = rng.standard_normal((6, 5, 8)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    w = rng.standard_normal(8).astype(np.float32)
    _, mean, rstd = numba_ln.layer_norm(x, w, return_stats=True)
    for call in (lambda out: numba_ln.layer_norm_backward(dy, x, w, out=out),
                 lambda out: numba_ln.layer_norm_backward(dy, x, w, mean=mean, rstd=rstd,
                                                          out=out, grad_residual=x),
                 lambda out: numba_ln.rms_norm_backward(dy, x, axis=(1, 2), out=out)):
        assert _same(call(None), call(np.empty_like(x)))


def test_planned_kinds_serve_threads_at_once(rng):
    forms = _forms(rng)
    want = [f() for f in forms]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda i: forms[i % len(forms)](), range(60)))
    for i, g in enumerate(got):
        # Bitwise but for the README's "Same bits" caveat on output placement: threads
        # allocating at once can put y just after a weight copy, and then LLVM's loop runs
        # its scalar form (test_output_placement_changes_no_bit below).
        _same_or_within_bound(g, want[i % len(forms)])


def _same_or_within_bound(got, want):
    if isinstance(got, tuple):
        for g, w in zip(got, want):
            _same_or_within_bound(g, w)
    elif not _same(got, want):
        assert got.dtype == want.dtype
        assert_close(got, want.astype(np.float64), scale=4)


def _placed_after_weight(w, shape, gaps):
    """(a copy of w, y of shape placed gap elements after it) for each gap: an output that
    starts within a vector's reach after the weight."""
    for gap in gaps:
        memory = np.zeros(w.size + gap + int(np.prod(shape)), w.dtype)
        memory[:w.size] = w
        yield gap, memory[:w.size], memory[w.size + gap:].reshape(shape)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_output_placement_changes_no_bit(rng, dtype):
    # y placed right after the weight once failed LLVM's run-time overlap test in front of
    # the vector loop, and the scalar loop summed the next row in another order (_storage,
    # _alias): 4-10 elements of a row differed by an ulp
    x = rng.standard_normal((6, 5, 8)).astype(dtype)
    w = rng.standard_normal(8).astype(dtype)
    b = np.full(8, 0.5, dtype)
    want = numba_ln.layer_norm(x, w, b, eps=1e-3)
    want_rms = numba_ln.rms_norm(x, w, eps=1e-3)
    for gap, w_copy, y in _placed_after_weight(w, x.shape, range(0, 64, 4)):
        assert _same(numba_ln.layer_norm(x, w_copy, b, eps=1e-3, out=y), want), gap
        assert _same(numba_ln.rms_norm(x, w_copy, eps=1e-3, out=y), want_rms), gap


def test_fused_output_placement_changes_no_bit(rng):
    """The fused forms too (cpu/_alias.py: the sums scope): y placed 0-56 bytes after the
    weight changed 4-18 of 240 elements before."""
    x, r = rng.standard_normal((2, 6, 5, 8)).astype(np.float32)
    w = rng.standard_normal(8).astype(np.float32)
    want = numba_ln.add_layer_norm(x, r, w, eps=1e-3)
    for gap, w_copy, y in _placed_after_weight(w, x.shape, range(0, 64, 8)):
        assert _same(numba_ln.add_layer_norm(x, r, w_copy, eps=1e-3, out=y), want), gap


# --- the --latency table ---------------------------------------------------------------------

def test_latency_rows_and_table():
    names = {"layer_norm(x, g, b)", "moments(x)", "layer_norm_backward(dy, x, g)",
             "add_layer_norm(x, r, g, b)", "backward axis=(-2, -1)",
             "add_layer_norm, x as (cols,)"}
    rows = latency.measure(rounds=1, batch_ms=0.2, shapes=((1, 16),), names=names)
    assert {r["form"] for r in rows} == names
    for r in rows:
        assert r["us"] > 0 and r["backward"] == ("backward" in r["form"])
        assert r["peer"] == (latency.FUSED if r["form"].startswith("add") else
                             latency.BACKWARD if r["backward"] else latency.FORWARD)
    table = latency.format_table(rows)
    assert table.count("\n") == len(rows) + 1 and "`moments(x)` | 1x16 |" in table
    assert "| x + r, F.layer_norm |" in table


def test_latency_verdicts():
    row = {"shape": (1, 768), "backward": False, "ratio": 0.4}
    assert latency.verdict(row) == "PASS (<= 0.5x)"
    assert latency.verdict({**row, "ratio": 0.6}) == "MISS (<= 0.5x)"
    assert latency.verdict({**row, "shape": (64, 1024)}) == ""  # no forward target there
    assert latency.verdict({**row, "shape": (64, 1024), "backward": True,
                            "ratio": 0.9}) == "PASS (<= 1.0x)"
    assert latency.verdict({**row, "ratio": None}) == ""
    # ratios: two decimals, three significant digits below 0.1 (it printed "0.00x")
    assert latency._ratio(0.4567) == "0.46x" and latency._ratio(0.00412) == "0.00412x"


def test_latency_honours_a_given_batch_length(monkeypatch, capsys):
    """The table's batches are 20 ms at most by default; --batch-ms 100 was cut to 20
    silently, though --help says --latency honours it."""
    seen = []
    monkeypatch.setattr(latency, "measure", lambda rounds, batch_ms, **kw: seen.append(batch_ms)
                        or [])
    for given, settings_ms, used in ((100.0, 100.0, 100.0), (None, 25.0, 20.0)):
        args = argparse.Namespace(batch_ms=given, json=None)
        latency.main(args, {"rounds": 1, "batch_ms": settings_ms}, 1, lambda m: None)
        assert seen.pop() == used
    capsys.readouterr()


def test_latency_json_has_the_other_modes_meta(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(latency, "measure", lambda rounds, batch_ms, **kw: [])
    path = tmp_path / "latency.json"
    args = argparse.Namespace(batch_ms=None, json=str(path))
    latency.main(args, {"rounds": 1, "batch_ms": 4.0}, 1, lambda m: None)
    saved = json.loads(path.read_text())
    assert saved["latency"] == [] and saved["meta"]["batch_ms"] == 4.0
    assert {"command", "environment", "settings", "date"} <= set(saved["meta"])
    capsys.readouterr()
