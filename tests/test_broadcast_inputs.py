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
    numba_ln.moments(x)  # (its kernels compiled or loaded outside the measurement)
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


def test_a_dask_block_of_a_broadcast_is_read_where_it_lies():
    """Each block whose rows were not C-contiguous was copied whole first (a 512 MiB
    copy for a 512 MiB chunk of one broadcast row); the same bits as the NumPy call."""
    da = pytest.importorskip("dask.array")
    row = np.linspace(-1, 1, 2048, dtype=np.float32)
    x = da.broadcast_to(row, (4096, 2048), chunks=(2048, 2048))  # (16 MiB a block)
    want = numba_ln.moments(np.broadcast_to(row, x.shape))

    def compute():
        return [g.compute(scheduler="synchronous") for g in numba_ln.moments(x)]

    compute()  # (dask's first compute allocates ~11 MiB of its own)
    tracemalloc.start()
    got = compute()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert same(tuple(got), want)
    assert peak < 4 << 20, peak
