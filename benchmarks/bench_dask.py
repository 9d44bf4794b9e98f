"""numba_ln on dask arrays against dask's own expression (``numba_ln.bench.dask_cases``,
shared with ``python -m numba_ln.bench --dask``), on a
``LocalCluster(n_workers=1, threads_per_worker=2, processes=False)``.

Groups are ``dask|<case>``; the ``library`` parameter names the contender (``numba_ln``,
``numba_ln-inherit``: every task with Numba's default threads, ``dask``).  A timed call
builds the graph, persists the result on the worker and waits.  In the normal test run
(benchmarks disabled) each runs once on the case's reduced shape and is checked.  Skipped
when dask or distributed is missing.
"""
import pytest

pytest.importorskip("dask.array")
pytest.importorskip("distributed")

from numba_ln.bench import dask_cases  # noqa: E402

_x_cache = {}
_CASE_BY_NAME = {c.name: c for c in dask_cases.DASK_CASES}


@pytest.fixture(scope="module")
def client():
    cluster, client = dask_cases.cluster()
    yield client
    _x_cache.clear()
    client.close()
    cluster.close()


@pytest.mark.parametrize("case", [c.name for c in dask_cases.DASK_CASES])
@pytest.mark.parametrize("library", dask_cases.DASK_CONTENDERS)
def test_dask(benchmark, client, case, library):
    # (a name as the parameter: pytest-benchmark saves a Case object as "UNSERIALIZABLE")
    case = _CASE_BY_NAME[case]
    small = benchmark.disabled
    key = (case.name, small)
    if key not in _x_cache:
        _x_cache.clear()  # one case's x at a time (the large ones are 256 MiB and 1 GiB)
        _x_cache[key] = client.persist(dask_cases.make_x(case, small))
    x = _x_cache[key]
    call = dask_cases.timed_call(client, library, x)
    benchmark.group = f"dask|{case.name}"
    benchmark.extra_info.update(library=library, shape=list(x.shape), dtype=str(x.dtype),
                                chunks=list(x.chunksize), bytes=2 * x.nbytes)
    if not benchmark.disabled:
        call()  # compile/load the kernels, warm the worker
    y = benchmark(call)
    dask_cases.check(y, x)
    if not benchmark.disabled:
        median = benchmark.stats.stats.median
        benchmark.extra_info["GB/s"] = round(2 * x.nbytes / median / 1e9, 3)
