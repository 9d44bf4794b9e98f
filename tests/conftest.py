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
