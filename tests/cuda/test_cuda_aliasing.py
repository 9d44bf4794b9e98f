"""Outputs over inputs on the GPU: the in-place forms README promises give the results of
fresh outputs, on every kernel path."""
import numpy as np
import pytest
from cuda_helpers import PATH_COLS, assert_close, dev, to_host

import numba_ln
from numba_ln import reference as ref


@pytest.mark.parametrize("path", sorted(PATH_COLS))
@pytest.mark.parametrize("form", ["residual_out=r", "residual_out=x", "out=r, residual_out=x"])
def test_fused_layer_norm_over_its_inputs(rng, path, form):
    """s written over x or r: every thread of a row reads the shift (the row's first sum)
    before any writes s (a thread wrote s[row, 0] first, and the others shifted by the new
    value: y off by up to 0.6)."""
    cols = PATH_COLS[path][0]
    x = rng.standard_normal((4, cols)).astype(np.float32)
    r = (3.0 + rng.standard_normal((4, cols))).astype(np.float32)
    y_fresh, s_fresh = (to_host(a) for a in numba_ln.add_layer_norm(dev(x), dev(r)))
    xd, rd = dev(x), dev(r)
    outputs = {"residual_out=r": dict(residual_out=rd),
               "residual_out=x": dict(residual_out=xd),
               "out=r, residual_out=x": dict(out=rd, residual_out=xd)}[form]
    y, s = numba_ln.add_layer_norm(xd, rd, **outputs)
    assert np.array_equal(to_host(s), s_fresh)
    assert np.array_equal(to_host(y), y_fresh)
    assert_close(y, ref.layer_norm(x + r)[0])


def test_parameters_inside_outputs_are_read_first(rng):
    """A device weight or bias that is a row of out (or of residual_out) is read from a copy,
    as on the CPU: in place, rows written early changed it for the rows after."""
    x = rng.standard_normal((8, 8)).astype(np.float32)
    w = np.linspace(0.5, 2.0, 8).astype(np.float32)
    for keyword in ("weight", "bias"):
        out = dev(np.zeros((8, 8), np.float32))
        out[0].copy_to_device(w)
        numba_ln.layer_norm(dev(x), **{keyword: out[0]}, out=out)
        assert_close(out, ref.layer_norm(x, **{keyword: w})[0])
    stream = dev(np.zeros((8, 8), np.float32))
    stream[0].copy_to_device(w)
    y, _ = numba_ln.add_rms_norm(dev(x), dev(x), stream[0], residual_out=stream)
    assert_close(y, ref.rms_norm(x + x, w)[0])
