"""The output-buffer pool (numba_ln/_buffers.py): large outputs reuse buffers that no array
references any more, and never one that an array still sees."""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from _oracle import assert_close

import numba_ln
from numba_ln import _buffers
from numba_ln import reference as ref

SHAPE = (512, 1024)  # 2 MiB of float32: pooled (min_bytes 1 MiB)


@pytest.fixture
def x(rng):
    return (5 + rng.standard_normal(SHAPE)).astype(np.float32)


@pytest.fixture(autouse=True)
def each_test_an_empty_pool(fresh_pool):
    yield


def test_a_dropped_result_is_reused_and_aligned(x):
    y = numba_ln.layer_norm(x)
    address = y.ctypes.data
    assert address % 64 == 0
    del y
    y2 = numba_ln.layer_norm(x)
    assert y2.ctypes.data == address
    assert_close(y2, ref.layer_norm(x)[0])


@pytest.mark.parametrize("keep", [lambda y: y, lambda y: y[3:5], lambda y: memoryview(y),
                                  lambda y: y.reshape(-1)[::7]])
def test_a_buffer_still_referenced_is_not_reused(x, keep):
    y = numba_ln.layer_norm(x)
    before = y.copy()
    held = keep(y)
    address = y.ctypes.data
    del y
    others = [numba_ln.layer_norm(x + 1.0), numba_ln.rms_norm(x)]
    assert all(o.ctypes.data != address for o in others)
    del held
    assert numba_ln.layer_norm(x).ctypes.data == address
    assert before.any()


def test_results_are_never_overwritten_by_later_calls(x, rng):
    results = []
    expected = []
    for k in range(4):
        xk = x + k
        results.append(numba_ln.layer_norm(xk))
        expected.append(ref.layer_norm(xk)[0])
    for got, want in zip(results, expected):
        assert_close(got, want)


def test_pool_is_bounded_and_releases(x):
    numba_ln.set_buffer_pool(max_bytes=3 * x.nbytes)
    live = [numba_ln.layer_norm(x) for _ in range(5)]  # 2 beyond the bound: plain arrays
    total, used = _buffers.pooled_bytes()
    assert total <= 3 * x.nbytes and used == total
    del live
    numba_ln.release_buffers()
    assert _buffers.pooled_bytes() == (0, 0)


def test_release_frees_the_statistics_scratch(x):
    """The scratch rows of statistics nobody asked for (up to 96 MiB over 64 row counts)
    outlived release_buffers()."""
    from numba_ln import _stand_ins

    numba_ln.layer_norm(x[:300])  # (a small call: its statistics go to a scratch row)
    rstd = numba_ln.rms_norm(x[:200], return_stats=True)[1]
    numba_ln.rms_norm_backward(x[:200], x[:200], rstd=rstd)  # (RMSNorm's mean: zeros)
    assert 300 in _stand_ins._SCRATCH and 200 in _stand_ins._ZEROS
    numba_ln.release_buffers()
    assert not _stand_ins._SCRATCH and not _stand_ins._ZEROS
    assert_close(numba_ln.layer_norm(x[:300]), ref.layer_norm(x[:300])[0])  # made anew


def test_release_with_a_buffer_freed_meanwhile(x, monkeypatch):
    """Another thread may drop a result's last reference (no lock guards that) while
    release_buffers() runs: here the third buffer is in use when first looked at and free
    from then on.  It was then removed with list.remove, which compared the entries' arrays
    elementwise and raised ValueError at the in-use buffers of the same size."""
    held = [numba_ln.layer_norm(x) for _ in range(2)]
    numba_ln.layer_norm(x + 1)  # a third buffer of the same size, free again at once
    third = _buffers._POOL.buffers[2]
    looks, real_free = [], _buffers._free

    def freed_after_first_look(entry):
        if entry is third:
            looks.append(entry)
            return len(looks) > 1
        return real_free(entry)

    monkeypatch.setattr(_buffers, "_free", freed_after_first_look)
    numba_ln.release_buffers()
    monkeypatch.undo()
    assert _buffers.pooled_bytes() == (3 * x.nbytes, 2 * x.nbytes)  # kept: seen in use
    numba_ln.release_buffers()
    assert _buffers.pooled_bytes() == (2 * x.nbytes, 2 * x.nbytes)
    assert_close(held[1], ref.layer_norm(x)[0])


def test_pooling_off_and_small_outputs(x):
    numba_ln.set_buffer_pool(max_bytes=0)
    numba_ln.layer_norm(x)
    assert _buffers.pooled_bytes() == (0, 0)
    numba_ln.set_buffer_pool(max_bytes=1 << 30)
    numba_ln.layer_norm(x[:4])  # 16 KiB: below min_bytes
    assert _buffers.pooled_bytes() == (0, 0)


def test_a_lowered_limit_drops_buffers_in_use_once_free(x):
    """Buffers in use when the limit drops (to 0: pooling off) leave the pool once no array
    uses them, at the next large allocating call: they stayed, and were reused, past the
    limit."""
    y = numba_ln.layer_norm(x)
    numba_ln.set_buffer_pool(max_bytes=0)
    assert _buffers.pooled_bytes() == (x.nbytes, x.nbytes)  # (in use: kept for now)
    del y
    numba_ln.layer_norm(x)
    assert _buffers.pooled_bytes() == (0, 0)
    numba_ln.set_buffer_pool(max_bytes=1 << 30)
    y = numba_ln.layer_norm(x)
    numba_ln.set_buffer_pool(max_bytes=x.nbytes // 2)
    del y
    numba_ln.layer_norm(x)  # (larger than the limit: a plain array, and the old one dropped)
    assert _buffers.pooled_bytes() == (0, 0)


@pytest.mark.parametrize("kwargs,error", [
    (dict(max_bytes=-1), ValueError), (dict(min_bytes=np.int64(-2)), ValueError),
    (dict(min_bytes=1.5), TypeError), (dict(max_bytes=True), TypeError),
    (dict(min_bytes="1"), TypeError)])
def test_bad_pool_settings(kwargs, error):
    before = numba_ln.set_buffer_pool()
    with pytest.raises(error, match=next(iter(kwargs))):
        numba_ln.set_buffer_pool(**kwargs)
    assert numba_ln.set_buffer_pool() == before


def test_numpy_integers_are_pool_settings():
    before = numba_ln.set_buffer_pool(max_bytes=np.int64(1 << 20), min_bytes=np.uint32(4096))
    assert numba_ln.set_buffer_pool() == (1 << 20, 4096)
    assert type(numba_ln.set_buffer_pool(*before)[0]) is int


def test_threads_allocating_at_once(x):
    def work(k):
        xk = x + k
        y = numba_ln.layer_norm(xk)
        assert_close(y, ref.layer_norm(xk)[0])
        return y.ctypes.data

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(work, range(32)))


def test_an_allocation_never_waits_on_a_pool_held_for_long():
    """A call from a signal handler that interrupted this thread inside the pool waited
    for the pool's lock, held by the thread it interrupted: forever.  Held here by the test
    (as the interrupted call holds it), an allocation takes a fresh array instead."""
    import threading

    got = []
    with _buffers._LOCK:
        worker = threading.Thread(target=lambda: got.append(
            _buffers.empty((1 << 20,), np.float32)))
        worker.start()
        worker.join(timeout=20)
        waited = worker.is_alive()
    worker.join()
    assert not waited and got[0].shape == (1 << 20,) and got[0].dtype == np.float32
