"""Running out of memory: a call that cannot allocate raises MemoryError with the caller's
arrays as they were, and the output-buffer pool (numba_ln/_buffers.py) never turns an
allocation that fits into a MemoryError; and refused calls leave no memory behind."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import numba_ln
from numba_ln import _layout, _stand_ins
from numba_ln import reference as ref


def test_a_failed_channels_first_fused_call_leaves_the_residual_stream_alone(monkeypatch, rng):
    """add_layer_norm over axis=1 of NCHW with residual_out=residual (the in-place stream)
    formed s = x + r in the stream, then allocated y: a MemoryError there left the stream
    updated, and the caller's retry added x twice."""
    x = rng.standard_normal((2, 8, 5, 6)).astype(np.float32)
    stream = rng.standard_normal(x.shape).astype(np.float32)
    before = stream.copy()

    def out_of_memory(self, dtype):
        raise MemoryError("no room for y")

    monkeypatch.setattr(_layout.Plan, "empty", out_of_memory)
    for call in (numba_ln.add_layer_norm, numba_ln.add_rms_norm):
        with pytest.raises(MemoryError, match="no room for y"):
            call(x, stream, axis=1, residual_out=stream)
        assert np.array_equal(stream, before)
    monkeypatch.undo()
    # the statistics' scratch rows (fresh beyond 65536 rows, or after release_buffers())
    y = np.empty_like(x)
    monkeypatch.setattr(_stand_ins, "stats", lambda rows: out_of_memory(None, None))
    with pytest.raises(MemoryError, match="no room for y"):
        numba_ln.add_layer_norm(x, stream, out=y, axis=1, residual_out=stream)
    assert np.array_equal(stream, before)
    monkeypatch.undo()
    y, _ = numba_ln.add_layer_norm(x, stream, axis=1, residual_out=stream)  # the retry: right
    assert np.array_equal(stream, x + before)
    expected = ref.layer_norm(np.moveaxis(x + before, 1, -1).astype(np.float64))[0]
    assert np.max(np.abs(np.moveaxis(y, 1, -1) - expected)) < 1e-5


# (a child process: the address-space limit must not reach the test runner)
_POOL_UNDER_A_LIMIT = """
    import gc, resource, numpy as np
    from numba_ln import _buffers

    def address_space():
        for line in open("/proc/self/status"):
            if line.startswith("VmSize"):
                return int(line.split()[1]) * 1024

    n = 24 << 20  # 96 MiB of float32: pooled (the pool keeps up to 256 MiB)
    a = _buffers.empty((n,), np.float32)
    a[:] = 1  # (touched, as an output is)
    del a
    gc.collect()
    assert _buffers._POOL.total >= 4 * n  # held free by the pool
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]  # (a CI job's ulimit -v: kept)
    soft = address_space() + (64 << 20)
    resource.setrlimit(resource.RLIMIT_AS, (
        soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard))
    b = _buffers.empty((n + 1000,), np.float32)  # another size: no pooled buffer fits
    b[:] = 2
    assert _buffers._POOL.total == 0, _buffers._POOL.total
    try:
        np.empty(2 * n, np.float32)  # more than the limit leaves, pool or no pool
    except MemoryError:
        pass
    else:
        raise AssertionError("the address-space limit did not hold")
    print("ok")
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc")
def test_the_pool_gives_its_free_buffers_back_when_an_allocation_fails():
    """A freed 96 MiB output held by the pool, then a 96.004 MiB one with 64 MiB of address
    space left: it fits once the pool lets go (as it does with the pool off); the pool
    raised MemoryError."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(_POOL_UNDER_A_LIMIT)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.split() == ["ok"], done.stderr[-2000:]


def test_refused_dtypes_leave_no_memory_behind():
    """Each call refused for a dtype new to the process (text, bytes, records: a server's
    np.asarray(request)) kept an entry in the unpickled-dtype table, ~300 bytes a call,
    forever.  The table is bounded; the float dtypes keep their entries."""
    import pickle

    from numba_ln import _canonical

    for size in range(1, 2 * _canonical._CANONICAL_KEPT):
        with pytest.raises(TypeError, match="x has dtype"):
            numba_ln.layer_norm(np.zeros((2, 3), f"S{size}"))
        with pytest.raises(TypeError, match="weight"):
            numba_ln.layer_norm(np.ones((2, 3)), np.zeros(3, [(f"f{size}", np.float32)]))
        with pytest.raises(TypeError, match="x has dtype"):  # (a float with fields)
            numba_ln.layer_norm(np.zeros((2, 3), np.dtype((np.float16, [(f"f{size}", "<i2")]))))
    assert len(_canonical._CANONICAL) <= _canonical._CANONICAL_KEPT
    x = pickle.loads(pickle.dumps(np.ones((2, 3), np.float16)))
    assert _canonical.recast(x).dtype is np.dtype(np.float16)  # (still recast)
