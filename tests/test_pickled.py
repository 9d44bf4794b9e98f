"""Copied and unpickled modules must read their own parameters as they are now."""
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


@pytest.mark.parametrize("make_copy", [copy.deepcopy, lambda m: pickle.loads(pickle.dumps(m))])
def test_copied_modules_read_their_parameters_as_they_are(rng, make_copy):
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
        same(twin(x), expected)
        same(module(x), original)  # (the original's parameters unchanged)
