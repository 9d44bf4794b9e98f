"""The forward's statistics given to the backward in the forms users hold them: byte-swapped
(read from a big-endian file), of the other float dtype, or lists -- the results of the
native arrays, and a TypeError naming the argument for anything that is no float."""
import numpy as np
import pytest

import numba_ln


@pytest.mark.parametrize("shape", [(4, 8), (300, 512)])  # a small call; the general path
def test_byte_swapped_statistics_are_read_natively(rng, shape):
    x, dy = (rng.standard_normal(shape).astype(np.float32) for _ in range(2))
    w = rng.standard_normal(shape[1]).astype(np.float32)
    _, mean, rstd = numba_ln.layer_norm(x, w, return_stats=True)
    want = numba_ln.layer_norm_backward(dy, x, w, mean=mean, rstd=rstd)
    for _ in range(2):  # (the second call takes the cached kind)
        got = numba_ln.layer_norm_backward(dy, x, w, mean=mean.astype(">f4"),
                                           rstd=rstd.astype(">f4"))
        assert all(np.array_equal(g, e) for g, e in zip(got, want))
    got = numba_ln.layer_norm_backward(dy, x, w, mean=mean.tolist(), rstd=rstd.tolist())
    assert np.allclose(got[0], numba_ln.layer_norm_backward(dy, x, w, mean=mean, rstd=rstd)[0])
    with pytest.raises(TypeError, match="mean has dtype >i4"):
        numba_ln.layer_norm_backward(dy, x, w, mean=mean.astype(">i4"), rstd=rstd)
    _, rms_rstd = numba_ln.rms_norm(x, w, return_stats=True)
    want = numba_ln.rms_norm_backward(dy, x, w, rstd=rms_rstd.astype(np.float64))
    got = numba_ln.rms_norm_backward(dy, x, w, rstd=rms_rstd.astype(">f8"))
    assert all(np.array_equal(g, e) for g, e in zip(got, want))
