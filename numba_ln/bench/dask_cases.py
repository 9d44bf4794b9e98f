"""``python -m numba_ln.bench --dask``: numba_ln's dask backend against dask's own
expression, on ``LocalCluster(n_workers=1, threads_per_worker=2, processes=False)``.

Cases (``DASK_CASES``): (65536, 1024) float32 in (8192, 1024) chunks, the normalized axis
in one chunk (one task per chunk), and (4096, 65536) in (4096, 8192) chunks, the
normalized axis split over 8 chunks (a tree of partials, then a normalize pass).
Contenders (``DASK_CONTENDERS``):

``numba_ln``          ``numba_ln.layer_norm(x)``, each task under the thread budget
                      (numba_ln/dask/_budget.py: here 1 Numba thread per task)
``numba_ln-inherit``  the same with ``NUMBA_LN_DASK_THREADS=inherit``: every task uses
                      Numba's default thread count (2 worker threads x 2 Numba threads)
``dask``              ``(x - x.mean(-1, keepdims=True)) / da.sqrt(x.var(-1, keepdims=True)
                      + eps)``

x is persisted on the worker first; a timed call builds the graph, persists the result on
the worker and waits for it (no transfer to the client), then drops it.  Rounds are
interleaved (:func:`numba_ln.bench.timing.measure`); figures are medians of per-round
ratios.  dask and distributed are imported only when this runs.
"""
import contextlib
import os
from dataclasses import dataclass

import numpy as np

from .timing import measure, median, ratio

EPS = 1e-5


@dataclass(frozen=True)
class DaskCase:
    name: str
    shape: tuple
    chunks: tuple
    small: tuple        # (shape, chunks) for --small and the normal test run
    note: str = ""

    def layout(self, small=False):
        return self.small if small else (self.shape, self.chunks)


DASK_CASES = (
    DaskCase("65536x1024", (65536, 1024), (8192, 1024), ((4096, 256), (1024, 256)),
             "normalized axis in one chunk"),
    DaskCase("4096x65536-split", (4096, 65536), (4096, 8192), ((256, 4096), (256, 512)),
             "normalized axis over 8 chunks"),
)
DASK_CONTENDERS = ("numba_ln", "numba_ln-inherit", "dask")


def dask_expression(x, eps=EPS):
    import dask.array as da

    return (x - x.mean(-1, keepdims=True)) / da.sqrt(x.var(-1, keepdims=True) + eps)


@contextlib.contextmanager
def _env(name, value):
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            del os.environ[name]
        else:
            os.environ[name] = before


def contender(name):
    """(function of a dask array and eps that ``name`` times, NUMBA_LN_DASK_THREADS while
    its tasks run or None)."""
    if name == "dask":
        return dask_expression, None
    import numba_ln

    return (lambda x, eps: numba_ln.layer_norm(x, eps=eps)), (
        "inherit" if name == "numba_ln-inherit" else "auto")


def make_x(case, small=False, seed=0):
    """The case's input as a dask array of its chunks (offset 1: centering matters)."""
    import dask.array as da

    shape, chunks = case.layout(small)
    rng = da.random.default_rng(seed)
    return (rng.standard_normal(shape, dtype=np.float32, chunks=chunks) + 1).astype(np.float32)


def timed_call(client, name, x):
    """A zero-argument callable: build ``name``'s graph on x, persist it, wait, drop it."""
    from distributed import wait

    make, threads = contender(name)
    calls = [0]

    def run():
        # dask names tasks by their inputs: a result persisted before would be found on
        # the worker.  eps differs in the 12th digit from call to call, so every call's
        # graph is new (x's chunks are the persisted ones).
        calls[0] += 1
        y = make(x, EPS * (1 + calls[0] * 2.0 ** -40))
        with _env("NUMBA_LN_DASK_THREADS", threads) if threads else contextlib.nullcontext():
            y = client.persist(y)
            wait(y)
        return y
    return run


def check(y, x):
    """The first rows of a result against numba_ln.reference (float32 tolerance)."""
    from numba_ln import reference

    head = np.asarray(x[:8].compute(), dtype=np.float64)
    got = np.asarray(y[:8].compute())
    want = reference.layer_norm(head, eps=EPS)[0]
    err = float(np.max(np.abs(got - want)))
    assert err < 1e-4, f"max error {err} against the float64 reference"
    return err


def cluster():
    """The benchmark's cluster: ``(LocalCluster, Client)`` (close both when done)."""
    from distributed import Client, LocalCluster

    c = LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                     dashboard_address=":0")
    return c, Client(c)


def run(rounds=5, small=False, progress=None, contenders=DASK_CONTENDERS, cases=DASK_CASES):
    """Time every contender on every case.  Returns a list of result dicts."""
    local, client = cluster()
    results = []
    try:
        for case in cases:
            x = client.persist(make_x(case, small))
            calls, errors = {}, {}
            for name in contenders:
                calls[name] = timed_call(client, name, x)
                y = calls[name]()  # first call: compiles/loads kernels, warms the worker
                errors[name] = check(y, x)
                del y
            if progress:
                progress(f"dask {case.name}: timing {', '.join(contenders)}")
            times, _ = measure(calls, rounds, 0.0, 0.0, progress=progress)
            nbytes = 2 * x.nbytes
            entry = {"case": case.name, "shape": list(x.shape), "chunks": list(x.chunksize),
                     "note": case.note, "bytes": nbytes, "rounds": rounds, "libraries": {}}
            for name, ts in times.items():
                entry["libraries"][name] = {
                    "median_ms": median(ts) * 1e3, "gbps": nbytes / median(ts) / 1e9,
                    "speedup_vs_dask": ratio(times["dask"], ts) if "dask" in times else None,
                    "check_error": errors[name], "times_s": list(ts)}
            results.append(entry)
            del x
    finally:
        client.close()
        local.close()
    return results


def format_results(results):
    lines = ["dask: LocalCluster(n_workers=1, threads_per_worker=2, processes=False), "
             "float32, 2 x bytes of x per call; x dask: dask's time / this one's",
             f"{'case':<18} {'shape':<12} {'chunks':<11} {'contender':<17} {'ms':>9} "
             f"{'GB/s':>7} {'x dask':>7}"]
    for r in results:
        shape, chunks = ("x".join(map(str, r[k])) for k in ("shape", "chunks"))
        for name, e in r["libraries"].items():
            speed = e["speedup_vs_dask"]
            lines.append(f"{r['case']:<18} {shape:<12} {chunks:<11} {name:<17} "
                         f"{e['median_ms']:9.1f} {e['gbps']:7.2f} "
                         f"{'' if speed is None else f'{speed:7.2f}'}")
    return "\n".join(lines)
