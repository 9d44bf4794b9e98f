"""Arrays with many dimensions, up to NumPy's 64: the small calls' statistics and the
general path's broadcast checks (np.broadcast_shapes takes at most 32)."""
import numpy as np
import pytest
from _oracle import assert_close

import numba_ln
from numba_ln import reference as ref


@pytest.fixture
def x64(rng):
    """A small float32 x of 64 dimensions (the small calls take it)."""
    return (2.0 + rng.standard_normal((1,) * 62 + (2, 16))).astype(np.float32)


def test_statistics_of_64_dimensions(x64):
    """The small calls viewed the statistics with one axis more than x (65): NumPy raised
    after the kernel had written out= and residual_out=."""
    y_ref, mean_ref, rstd_ref = ref.layer_norm(x64)
    out = np.zeros_like(x64)
    y, mean, rstd = numba_ln.layer_norm(x64, out=out, return_stats=True)
    assert y is out and mean.shape == x64.shape[:-1] + (1,)
    assert_close(y, y_ref)
    assert_close(mean, mean_ref)
    assert_close(rstd, rstd_ref)
    s_out = np.zeros_like(x64)
    y, s, rstd = numba_ln.add_rms_norm(x64, x64, residual_out=s_out, return_stats=True)
    assert s is s_out and rstd.ndim == 64
    assert_close(y, ref.rms_norm(x64 + x64)[0])
    mean, var = numba_ln.moments(x64, keepdims=True)
    assert mean.ndim == 64
    assert_close(var, ref.moments(x64)[1][..., None])


@pytest.mark.parametrize("rows", [2, 200])  # the small calls, the general path
def test_broadcasts_beyond_32_dimensions(rng, rows):
    """np.broadcast_shapes raised RuntimeError for more than 32 dimensions: a residual of
    x's own shape, a broadcast one, and a weight broadcast over 33 normalized axes."""
    x = (1.0 + rng.standard_normal((1,) * 31 + (rows, 1024))).astype(np.float32)
    y, s = numba_ln.add_layer_norm(x, x)
    assert_close(y, ref.layer_norm(x + x)[0])
    r = x[..., :1, :]
    assert_close(numba_ln.add_layer_norm(x, r)[0], ref.layer_norm(x + r)[0])
    w = (1.0 + rng.standard_normal((1,) * 32 + (1024,))).astype(np.float32)
    axes = tuple(range(33))
    assert_close(numba_ln.layer_norm(x, w, axis=axes), ref.layer_norm(x, w, axis=axes)[0])
    with pytest.raises(ValueError, match="residual of shape"):
        numba_ln.add_layer_norm(x, x[..., :3])
