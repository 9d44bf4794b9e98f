"""Runs tests/cuda/ under the CUDA simulator, in a subprocess.

NUMBA_ENABLE_CUDASIM must be set before numba.cuda is first imported, and this process
runs the CPU tests (and maybe a real GPU's), so the simulator gets a Python of its own.
Works with numba-cuda or with Numba's built-in (deprecated) numba.cuda; needs no GPU,
no CUDA toolkit and no CuPy.
"""
import importlib.util
import os
import re
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def test_gpu_functions_under_the_simulator():
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        pytest.skip("this process already runs tests/cuda under the simulator")
    if importlib.util.find_spec("numba.cuda") is None:
        pytest.skip("numba.cuda is not installed (pip install numba-cuda)")
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    # (-n 0: in this one process; pyproject's -n auto started a worker per core beside the
    # suite's own workers, 28 s of CPU against 13 s)
    cmd = [sys.executable, "-m", "pytest", os.path.join(HERE, "cuda"), "-q", "-rs", "-n", "0",
           "-p", "no:cacheprovider", "--no-header"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    report = done.stdout[-6000:] + done.stderr[-3000:]
    assert done.returncode == 0, report
    passed = re.search(r"(\d+) passed", done.stdout)
    assert passed and int(passed.group(1)) >= 50, report
    print(done.stdout.strip().splitlines()[-1])
