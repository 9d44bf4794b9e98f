"""Unpickled arrays and modules: NumPy makes each dtype it unpickles anew, an equal copy of
its own object, which the small-call gates (comparing dtypes by identity) did not take
(numba_ln/_canonical.py).  Such calls must take the small-call kernels, give the bits of
the same call on ordinary arrays, and return the caller's own out= objects; and a copied
or unpickled module must read its own parameters as they are now."""
import copy
import pickle

import numpy as np
import pytest

import numba_ln


def unpickled(a):
    """a through pickle: the same values, a dtype that is an equal copy."""
    b = pickle.loads(pickle.dumps(a))
    assert b.dtype == a.dtype and b.dtype is not a.dtype
    return b


def same(got, expected):
    got = got if isinstance(got, tuple) else (got,)
    expected = expected if isinstance(expected, tuple) else (expected,)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert (g is None and e is None) or (g.dtype == e.dtype and np.array_equal(g, e))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_unpickled_arrays_take_the_small_calls(rng, small_ran, dtype):
    x = (3.0 + rng.standard_normal((4, 40))).astype(dtype)
    r = rng.standard_normal(x.shape).astype(dtype)
    # (parameters as a checkpoint holds them: in the data's dtype, float32 for 16-bit data;
    # other mixes compile kernels of their own, tested in test_small_calls.py)
    w, b = (1.0 + rng.standard_normal((2, 40))).astype(
        np.float32 if dtype == np.float16 else dtype)
    xp, rp, wp, bp = (unpickled(a) for a in (x, r, w, b))
    calls = [
        (lambda x, r, w, b: numba_ln.layer_norm(x, w, b), "small_norm"),
        (lambda x, r, w, b: numba_ln.layer_norm(x, w, b, return_stats=True), "small_norm"),
        (lambda x, r, w, b: numba_ln.rms_norm(x, w), "small_norm"),
        (lambda x, r, w, b: numba_ln.add_layer_norm(x, r, w, b), "small_add_norm"),
        (lambda x, r, w, b: numba_ln.moments(x), "small_moments"),
        (lambda x, r, w, b: numba_ln.layer_norm_backward(r, x, w), "small_backward"),
        (lambda x, r, w, b: numba_ln.rms_norm_backward(r, x, w), "small_backward"),
    ]
    for call, family in calls:
        expected = call(x, r, w, b)
        small_ran.clear()
        same(call(xp, rp, wp, bp), expected)  # every array unpickled
        same(call(x, r, wp, bp), expected)    # the parameters only (a pickled checkpoint)
        assert small_ran == [family] * 2


def test_unpickled_outputs_are_returned_as_given(rng, small_ran):
    x = rng.standard_normal((3, 16)).astype(np.float32)
    r = rng.standard_normal(x.shape).astype(np.float32)
    w = np.linspace(0.5, 1.5, 16, dtype=np.float32)
    expected = (numba_ln.add_layer_norm(x, r), numba_ln.layer_norm(x),
                numba_ln.layer_norm_backward(r, x, w)[0])
    small_ran.clear()
    out, residual = unpickled(np.zeros_like(x)), unpickled(r.copy())
    y, s = numba_ln.add_layer_norm(unpickled(x), residual, out=out, residual_out=residual)
    assert y is out and s is residual  # (the residual stream updated in place)
    same((y, s), expected[0])
    x_in_place = unpickled(x)
    assert numba_ln.layer_norm(x_in_place, out=x_in_place) is x_in_place
    same(x_in_place, expected[1])
    dy = unpickled(r)
    dx, _, _ = numba_ln.layer_norm_backward(dy, x, w, out=dy)
    assert dx is dy
    same(dx, expected[2])
    assert small_ran == ["small_add_norm", "small_norm", "small_backward"]


@pytest.mark.parametrize("make_copy", [copy.deepcopy, lambda m: pickle.loads(pickle.dumps(m))])
def test_copied_modules_read_their_parameters_as_they_are(rng, small_ran, make_copy):
    """A copy's parameter rows were arrays of their own (deepcopy and pickle copied the
    views), so an update of its weight in place was not read by a module of several
    normalized axes."""
    x = rng.standard_normal((3, 2, 4)).astype(np.float32)
    for module in (numba_ln.LayerNorm((2, 4)), numba_ln.RMSNorm((2, 4)), numba_ln.LayerNorm(4)):
        twin = make_copy(module)
        twin.weight[...] = 3.0
        if isinstance(twin, numba_ln.LayerNorm):
            twin.bias[...] = -1.0
        axis = tuple(range(-len(module.normalized_shape), 0))
        expected = (numba_ln.layer_norm(x, twin.weight, twin.bias, axis=axis)
                    if isinstance(twin, numba_ln.LayerNorm)
                    else numba_ln.rms_norm(x, twin.weight, axis=axis))
        original = (numba_ln.layer_norm if isinstance(module, numba_ln.LayerNorm)
                    else numba_ln.rms_norm)(x, axis=axis)
        small_ran.clear()
        same(twin(x), expected)
        same(module(x), original)  # (the original's parameters unchanged)
        assert small_ran == ["small_norm"] * 2


@pytest.mark.parametrize("module_type", [numba_ln.LayerNorm, numba_ln.RMSNorm])
def test_a_module_made_with_an_unpickled_dtype_holds_numpys_own(rng, small_ran, monkeypatch,
                                                                module_type):
    """LayerNorm(d, dtype=x.dtype) in a worker that received x: its parameters were made in
    the dtype's copy, so every call failed the gates and was rescued by the recast retry
    (4.8-6.5x the time of the same module made with np.float32, the same bits)."""
    x = rng.standard_normal((2, 24)).astype(np.float32)
    module = module_type(24, dtype=unpickled(x).dtype)
    assert module.dtype is np.dtype(np.float32) and module.weight.dtype is module.dtype
    expected = module_type(24)(x)
    monkeypatch.setattr(numba_ln._canonical, "again", lambda *args, **kwargs: pytest.fail(
        "the module's call needed the recast retry"))
    small_ran.clear()
    same(module(x), expected)
    assert small_ran == ["small_norm"]


def test_precompile_pickles_by_reference():
    """numba_ln.precompile is a callable module, and modules do not pickle: a process
    pool's submit(numba_ln.precompile) or dask's client.run(numba_ln.precompile) failed."""
    assert pickle.loads(pickle.dumps(numba_ln.precompile)) is numba_ln.precompile
    assert copy.deepcopy(numba_ln.precompile) is numba_ln.precompile
