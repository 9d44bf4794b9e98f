"""Shared fixtures for the pytest-benchmark suite.

Every benchmark builds one contender (numba_ln with ``out=`` or allocating, NumPy, torch,
onnxruntime with an IOBinding or through ``session.run``, or one of the three speed-line
copies) from ``numba_ln.bench.contenders`` -- the same builders ``python -m numba_ln.bench``
uses -- times it, and checks its result (against ``numba_ln.reference`` with a loose
tolerance; the copies bit for bit), so a broken contender fails.

In the normal test run (``--benchmark-disable`` in the pyproject addopts) each benchmark
runs once on the case's reduced shape (same kernel path, a fraction of the bytes): the
files execute and are checked without costing the test suite time.
"""
import time

import numba
import pytest

from numba_ln.bench.cases import make_inputs
from numba_ln.bench.contenders import build
from numba_ln.bench.half_cases import CASE_OR_HALF_BY_NAME
from numba_ln.bench.timing import SETTLE_MAX_S

_inputs_cache = {}


def _inputs(func, case, small):
    """Inputs for (func, case), cached for the consecutive benchmarks of one case."""
    key = (func, case.name, small)
    if key not in _inputs_cache:
        _inputs_cache.clear()  # hold one case at a time: the large ones are 100+ MB
        _inputs_cache[key] = make_inputs(func, case, small=small)
    return _inputs_cache[key]


@pytest.fixture(scope="session")
def threads():
    """numba's thread count; torch and onnxruntime contenders are given the same."""
    return numba.get_num_threads()


@pytest.fixture
def run_contender(benchmark, threads):
    def run(func, case_name, library):
        case = CASE_OR_HALF_BY_NAME[case_name]
        small = benchmark.disabled
        inputs = _inputs(func, case, small)
        built, skipped = build(inputs, threads, (library,))
        if library in skipped:
            pytest.skip(skipped[library])
        contender = built[library]
        benchmark.group = f"{func}|{case.name}"
        benchmark.extra_info.update(
            function=func, library=library, shape=list(inputs.x.shape),
            dtype=str(inputs.x.dtype), axis=case.axis, threads=threads,
            bytes=inputs.nbytes, contender=contender.description,
        )
        if not benchmark.disabled:
            # Let the previous benchmark's spinning worker threads (torch's OpenMP pool,
            # onnxruntime's) go idle -- the bench's rounds idle as long after them -- then
            # compile/load and fault in the outputs before timing.
            time.sleep(SETTLE_MAX_S)
            contender.call()
        got = benchmark(contender.call)
        contender.check(inputs, got)
        if not benchmark.disabled:
            median = benchmark.stats.stats.median
            benchmark.extra_info["GB/s"] = round(inputs.nbytes / median / 1e9, 3)
    return run
