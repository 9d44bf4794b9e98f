"""Broadcast inputs of a dtype the kernels convert (integers, bools, byte-swapped floats)
are converted over their distinct elements only and read where they lie, as broadcast
views of the result dtype are (numba_ln/_validate.converted): moments of
np.broadcast_to(row, (2**16, 2**16)) as int8 took a 32 GiB float64 copy."""
import tracemalloc

import numpy as np
import pytest
from _oracle import same_bits as same

import numba_ln


@pytest.mark.parametrize("dtype", [np.int8, np.bool_, np.dtype(">f4")])
def test_moments_of_a_broadcast_view_copy_only_its_row(dtype):
    row = (np.arange(4096) % 3).astype(dtype)
    x = np.broadcast_to(row, (1024, 4096))  # (4M elements: 32 MiB as float64)
    want = numba_ln.moments(np.ascontiguousarray(x))
    tracemalloc.start()
    got = numba_ln.moments(x)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert same(got, want)
    assert peak < 2 << 20, peak  # (the row in float64, the statistics: ~50 KiB)


def test_a_broadcast_residual_and_backward_inputs_give_the_copies_bits(rng):
    """(float32 data, byte-swapped partners: the kernel variants other tests compile)"""
    x = rng.standard_normal((300, 64)).astype(np.float32)
    w = rng.standard_normal(64).astype(np.float32)
    swapped = np.dtype(">f4")
    row = np.broadcast_to(rng.standard_normal(64).astype(swapped), x.shape)
    column = np.broadcast_to(rng.standard_normal((300, 1)).astype(swapped), x.shape)
    for residual in (row, column):
        assert same(numba_ln.add_layer_norm(x, residual, w, w),
                    numba_ln.add_layer_norm(x, np.ascontiguousarray(residual), w, w))
        assert same(numba_ln.layer_norm_backward(residual, x, w),
                    numba_ln.layer_norm_backward(np.ascontiguousarray(residual), x, w))
