"""Calls the kernels read as they are (no views): a batch of sequences, x of shape (B, T,
C) normalized over C, as transformers hold their activations (every form), and a column
(n, 1) over axis 0 (one row of n in memory, the rows kernels).  They
must give the bits of the same call on (rows, cols) rows and of the general path, refuse
what the general path refuses with its error, and write nothing when they decline."""
import ml_dtypes
import numpy as np
import pytest
from _oracle import general_axes, record_calls, x_ranks
from _oracle import same_bits as same

import numba_ln
from numba_ln import _small_axes, _small_backward_front, _small_front

SHAPES = [(2, 3, 40), (3, 1, 2, 24)]  # (a batch of sequences; a rank-4 one)


@pytest.fixture
def rows_ran(monkeypatch):
    """Which rows kernels took a call (status 0), in order."""
    return record_calls(monkeypatch, [
        (_small_axes, name, "rows")
        for name in ("small_layer_norm_rows", "small_rms_norm_rows")])


def _data(rng, shape, dtype=np.float32):
    x = (100.0 + 3.0 * rng.standard_normal(shape)).astype(dtype)
    w, b = (1.0 + rng.standard_normal((2, shape[-1]))).astype(
        np.float64 if dtype == np.float64 else np.float32)
    return x, w, b


@pytest.mark.parametrize("shape", SHAPES)
def test_the_forward_reads_the_batch_as_it_is(rng, monkeypatch, shape):
    x, w, b = _data(rng, shape)
    ranks = x_ranks(monkeypatch, _small_front, ("small_layer_norm", "small_rms_norm"), at=1)
    rows = x.reshape(-1, shape[-1])
    axis = general_axes(len(shape) - 1)
    calls = [
        (lambda x, **k: numba_ln.layer_norm(x, w, b, **k),
         lambda: numba_ln.layer_norm(rows, w, b).reshape(shape)),
        (lambda x, **k: numba_ln.layer_norm(x, None, b, **k),
         lambda: numba_ln.layer_norm(rows, None, b).reshape(shape)),
        (lambda x, **k: numba_ln.rms_norm(x, w, **k),
         lambda: numba_ln.rms_norm(rows, w).reshape(shape)),
    ]
    for call, on_rows in calls:
        want = on_rows()
        ranks.clear()
        assert same(call(x), want)
        assert same(call(x, axis=axis), want)  # (the general path)
        out = np.full(shape, np.nan, np.float32)
        assert call(x, out=out) is out
        assert same(out, want)
        in_place = x.copy()
        assert call(in_place, out=in_place) is in_place
        assert same(in_place, want)
        assert ranks == [len(shape)] * 3


# (a batch of sequences only: each rank compiles the kernels again, ~1 s a form)
@pytest.mark.parametrize("shape", SHAPES[:1])
def test_the_statistics_of_a_batch_read_it_as_it_is(rng, monkeypatch, shape):
    x, w, b = _data(rng, shape)
    ranks = x_ranks(monkeypatch, _small_front, ("small_layer_norm_stats",
                                                 "small_rms_norm_stats"), at=1)
    rows = x.reshape(-1, shape[-1])
    keep = shape[:-1] + (1,)
    axis = general_axes(len(shape) - 1)
    for call in (lambda x, **k: numba_ln.layer_norm(x, w, b, return_stats=True, **k),
                 lambda x, **k: numba_ln.rms_norm(x, w, return_stats=True, **k)):
        y, *stats = call(rows)
        want = (y.reshape(shape), *(s.reshape(keep) for s in stats))
        ranks.clear()
        got = call(x)
        assert same(got, want)  # (keepdims statistics of the float32 data)
        assert ranks == [3]
        assert same(call(x, axis=axis), want)  # (the general path)
        in_place = x.copy()
        got = call(in_place, out=in_place)
        assert got[0] is in_place and same(got, want)
        assert ranks == [3, 3]
    xb = x.astype(ml_dtypes.bfloat16)
    y, mean, rstd = numba_ln.layer_norm(xb.reshape(rows.shape), w, b, return_stats=True)
    ranks.clear()
    assert same(numba_ln.layer_norm(xb, w, b, return_stats=True),
                (y.reshape(shape), mean.reshape(keep), rstd.reshape(keep)))
    assert ranks == [3]


def test_a_batchs_residual_stream_is_read_as_it_is(rng, monkeypatch):
    """The fused forms of a batch: x, the residual, y and s reach the kernels as they are
    (rank 3, no views), with the bits of the call on (rows, cols) rows."""
    shape = SHAPES[0]
    x, w, b = _data(rng, shape)
    r = rng.standard_normal(shape).astype(np.float32)
    ranks = x_ranks(monkeypatch, _small_front, ("small_add_layer_norm",
                     "small_add_layer_norm_stats", "small_add_rms_norm"), at=2)
    rows = (-1, shape[-1])
    keep = shape[:-1] + (1,)
    for call in (lambda x, r, **k: numba_ln.add_layer_norm(x, r, w, b, **k),
                 lambda x, r, **k: numba_ln.add_layer_norm(x, r, w, b, return_stats=True, **k),
                 lambda x, r, **k: numba_ln.add_rms_norm(x, r, w, **k)):
        y, s, *stats = call(x.reshape(rows), r.reshape(rows))
        want = (y.reshape(shape), s.reshape(shape), *(t.reshape(keep) for t in stats))
        ranks.clear()
        assert same(call(x, r), want)
        stream = r.copy()  # (the residual stream updated in place, y into x's copy)
        into = x.copy()
        got = call(x, stream, out=into, residual_out=stream)
        assert got[0] is into and got[1] is stream and same(got, want)
        assert ranks == [3, 3]


def test_a_batchs_moments_are_read_as_it_is(rng, monkeypatch):
    from numba_ln import _small_moments
    shape = SHAPES[0]
    x, _, _ = _data(rng, shape)
    ranks = x_ranks(monkeypatch, _small_moments, ("small_moments",), at=0)
    for keepdims in (False, True):
        want = [m.reshape(shape[:-1] + ((1,) if keepdims else ()))
                for m in numba_ln.moments(x.reshape(-1, shape[-1]), keepdims=keepdims)]
        assert same(numba_ln.moments(x, keepdims=keepdims), tuple(want))
    assert ranks == [2, 3, 2, 3]


def test_16_bit_batches(rng, monkeypatch):
    x, w, b = _data(rng, (2, 3, 40))
    xb = x.astype(ml_dtypes.bfloat16)
    want = numba_ln.layer_norm(xb.reshape(6, 40), w, b.astype(ml_dtypes.bfloat16))
    ranks = x_ranks(monkeypatch, _small_front, ("small_layer_norm",), at=1)
    assert same(numba_ln.layer_norm(xb, w, b.astype(ml_dtypes.bfloat16)),
                want.reshape(x.shape))
    assert ranks == [3]


@pytest.mark.parametrize("shape", SHAPES)
def test_the_backward_reads_the_batch_as_it_is(rng, monkeypatch, shape):
    x, w, _ = _data(rng, shape)
    ranks = x_ranks(monkeypatch, _small_backward_front, (
        "small_layer_norm_backward", "small_rms_norm_backward"), at=2)
    dy = rng.standard_normal(shape).astype(np.float32)
    cols = shape[-1]
    for backward in numba_ln.layer_norm_backward, numba_ln.rms_norm_backward:
        dx, *grads = backward(dy.reshape(-1, cols), x.reshape(-1, cols), w)
        want = (dx.reshape(shape), *grads)
        ranks.clear()
        assert same(backward(dy, x, w), want)
        assert same(backward(dy, x, w, axis=general_axes(len(shape) - 1)), want)
        in_place = dy.copy()
        got = backward(in_place, x, w, out=in_place)
        assert got[0] is in_place
        assert same(got, want)
        assert ranks == [len(shape)] * 2


def test_the_backwards_other_forms_read_a_batch_as_it_is(rng, monkeypatch):
    """grad_residual (add_layer_norm's backward) and param_grads=False on a batch:
    small_backward_any takes x, dy, dx, grad_residual and the statistics as they are,
    with the bits of the call on (rows, cols) rows."""
    shape = SHAPES[0]
    x, w, b = _data(rng, shape)
    dy, gr = rng.standard_normal((2, *shape)).astype(np.float32)
    _, mean, rstd = numba_ln.layer_norm(x, w, b, return_stats=True)
    ranks = x_ranks(monkeypatch, _small_backward_front, ("small_backward_any",), at=2)
    rows = (-1, shape[-1])
    # (each form compiles kernel variants of its own, ~2 s: out= in place for one form)
    for backward, named, in_place in [
            (numba_ln.layer_norm_backward, dict(grad_residual=gr, mean=mean, rstd=rstd), True),
            (numba_ln.layer_norm_backward, dict(param_grads=False), False),
            (numba_ln.rms_norm_backward, dict(grad_residual=gr), False)]:
        on_rows = {k: (v.reshape(-1, 1) if k in ("mean", "rstd") else
                       v if k == "param_grads" else v.reshape(rows))
                   for k, v in named.items()}
        dx, *grads = backward(dy.reshape(rows), x.reshape(rows), w, **on_rows)
        if in_place:  # (out=dy: a kernel variant of its own, whose last bits may differ
            # with grad_residual, README, Training: compared with the same call on rows)
            over = dy.reshape(rows).copy()
            want = backward(over, x.reshape(rows), w, out=over, **on_rows)
        ranks.clear()
        assert same(backward(dy, x, w, **named), (dx.reshape(shape), *grads))
        assert ranks == [3]
        if in_place:
            dy_over = dy.copy()
            got = backward(dy_over, x, w, out=dy_over, **named)
            assert got[0] is dy_over
            assert same(got, (want[0].reshape(shape), *want[1:]))
            assert ranks == [3, 3]


@pytest.mark.parametrize("shape", SHAPES[:1])
def test_the_backward_reads_a_batchs_statistics_as_they_are(rng, monkeypatch, shape):
    x, w, b = _data(rng, shape)
    ranks = x_ranks(monkeypatch, _small_backward_front, (
        "small_layer_norm_backward_stats", "small_rms_norm_backward_stats"), at=2)
    dy = rng.standard_normal(shape).astype(np.float32)
    cols = shape[-1]
    for forward, backward in ((lambda x: numba_ln.layer_norm(x, w, b, return_stats=True),
                               numba_ln.layer_norm_backward),
                              (lambda x: numba_ln.rms_norm(x, w, return_stats=True),
                               numba_ln.rms_norm_backward)):
        _, *stats = forward(x)  # (keepdims: the batch's shape, 1 along C)
        named = dict(zip(("mean", "rstd") if len(stats) == 2 else ("rstd",), stats))
        on_rows = {k: v.reshape(-1, 1) for k, v in named.items()}
        dx, *grads = backward(dy.reshape(-1, cols), x.reshape(-1, cols), w, **on_rows)
        want = (dx.reshape(shape), *grads)
        ranks.clear()
        assert same(backward(dy, x, w, **named), want)
        assert ranks == [3]
        assert same(backward(dy, x, w, axis=general_axes(len(shape) - 1), **named), want)
        # statistics a step apart: the general path, the same bits
        strided = {k: np.repeat(v, 2, axis=-1)[..., ::2] for k, v in named.items()}
        assert not strided["rstd"].flags.c_contiguous
        ranks.clear()
        assert same(backward(dy, x, w, **strided), want)
        assert ranks == []
        in_place = dy.copy()
        got = backward(in_place, x, w, out=in_place, **named)
        assert got[0] is in_place and same(got, want)
        with pytest.raises(ValueError, match="(mean|rstd) has shape"):  # (another batch)
            backward(dy, x, w, **{k: v[:1] for k, v in named.items()})


# (a (1, 1, 40) weight as well compiled kernel variants of a 3-D weight only to decline
# them, ~5 s of the suite's CPU, for the refusal (1, 40) checks)
@pytest.mark.parametrize("shape", [(1, 40), (40, 1), (2, 20)])
def test_parameters_of_another_shape_are_refused_as_the_general_path_refuses(rng, shape):
    x, _, _ = _data(rng, (2, 3, 40))
    dy = x[::-1].copy()
    p = np.ones(shape, np.float32)
    for call, name in [(lambda: numba_ln.layer_norm(x, p), "weight"),
                       (lambda: numba_ln.layer_norm(x, None, p), "bias"),
                       (lambda: numba_ln.rms_norm(x, p), "weight"),
                       (lambda: numba_ln.layer_norm_backward(dy, x, p), "weight"),
                       (lambda: numba_ln.rms_norm_backward(dy, x, p), "weight")]:
        before = (x.tobytes(), dy.tobytes())
        with pytest.raises(ValueError, match=rf"^{name} of shape \({shape[0]},"):
            call()
        assert (x.tobytes(), dy.tobytes()) == before


def test_outputs_the_kernels_decline_take_the_general_path(rng):
    x, w, b = _data(rng, (2, 3, 40))
    want = numba_ln.layer_norm(x.reshape(6, 40), w, b).reshape(x.shape)
    strided = np.zeros((2, 3, 41), np.float32)[..., :40]
    assert numba_ln.layer_norm(x, w, b, out=strided) is strided
    assert same(strided, want)
    fortran = np.zeros(x.shape, np.float32, order="F")
    assert numba_ln.layer_norm(x, w, b, out=fortran) is fortran
    assert same(fortran, want)
    wrong = np.zeros((2, 3, 41), np.float32)
    with pytest.raises(ValueError, match="out"):
        numba_ln.layer_norm(x, w, b, out=wrong)
    assert not wrong.any()
    # the fused forms: a residual_out, a residual they cannot read as x's rows
    r = rng.standard_normal(x.shape).astype(np.float32)
    want = numba_ln.add_layer_norm(x.reshape(6, 40), r.reshape(6, 40), w, b)
    stream = np.asfortranarray(r)
    got = numba_ln.add_layer_norm(x, r, w, b, residual_out=stream)
    assert got[1] is stream and same(got, tuple(a.reshape(x.shape) for a in want))
    row = r[0, 0]  # (one row, broadcast over the batch)
    want = numba_ln.add_layer_norm(x.reshape(6, 40), np.broadcast_to(row, (6, 40)), w, b)
    assert same(numba_ln.add_layer_norm(x, row, w, b),
                tuple(a.reshape(x.shape) for a in want))
    with pytest.raises(ValueError, match="residual_out"):
        numba_ln.add_layer_norm(x, r, w, b, residual_out=wrong)
    assert not wrong.any()


@pytest.mark.parametrize("dtype", [np.float32, ml_dtypes.bfloat16])
def test_a_column_over_axis_0_is_one_row(rng, rows_ran, dtype):
    x = _data(rng, (40, 1), dtype)[0]
    w, b = _data(rng, (2, 40))[0]  # (of the normalized shape, (40,))
    for call, on_row in [
            (lambda x, ax: numba_ln.layer_norm(x, w, b, axis=ax),
             lambda: numba_ln.layer_norm(x.T, w, b).T),
            (lambda x, ax: numba_ln.rms_norm(x, None, axis=ax),
             lambda: numba_ln.rms_norm(x.T).T)]:
        want = on_row()
        rows_ran.clear()
        assert same(call(x, 0), want) and same(call(x, -2), want)
        assert rows_ran == ["rows"] * 2
        assert same(call(x, general_axes(0)), want)
    with pytest.raises(ValueError, match=r"^weight of shape \(40, 1\)"):
        numba_ln.layer_norm(x, w.reshape(40, 1), axis=0)
