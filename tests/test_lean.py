"""The lean lane (_lean.py): a cached kind's commonest calls above the small-call bound
give the general steps' bits, what the lane does not take goes to the general steps, and
bad values raise the general path's errors with nothing written."""
import types
import warnings

import ml_dtypes
import numpy as np
import pytest

import numba_ln
from numba_ln import _lean

ROWS, COLS = 160, 1024  # (above the small calls' 131072 elements)


def _bits(a):
    return np.ascontiguousarray(a).view(np.uint8)


def _same(got, want):
    """Whether each call's results (an array or a tuple of them) have the same types,
    dtypes, shapes and bits."""
    for g, w in zip(got, want, strict=True):
        g, w = (g, w) if isinstance(g, tuple) else ((g,), (w,))
        if len(g) != len(w) or not all(
                type(p) is type(q) and p.dtype == q.dtype and p.shape == q.shape
                and np.array_equal(_bits(p), _bits(q)) for p, q in zip(g, w)):
            return False
    return True


@pytest.fixture
def lane(monkeypatch):
    """Records whether the lane (_lean.run, _lean.moments) took each call it saw;
    lane.off() sends every call to the general steps."""
    taken = []

    def spy_on(lane_function):
        def spy(*args):
            got = lane_function(*args)
            taken.append(got is not None)
            return got
        return spy

    def off():
        for name in ("run", "moments"):
            monkeypatch.setattr(_lean, name, lambda *args: None)

    spy = types.SimpleNamespace(taken=taken, off=off)
    for name in ("run", "moments"):
        monkeypatch.setattr(_lean, name, spy_on(getattr(_lean, name)))
    return spy


def _cases(rng, dtype):
    x = (rng.standard_normal((ROWS, COLS)) * 3 + 100).astype(dtype)
    w, b = (1 + rng.standard_normal((2, COLS))).astype(dtype)
    return [
        lambda out: numba_ln.layer_norm(x, w, b, out=out),
        lambda out: numba_ln.layer_norm(x, out=out),
        lambda out: numba_ln.rms_norm(x, w, out=out, eps=1e-6),
        lambda out: numba_ln.layer_norm(x, None, b, out=out),
    ], x


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_lane_gives_the_general_steps_bits(rng, lane, dtype):
    calls, x = _cases(rng, dtype)
    got = []
    for call in calls:
        for out in (None, np.full_like(x, np.nan)):
            y = call(out)
            assert out is None or y is out
            got.append(_bits(y))
    assert lane.taken and all(lane.taken)
    lane.off()
    want = [_bits(call(out)) for call in calls for out in (None, np.empty_like(x))]
    assert all(np.array_equal(g, w) for g, w in zip(got, want))


@pytest.mark.parametrize("row", [False, True])
def test_the_fused_forms_fresh_outputs_give_the_general_steps_bits(rng, lane, row):
    # (a residual laid out as x, or one row broadcast over x's rows: a position embedding)
    x = (rng.standard_normal((ROWS, COLS)) * 3 + 100).astype(np.float32)
    r = rng.standard_normal(COLS if row else (ROWS, COLS)).astype(np.float32)
    w, b = (1 + rng.standard_normal((2, COLS))).astype(np.float32)
    calls = [lambda: numba_ln.add_layer_norm(x, r, w, b),
             lambda: numba_ln.add_rms_norm(x, r, w)]
    got = [tuple(_bits(a) for a in call()) for call in calls]
    assert lane.taken == [True, True]
    lane.off()
    want = [tuple(_bits(a) for a in call()) for call in calls]
    assert all(np.array_equal(g, w) for gs, ws in zip(got, want) for g, w in zip(gs, ws))
    assert np.array_equal(numba_ln.add_layer_norm(x, r, w, b)[1], x + r)


def test_values_the_lane_takes_leaves_and_refuses(rng, lane):
    # (a NumPy eps and out=x in the lane, as the general steps have them; a read-only
    # parameter and an output over the input shifted left to them; bad values raise the
    # general path's errors, from its own checks, with nothing written)
    x = (rng.standard_normal((ROWS, COLS)) * 3 + 100).astype(np.float32)
    w, b = (1 + rng.standard_normal((2, COLS))).astype(np.float32)
    want = numba_ln.layer_norm(x, w, b)  # (the lane's own result: checked above)
    assert lane.taken == [True]
    read_only = w.copy()
    read_only.flags.writeable = False
    assert np.array_equal(numba_ln.layer_norm(x, read_only, b), want)
    assert np.array_equal(numba_ln.layer_norm(x, w, b, eps=np.float32(1e-5)), want)
    over = x.copy()
    assert numba_ln.layer_norm(over, w, b, out=over) is over  # (in place)
    assert np.array_equal(over, want)
    shifted = np.empty(x.size + COLS, np.float32)
    shifted[COLS:] = x.reshape(-1)
    xs, outs = shifted[COLS:].reshape(x.shape), shifted[:-COLS].reshape(x.shape)
    assert np.array_equal(numba_ln.layer_norm(xs, w, b, out=outs), want)  # (read from a copy)
    assert lane.taken[1:] == [False, True, True, False]
    frozen = np.zeros_like(x)
    frozen.flags.writeable = False
    given = np.full_like(x, 7.0)
    inputs = [a.copy() for a in (x, w, b)]
    for kwargs, error in [(dict(eps=-1.0, out=given), "eps"),
                          (dict(eps=float("nan"), out=given), "eps"),
                          (dict(out=frozen), "out")]:
        with pytest.raises(ValueError, match=error):
            numba_ln.layer_norm(x, w, b, **kwargs)
    assert not frozen.any() and (given == 7.0).all() and len(lane.taken) == 5
    assert all(np.array_equal(a, c) for a, c in zip((x, w, b), inputs))


def test_the_fused_forms_given_outputs_give_the_general_steps_bits(rng, lane):
    # (the residual stream in place, y over x, both, outputs of their own; and overlaps
    # the lane leaves to the general steps: an output over the other input, the outputs
    # over each other)
    x0 = (rng.standard_normal((ROWS, COLS)) * 3 + 100).astype(np.float32)
    r0 = rng.standard_normal((ROWS, COLS)).astype(np.float32)
    w, b = (1 + rng.standard_normal((2, COLS))).astype(np.float32)

    def forms():
        x, r = x0.copy(), r0.copy()
        y, s = np.empty_like(x), np.empty_like(x)
        return [
            lambda: numba_ln.add_layer_norm(x, r, w, b, residual_out=r),
            lambda: numba_ln.add_layer_norm(x.copy(), r0, w, b, out=y),
            lambda: numba_ln.add_rms_norm(x, r0, w, out=x),
            lambda: numba_ln.add_layer_norm(x0.copy(), r0.copy(), w, b, out=y, residual_out=s),
            lambda: numba_ln.add_layer_norm(x0.copy(), r0, w, b, residual_out=x0.copy()),
            lambda: numba_ln.add_layer_norm(x, r, w, b, out=r),  # (y over the residual)
        ], (x, r, y, s)

    calls, arrays = forms()
    got = [tuple(_bits(a) for a in call()) for call in calls] + [_bits(a) for a in arrays]
    assert lane.taken[:5] == [True] * 5 and lane.taken[5] is False
    lane.off()
    calls, arrays = forms()
    want = [tuple(_bits(a) for a in call()) for call in calls] + [_bits(a) for a in arrays]
    for g, w_ in zip(got, want):
        assert all(np.array_equal(p, q) for p, q in zip(g, w_))
    y, r = np.full_like(x0, 7.0), r0.copy()
    with pytest.raises(ValueError, match="overlap"):
        numba_ln.add_layer_norm(x0, r, w, b, out=y, residual_out=y)
    assert (y == 7.0).all() and np.array_equal(r, r0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_statistics_give_the_general_steps_bits(rng, lane, dtype):
    # (return_stats: the plain and fused forms, a batch of sequences (keepdims (B, T, 1)),
    # and a constant row with eps=0, whose rstd is inf, silently, as the general steps
    # give it)
    x = (rng.standard_normal((ROWS, COLS)) * 3 + 100).astype(dtype)
    x[3] = 5.0
    r = rng.standard_normal((ROWS, COLS)).astype(dtype)
    w, b = (1 + rng.standard_normal((2, COLS))).astype(dtype)
    x3 = x.reshape(2, ROWS // 2, COLS)
    calls = [lambda: numba_ln.layer_norm(x, w, b, return_stats=True),
             lambda: numba_ln.layer_norm(x, eps=0.0, return_stats=True),
             lambda: numba_ln.rms_norm(x, w, return_stats=True),
             lambda: numba_ln.layer_norm(x3, w, b, out=np.empty_like(x3), return_stats=True),
             lambda: numba_ln.add_layer_norm(x, r, w, b, return_stats=True),
             lambda: numba_ln.add_rms_norm(x, r, w, residual_out=r.copy(), return_stats=True)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (no overflow or division warnings)
        got = [call() for call in calls]
    assert lane.taken == [True] * len(calls)
    assert np.isinf(got[1][2][3, 0]) and got[1][2].dtype == dtype
    assert got[3][1].shape == got[3][2].shape == (2, ROWS // 2, 1)
    lane.off()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        want = [call() for call in calls]
    assert _same(got, want)


@pytest.mark.parametrize("dtype", [ml_dtypes.bfloat16, np.float16])
def test_16_bit_data_give_the_general_steps_bits(rng, lane, dtype):
    # (read and written as their bits, with float32 parameters as they are; 16-bit
    # parameters, widened by the general steps, are not a lean kind: the lane never sees
    # the call)
    x = (rng.standard_normal((ROWS, COLS)) * 3 + 100).astype(dtype)
    r = rng.standard_normal((ROWS, COLS)).astype(dtype)
    w, b = (1 + rng.standard_normal((2, COLS))).astype(np.float32)
    calls = [lambda: numba_ln.layer_norm(x, w, b, out=np.empty_like(x)),
             lambda: numba_ln.rms_norm(x, w, return_stats=True),
             lambda: numba_ln.add_layer_norm(x, r, w, b, residual_out=r.copy()),
             lambda: numba_ln.layer_norm(x, w.astype(dtype), b.astype(dtype))]
    got = [call() for call in calls]
    assert lane.taken == [True, True, True]
    lane.off()
    want = [call() for call in calls]
    assert _same(got, want)
    assert got[0].dtype == dtype and got[1][1].dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float32, np.float64, ml_dtypes.bfloat16])
def test_moments_give_the_general_steps_results(rng, lane, dtype):
    # (kernels' rows rounded once: the general steps' casts; the reduced shape, keepdims,
    # and NumPy scalars for a 1-D x)
    x = (rng.standard_normal((ROWS, COLS)) * 3 + 100).astype(dtype)
    x3, x1 = x.reshape(2, ROWS // 2, COLS), x.reshape(-1)
    calls = [lambda: numba_ln.moments(x), lambda: numba_ln.moments(x3, keepdims=True),
             lambda: numba_ln.moments(x1), lambda: numba_ln.moments(x1, keepdims=True)]
    got = [call() for call in calls]
    assert lane.taken == [True] * len(calls)
    lane.off()
    want = [call() for call in calls]
    assert _same(got, want)
    assert got[1][0].shape == (2, ROWS // 2, 1) and got[2][0].shape == ()
    assert type(got[2][0]) is not np.ndarray  # (a NumPy scalar, as x.mean() gives)


def test_parameters_of_several_axes_are_read_as_their_row(rng, lane):
    # (a torch-style LayerNorm((16, 64)): x normalized over its last two axes, parameters
    # of that shape; C-contiguous ones go as their flat view, as prepare_param makes it,
    # others -- Fortran order here -- take the general steps)
    x = (rng.standard_normal((ROWS, 16, COLS // 16)) * 3 + 100).astype(np.float32)
    w, b = (1 + rng.standard_normal((2, 16, COLS // 16))).astype(np.float32)
    wf = np.asfortranarray(w)
    module = numba_ln.LayerNorm((16, COLS // 16))
    module.weight[...], module.bias[...] = w, b
    axes = (-2, -1)
    calls = [lambda: numba_ln.layer_norm(x, w, b, axis=axes),
             lambda: numba_ln.layer_norm(x, w, b, axis=axes, out=np.empty_like(x),
                                         return_stats=True),
             lambda: numba_ln.rms_norm(x, w, axis=axes),
             lambda: numba_ln.add_layer_norm(x, x[::-1].copy(), w, b, axis=axes),
             lambda: module(x),
             lambda: numba_ln.layer_norm(x, wf, b, axis=axes)]
    got = [call() for call in calls]
    assert lane.taken == [True] * 5  # (the Fortran-ordered weight: not a lean kind)
    lane.off()
    want = [call() for call in calls]
    assert _same(got, want)
    assert np.array_equal(_bits(got[0]), _bits(got[4])) and np.array_equal(
        _bits(got[0]), _bits(got[5]))
