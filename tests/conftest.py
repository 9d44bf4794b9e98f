import gc
import os

import numpy as np
import pytest
from hypothesis import settings

# CI runs the same hypothesis examples every time (a red CI must be reproducible); local
# runs explore new ones and replay failures from .hypothesis/.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def small_ran(monkeypatch):
    """The family names (_oracle.SMALL_KERNELS) of the small-call kernels that took a call
    (status 0; "small_backward in threads" for a backward call checked for the front's
    parallel launch), in order."""
    from _oracle import record_calls, small_kernel_callers

    return record_calls(monkeypatch, small_kernel_callers())


@pytest.fixture
def fresh_pool():
    """The output-buffer pool (numba_ln/_buffers.py) empty, with its settings restored
    after the test."""
    import numba_ln

    old = numba_ln.set_buffer_pool()
    # (arrays an earlier test left in reference cycles -- dask's graphs -- hold pooled
    # buffers until the collector runs, which it may do during a test: collect them first)
    gc.collect()
    numba_ln.release_buffers()
    yield
    numba_ln.set_buffer_pool(*old)
    numba_ln.release_buffers()
