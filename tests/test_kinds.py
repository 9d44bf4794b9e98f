"""The CPU fronts' kind caches (numba_ln/_kinds.py): a call whose kind was planned before
gives the same bits and the same errors as its first call, values are still checked on
every call, the caches are bounded, and they serve concurrent threads.  Also the
``--latency`` table's pieces (numba_ln/bench/latency.py)."""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from _oracle import assert_close

import numba_ln
from numba_ln import _kinds
from numba_ln import reference as ref
from numba_ln.bench import latency


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
    assert _kinds._typed_call.cache_info().maxsize == _kinds.MAX_PLANS
    assert _kinds._plan.cache_info().maxsize == _kinds.MAX_PLANS
    before = _kinds._typed_call.cache_info().hits
    x = np.ones((2, 3))
    numba_ln.layer_norm(x, axis=(0,))
    numba_ln.layer_norm(x, axis=(0,))
    assert _kinds._typed_call.cache_info().hits > before


def test_planned_kinds_serve_threads_at_once(rng):
    forms = _forms(rng)
    want = [f() for f in forms]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda i: forms[i % len(forms)](), range(60)))
    for i, g in enumerate(got):
        assert _same(g, want[i % len(forms)])


# --- the --latency table ---------------------------------------------------------------------

def test_latency_rows_and_table():
    names = {"layer_norm(x, g, b)", "moments(x)", "layer_norm_backward(dy, x, g)"}
    rows = latency.measure(rounds=1, batch_ms=0.2, shapes=((1, 16),), names=names)
    assert {r["form"] for r in rows} == names
    for r in rows:
        assert r["us"] > 0 and r["backward"] == ("backward" in r["form"])
    table = latency.format_table(rows)
    assert table.count("\n") == len(rows) + 1 and "`moments(x)` | 1x16 |" in table


def test_latency_verdicts():
    row = {"shape": (1, 768), "backward": False, "ratio": 0.4}
    assert latency.verdict(row) == "PASS (<= 0.5x)"
    assert latency.verdict({**row, "ratio": 0.6}) == "MISS (<= 0.5x)"
    assert latency.verdict({**row, "shape": (64, 1024)}) == ""  # no forward target there
    assert latency.verdict({**row, "shape": (64, 1024), "backward": True,
                            "ratio": 0.9}) == "PASS (<= 1.0x)"
    assert latency.verdict({**row, "ratio": None}) == ""
