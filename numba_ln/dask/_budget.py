"""Numba threads per dask task: no oversubscription when dask's threads run the kernels.

A dask worker runs as many tasks at once as it has threads, and a numba_ln kernel inside
each would start ``numba.get_num_threads()`` threads of its own: with the defaults, up to
cores x cores threads.  ``numba.set_num_threads`` is per thread and a worker thread starts
with the default, so every task sets its own budget while it runs and restores the
thread's setting after:

* in a worker process a distributed **nanny** started: 1 thread per task.  The cluster's
  parallelism is its worker threads (sized to the cores), and the nanny already sets
  OMP/MKL/OpenBLAS threads to 1 for the same reason -- but not Numba's.
* in **in-process** workers (``LocalCluster(processes=False)``, a bare ``Worker``): the
  process's cores shared among the threads of all its workers,
  ``max(1, NUMBA_NUM_THREADS // their threads)``.
* on the local threaded scheduler's pool: ``max(1, NUMBA_NUM_THREADS // pool size)``.
* on the main thread (the synchronous scheduler), or when the threading layer is not TBB:
  the thread's setting is left alone.  Without TBB numba_ln serializes its parallel
  launches across threads (numba_ln/_threading.py), so at most one kernel's threads run
  at a time, and a budget of 1 would leave cores idle.

Results do not depend on the thread count (cpu/_moments.py); the budget changes speed
only.  The environment variable ``NUMBA_LN_DASK_THREADS``, read by each task (set it where
the workers start), overrides the rule: a positive integer (at most NUMBA_NUM_THREADS) is
the budget, ``inherit`` leaves every thread's setting alone, ``auto`` (or unset) is the
rule.  Measurements: docs/dask.md.
"""
import contextlib
import os
import sys
import threading

import numba

from .. import _threading

ENV = "NUMBA_LN_DASK_THREADS"


def task_threads():
    """The Numba threads a task running on this thread may use, or None: leave them."""
    cores = numba.config.NUMBA_NUM_THREADS
    choice = os.environ.get(ENV, "auto").strip().lower()
    if choice == "inherit":
        return None
    if choice not in ("", "auto"):
        try:
            n = int(choice)
        except ValueError:
            n = 0
        if n < 1:
            raise ValueError(f"{ENV}={os.environ[ENV]!r}: expected 'auto', 'inherit' or a "
                             "positive integer")
        return min(cores, n)
    if _threading.needs_lock():
        return None
    slots = concurrent_tasks()
    return None if slots is None else max(1, cores // slots)


def concurrent_tasks():
    """How many tasks share this process's cores, or None off dask's thread pools (a
    nanny-spawned worker counts as all of them: see the module docstring)."""
    distributed = sys.modules.get("distributed")
    if distributed is not None:
        try:
            worker = distributed.get_worker()
        except ValueError:  # not inside a distributed worker's task
            worker = None
        if worker is not None:
            if getattr(worker, "nanny", None):
                return numba.config.NUMBA_NUM_THREADS
            return max(1, sum(w.state.nthreads for w in _live_workers(distributed, worker)))
    if threading.current_thread() is threading.main_thread():
        return None  # the synchronous scheduler, or no dask at all
    dask = sys.modules.get("dask")
    if dask is None:
        return None
    from dask.system import CPU_COUNT

    return dask.config.get("num_workers", None) or CPU_COUNT


def _live_workers(distributed, current):
    """The distributed workers running in this process (at least the current one)."""
    try:
        from distributed.worker import WORKER_ANY_RUNNING

        live = [w for w in list(distributed.Worker._instances) if w.status in WORKER_ANY_RUNNING]
    except (AttributeError, ImportError):  # a distributed without these internals
        live = []
    return live if current in live else live + [current]


@contextlib.contextmanager
def budget():
    """Run the block under the task's thread budget (see the module docstring)."""
    n = task_threads()
    before = numba.get_num_threads()
    if n is None or n == before:
        yield
        return
    numba.set_num_threads(n)
    try:
        yield
    finally:
        numba.set_num_threads(before)
