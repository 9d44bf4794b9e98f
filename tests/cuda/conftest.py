"""tests/cuda/: the GPU functions on a real GPU, or under the simulator.

``pytest`` in one process runs them only where a GPU is present (the CPU tests share that
process, and NUMBA_ENABLE_CUDASIM must be set before numba.cuda is imported); otherwise
they are skipped here and tests/test_cuda_sim.py runs this folder again in a subprocess
with NUMBA_ENABLE_CUDASIM=1.
"""
import os
import sys

import pytest

import cuda_helpers

HERE = os.path.dirname(os.path.abspath(__file__))

if cuda_helpers.SIMULATOR:
    # Simulated threads meet at every barrier; Python's default 5 ms thread switch interval
    # makes each meeting slow.  1e-5 s makes the launches ~10x faster.
    sys.setswitchinterval(1e-5)
    cuda_helpers.fix_simulator_shared_arrays()


def pytest_collection_modifyitems(config, items):
    if cuda_helpers.RUN:
        return
    skip = pytest.mark.skip(reason=cuda_helpers.REASON)
    for item in items:
        if str(item.fspath).startswith(HERE + os.sep):
            item.add_marker(skip)


def pytest_configure(config):
    config.addinivalue_line("markers", "default_launch: run with numba_ln.cuda._config as "
                                       "shipped instead of cuda_helpers.SMALL_CONFIG")


@pytest.fixture(autouse=True)
def small_launch(request, monkeypatch):
    """Small launch sizes (cuda_helpers.SMALL_CONFIG) so that tiny shapes reach every kernel
    path, unless the test is marked ``default_launch``."""
    if not cuda_helpers.RUN or request.node.get_closest_marker("default_launch"):
        return
    from numba_ln.cuda import _config

    for name, value in cuda_helpers.SMALL_CONFIG.items():
        monkeypatch.setattr(_config, name, value)
