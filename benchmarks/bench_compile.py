"""Compile and start-up time, each in a fresh Python process.

Each benchmark times ``python -c SCRIPT`` from spawn to exit (wall time):

* ``test_compile_cold``: ``numba_ln.bench.FIRST_CALLS_SCRIPT`` with
  ``NUMBA_CACHE_DIR`` set to a new empty folder -- interpreter start, ``import numba_ln``,
  and compiling every kernel that the first calls of layer_norm, rms_norm, add_layer_norm
  and add_rms_norm need (serial path at (8, 768), parallel path at (256, 1024)): what the
  first run after installing, or after a kernel changes, costs.
* ``test_startup_warm``: the same script with a cache folder that an earlier run filled --
  a new process in normal use (issue target: at most 1.0 s over ``import numba``).
* ``test_import_numba``: ``python -c "import numba"``, the baseline for the warm start.

The in-process split of the last run (seconds importing, seconds in the first calls) is
saved in ``extra_info``.  With benchmarking disabled (the normal test run) the cold test
compiles a single small layer_norm call instead of everything (seconds, not a minute), and
the warm test uses Numba's normal cache location, which the test suite keeps filled.
"""
from numba_ln.bench.startup import (BASELINE_SCRIPT, FIRST_CALL_SMALL_SCRIPT, FIRST_CALLS_SCRIPT,
                                     run_script)

GROUP = "compile|first-calls"


def _record(benchmark, parsed, what):
    assert {"IMPORT_S", "FIRST_CALLS_S"} <= parsed.keys()
    benchmark.extra_info["measures"] = what
    for key, value in parsed.items():
        benchmark.extra_info[key.lower()] = round(value, 4)


def test_compile_cold(benchmark, tmp_path_factory):
    benchmark.group = GROUP
    script = FIRST_CALL_SMALL_SCRIPT if benchmark.disabled else FIRST_CALLS_SCRIPT

    def setup():
        return (script, str(tmp_path_factory.mktemp("numba-cache-cold"))), {}

    wall, parsed = benchmark.pedantic(run_script, setup=setup,
                                      rounds=1 if benchmark.disabled else 3, iterations=1)
    _record(benchmark, parsed, "new process, empty NUMBA_CACHE_DIR: import, compile, first "
                               "calls")


def test_startup_warm(benchmark, tmp_path_factory):
    benchmark.group = GROUP
    cache_dir = None if benchmark.disabled else str(tmp_path_factory.mktemp("numba-cache-warm"))
    run_script(FIRST_CALLS_SCRIPT, cache_dir=cache_dir)  # fill the cache
    wall, parsed = benchmark.pedantic(run_script, args=(FIRST_CALLS_SCRIPT, cache_dir),
                                      rounds=1 if benchmark.disabled else 5, iterations=1)
    _record(benchmark, parsed, "new process, warm cache: import, first calls")


def test_import_numba(benchmark):
    benchmark.group = GROUP
    benchmark.pedantic(run_script, args=(BASELINE_SCRIPT,),
                       rounds=1 if benchmark.disabled else 5, iterations=1)
    benchmark.extra_info["measures"] = "baseline: python -c 'import numba'"
