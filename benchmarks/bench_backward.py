"""layer_norm_backward and rms_norm_backward against torch (native_layer_norm_backward,
autograd of F.rms_norm), the NumPy formula and the speed line (copies of x; the line is
1.5x the faster).

Cases and contenders come from ``numba_ln.bench.backward_cases`` (shared with
``python -m numba_ln.bench --backward``).  Groups are ``<function>|<case>``; the
``library`` parameter names the contender.  In the normal test run (benchmarks disabled)
each runs once on the case's reduced shape and is checked.
"""
import time

import numba
import pytest

from numba_ln.bench import backward_cases as bc
from numba_ln.bench.half_cases import CASE_OR_HALF_BY_NAME
from numba_ln.bench.timing import SETTLE_MAX_S

_inputs_cache = {}


def _inputs(func, case, small):
    key = (func, case.name, small)
    if key not in _inputs_cache:
        # One case at a time (the large ones are 100+ MB), both functions' inputs kept:
        # pytest runs a case's tests with the function varying fastest.
        if any(k[1:] != key[1:] for k in _inputs_cache):
            _inputs_cache.clear()
        _inputs_cache[key] = bc.make_inputs(func, case, small=small)
    return _inputs_cache[key]


@pytest.mark.parametrize("func", list(bc.BACKWARD_FUNCTIONS))
@pytest.mark.parametrize("case, library", [
    pytest.param(case.name, lib, id=f"{case.name}-{lib}")
    for case in bc.BACKWARD_CASES for lib in bc.BACKWARD_CONTENDERS])
def test_backward(benchmark, func, case, library):
    case = CASE_OR_HALF_BY_NAME[case]  # (a name as the parameter: saved files hold it)
    if benchmark.disabled and case.dtype == "float16":
        # (the normal test run: float16's case is built as bfloat16's, and its kernels
        # differ only in the storage type, which tests/test_half_backward.py covers; its
        # contenders' kernel variants cost ~15 s of compiling in the suite)
        pytest.skip("float16's case runs when benchmarking (bfloat16's runs in the suite)")
    threads = numba.get_num_threads()
    inputs = _inputs(func, case, benchmark.disabled)
    built, skipped = bc.build(inputs, threads, (library,))
    if library in skipped:
        pytest.skip(skipped[library])
    contender = built[library]
    benchmark.group = f"{func}|{case.name}"
    # (the speed-line copies move two of the backward's three arrays, as --backward counts)
    moved = inputs.nbytes * 2 // 3 if library in bc.LINES else inputs.nbytes
    benchmark.extra_info.update(function=func, library=library, shape=list(inputs.x.shape),
                                dtype=case.dtype, threads=threads, bytes=moved,
                                contender=contender.description)
    if not benchmark.disabled:
        time.sleep(SETTLE_MAX_S)  # (the previous benchmark's spinning threads: conftest.py)
        contender.call()  # compile/load, fault in the outputs
    got = benchmark(contender.call)
    contender.check(inputs, got)
    if not benchmark.disabled:
        benchmark.extra_info["GB/s"] = round(moved / benchmark.stats.stats.median / 1e9, 3)
