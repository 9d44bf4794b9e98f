"""A vector, x of shape (cols,), as a decoder holds one token: the plain and fused small
calls pass it to the kernels as it is (no (1, cols) views, ~0.2 us each), its
statistics, moments and backward as a (1, cols) row (the 2-D kernel variants: training
holds batches), each with the bits of the same call on the (1, cols) row, keepdims
statistics of shape (1,), and the general path's errors for what it refuses."""
import numpy as np
import pytest
from _oracle import same_bits as same
from _oracle import x_ranks

import numba_ln
from numba_ln import _small_backward_front, _small_front, _small_moments

COLS = 40


@pytest.fixture
def data(rng):
    x, r, dy = (3.0 + rng.standard_normal((3, COLS))).astype(np.float32)
    w, b = (1.0 + rng.standard_normal((2, COLS))).astype(np.float32)
    return x, r, dy, w, b


def test_the_fused_forms_read_a_vector_as_it_is(monkeypatch, data):
    x, r, _, w, b = data
    ranks = x_ranks(monkeypatch, _small_front, ("small_layer_norm_stats",), at=1)
    ranks_fused = x_ranks(monkeypatch, _small_front, (
        "small_add_layer_norm", "small_add_rms_norm"), at=2)
    calls = [lambda x, r: numba_ln.layer_norm(x, w, b, return_stats=True),
             lambda x, r: numba_ln.add_layer_norm(x, r, w, b),
             lambda x, r: numba_ln.add_rms_norm(x, r, w)]
    for call, rank in zip(calls, (2, 1, 1)):
        want = call(x[None], r[None])
        ranks.clear(), ranks_fused.clear()
        got = call(x, r)
        assert ranks + ranks_fused == [rank]
        # (y, and s, of the vector's shape; statistics keepdims: shape (1,))
        assert same(got, tuple(a.reshape(-1) for a in want))
    stream, into = r.copy(), np.full(COLS, np.nan, np.float32)
    want = numba_ln.add_layer_norm(x[None], r[None], w, b)
    got = numba_ln.add_layer_norm(x, stream, w, b, out=into, residual_out=stream)
    assert got[0] is into and got[1] is stream
    assert same(got, tuple(a.reshape(-1) for a in want))


def test_moments_read_a_vector_as_a_row(monkeypatch, data):
    x = data[0]
    ranks = x_ranks(monkeypatch, _small_moments, ("small_moments",), at=0)
    for keepdims in (False, True):
        want = numba_ln.moments(x[None], keepdims=keepdims)
        got = numba_ln.moments(x, keepdims=keepdims)
        assert same(tuple(np.asarray(g) for g in got),
                    tuple(m.reshape((1,) if keepdims else ()) for m in want))
    assert ranks == [2, 2, 2, 2]


def test_the_backward_reads_a_vector_as_a_row(monkeypatch, data):
    x, r, dy, w, b = data
    ranks = x_ranks(monkeypatch, _small_backward_front, (
        "small_layer_norm_backward", "small_layer_norm_backward_stats"), at=2)
    _, mean, rstd = numba_ln.layer_norm(x, w, b, return_stats=True)
    assert mean.shape == rstd.shape == (1,)
    for given in ({}, {"mean": mean, "rstd": rstd}):
        dx, dw, db = numba_ln.layer_norm_backward(
            dy[None], x[None], w, **{k: v[None] for k, v in given.items()})
        ranks.clear()
        assert same(numba_ln.layer_norm_backward(dy, x, w, **given),
                    (dx.reshape(-1), dw, db))
        assert ranks == [2]
    with pytest.raises(ValueError, match="rstd"):
        numba_ln.layer_norm_backward(dy, x, w, mean=mean, rstd=np.ones(2, np.float32))
    with pytest.raises(ValueError, match=r"^weight of shape \(1, 40\)"):
        numba_ln.layer_norm_backward(dy, x, w[None])
