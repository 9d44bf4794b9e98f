"""``numba_ln.precompile()`` and ``python -m numba_ln.precompile``: compile the kernels of
the common calls into Numba's on-disk cache ahead of their first use (Dockerfiles, CI
images, a cluster's shared environment), in parallel processes, with progress.

A *task* is one public call on small and large arrays of one dtype (the small-call, serial
and parallel kernels it reaches).  Tasks run in worker processes (fresh interpreters: each
starts with nothing compiled); each process writes what it compiled into the cache, its
saves locked per cache folder (cpu/_jit.py).  The workers are started as
``python -c "...serve()"``, not by multiprocessing, whose spawned children import the
caller's script again: a script calling ``numba_ln.precompile()`` without an
``if __name__ == "__main__":`` guard failed ("An attempt has been made to start a new
process before the current process has finished its bootstrapping phase").  A last pass in the calling process runs every task again,
loading what is cached and compiling anything missing (measured once: a run whose workers'
entries were not all found afterwards), so that nothing is missing at the end.
"""
import argparse
import json
import os
import queue
import subprocess
import sys
import threading
import time
import traceback

import numpy as np

from ._validate import count_or_none, flag

COMMON_DTYPES = ("float32", "float64", "float16", "bfloat16")
FUNCTIONS = ("layer_norm", "rms_norm", "add_layer_norm", "add_rms_norm", "moments",
             "layer_norm_backward", "rms_norm_backward")
_SMALL, _LARGE = (2, 768), (512, 1024)  # the small-call/serial kernels; the parallel ones
# A backward call between its serial bound and the forward's: the small-call gate's check
# (small_backward_fits), then the parallel kernel the large shape compiles
_MID = (96, 1024)
_WIDE = (2, 200_000)  # split rows (--all)
_COUNTING = False


# Seconds a task took on the development machine (2026-12-05, 2 workers; all_forms, which
# --all adds, estimated), for the order the workers take them in: longest first, so that
# no long task starts last and runs alone at the end (in dtype order, the four
# layer_norm_backward tasks of 13-14 s each came 8th, 15th, 22nd and 28th of 28).
_SECONDS = {"layer_norm_backward": 14, "all_forms": 25, "rms_norm_backward": 6,
            "layer_norm": 5, "rms_norm": 4, "add_layer_norm": 5, "add_rms_norm": 4,
            "moments": 2}


def tasks(dtypes=COMMON_DTYPES, functions=FUNCTIONS, everything=False):
    """The (function, dtype) tasks to run, in order: the longest first."""
    todo = [(f, d) for d in dtypes for f in functions] + (
        [("all_forms", d) for d in dtypes] if everything else [])
    return sorted(todo, key=lambda task: -_SECONDS.get(task[0], 0))  # (stable)


def _dtype(name):
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def _run_task(function, dtype_name):
    """Make the calls of one task (weights as checkpoints hold them: in the data's dtype)."""
    import numba_ln

    dtype = _dtype(dtype_name)
    shapes = (_SMALL, _LARGE) + ((_WIDE,) if function == "all_forms" else ()) + (
        (_MID,) if function.endswith("_backward") else ())
    for shape in shapes:
        x = np.linspace(-1, 1, shape[0] * shape[1]).reshape(shape).astype(dtype)
        w = np.ones(shape[-1], dtype)
        if function == "all_forms":  # the other argument forms, on every function
            numba_ln.layer_norm(x)
            numba_ln.layer_norm(x, w, w, return_stats=True)
            numba_ln.rms_norm(x, return_stats=True)
            numba_ln.add_layer_norm(x, x, w, w, out=x.copy(), residual_out=x.copy())
            numba_ln.layer_norm(np.asfortranarray(x), w, w)  # the channels kernels
            # the channels-first backward: x and dy transposed into rows (cpu/transpose.py,
            # serial at the small shape, threaded at the large one)
            numba_ln.layer_norm_backward(x, x, np.ones(x.shape[0], dtype), axis=0)
            numba_ln.moments(x, axis=0)
            _other_forms(numba_ln, x, w)
            continue
        f = getattr(numba_ln, function)
        if function == "moments":
            f(x)
        elif function.endswith("_backward"):
            f(x, x, w)
            if function == "layer_norm_backward":
                _, mean, rstd = numba_ln.layer_norm(x, w, return_stats=True)
                f(x, x, w, mean=mean, rstd=rstd)
        elif function.startswith("add_"):
            f(x, x, w) if "rms" in function else f(x, x, w, w)
        else:
            f(x, w) if "rms" in function else f(x, w, w)


def _other_forms(numba_ln, x, w):
    """The forms whose small calls compile kernels of their own (first use ~0.3-3.6 s
    each, measured with the other tasks compiled): a weight without a bias, a token as a
    1-D array, strided rows (x[:, -1, :] of a batch), the fused forms' statistics,
    parameters of another dtype (a checkpoint's) and read-only ones, several trailing axes,
    and the training forms (grad_residual, param_grads=False)."""
    other = w.astype(np.float64 if w.dtype == np.float32 else np.float32)  # (16-bit: float32)
    frozen = w.copy()
    frozen.flags.writeable = False
    numba_ln.layer_norm(x, w)
    numba_ln.layer_norm(x[0], w, w)
    numba_ln.rms_norm(x[0], w)
    numba_ln.layer_norm(np.concatenate([x, x], axis=1)[:, :x.shape[1]], w, w)
    numba_ln.add_layer_norm(x, x, w, w, return_stats=True)
    numba_ln.add_rms_norm(x, x, w, return_stats=True)
    numba_ln.layer_norm(x, other, other)
    numba_ln.layer_norm(x, frozen, frozen)
    # several trailing axes (a LayerNorm((2, cols / 2))): x and its parameters read as
    # rows as they are, a kernel variant for each rank (3-D here)
    x3, w2 = x.reshape(x.shape[0], 2, -1), w.reshape(2, -1)
    numba_ln.layer_norm(x3, w2, w2, axis=(-2, -1))
    numba_ln.rms_norm(x3, w2, axis=(-2, -1))
    numba_ln.layer_norm_backward(x3, x3, w2, axis=(-2, -1))
    numba_ln.rms_norm_backward(x3, x3, w2, axis=(-2, -1))
    for backward in (numba_ln.layer_norm_backward, numba_ln.rms_norm_backward):
        backward(x, x, w, grad_residual=x)
        backward(x, x, w, param_grads=False)
        backward(x, x, frozen)


_COMPILED = []  # one entry per kernel compiled in this process (see _count_compiles)


def _count_compiles():
    """Count Numba's compile events in _COMPILED (cache misses; loads are not compiles),
    registering the listener once per process."""
    from numba.core import event

    global _COUNTING
    if _COUNTING:
        return

    class Count(event.Listener):
        def on_start(self, ev):
            _COMPILED.append(1)

        def on_end(self, ev):
            pass

    event.register("numba:compile", Count())
    _COUNTING = True


def _worker(batch):
    """Run tasks in this process: [(task, kernels compiled, seconds)]."""
    _count_compiles()
    compiled = _COMPILED
    done = []
    for task in batch:
        start, before = time.perf_counter(), len(compiled)
        _run_task(*task)
        done.append((task, len(compiled) - before, time.perf_counter() - start))
    return done


def cache_folder():
    """Where the kernels are cached (Numba's choice: NUMBA_CACHE_DIR, next to the sources,
    or the user's cache folder)."""
    from .cpu.rows import rows_block

    cache = getattr(rows_block, "_cache", None)
    return getattr(cache, "_cache_path", None) or "(no cache: kernels compile in every process)"


def precompile(dtypes=COMMON_DTYPES, functions=FUNCTIONS, everything=False, processes=None,
               progress=None):
    """Compile the kernels of the common calls into the on-disk cache.

    dtypes/functions choose the tasks (bfloat16 only where ml_dtypes is installed),
    ``everything`` adds the other argument forms (return_stats, out=, other axes, split
    rows); processes: worker processes (default: the CPU count, at most the tasks);
    progress: a callable taking one line per finished task (default: none).  Returns
    ``{"tasks": n, "kernels": compiled, "seconds": s, "cache": folder}``.  dtypes and
    functions may also be one comma-separated string, as the command line takes them;
    anything else is refused before any work starts."""
    dtypes = _names(dtypes, "dtypes", COMMON_DTYPES)
    functions = _names(functions, "functions", FUNCTIONS)
    everything = flag(everything, "everything")
    processes = count_or_none(processes, "processes", 1)
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be None or a callable, got {progress!r}")
    if "bfloat16" in dtypes:
        try:
            import ml_dtypes  # noqa: F401
        except ImportError:
            dtypes = tuple(d for d in dtypes if d != "bfloat16")
    todo = tasks(dtypes, functions, everything)
    processes = max(1, min(processes or os.cpu_count() or 1, len(todo)))
    say = progress or (lambda line: None)
    start, kernels = time.perf_counter(), 0
    for finished, ((function, dtype), count, seconds) in enumerate(
            _in_workers(todo, processes), 1):
        kernels += count
        say(f"[{finished}/{len(todo)}] {dtype} {function}: {count} kernels compiled "
            f"in {seconds:.1f} s")
    for (function, dtype), count, _ in _worker(todo):  # load all; compile what was dropped
        kernels += count
        if count:
            say(f"(again here: {dtype} {function}, {count} kernels)")
    return {"tasks": len(todo), "kernels": kernels, "seconds": time.perf_counter() - start,
            "cache": cache_folder()}


def _in_workers(todo, processes):
    """Run the tasks in `processes` worker processes, each taking the next task when done
    with one (a worker keeps what it compiled); yields (task, kernels, seconds) as tasks
    finish, in this thread (progress is called here)."""
    waiting, finished = list(reversed(todo)), queue.Queue()
    lock = threading.Lock()

    def next_task():
        with lock:
            return waiting.pop() if waiting else None

    def serve_tasks():
        try:
            with _start_worker() as worker:
                task = next_task()
                while task is not None:
                    finished.put((task, *_ask(worker, task)))
                    task = next_task()
                worker.stdin.close()
        except BaseException as error:  # (raised in the calling thread, below)
            with lock:
                waiting.clear()
            finished.put(error)

    threads = [threading.Thread(target=serve_tasks, daemon=True) for _ in range(processes)]
    for thread in threads:
        thread.start()
    try:
        for _ in todo:
            result = finished.get()
            if isinstance(result, BaseException):
                raise result
            yield result
    finally:  # (on an error, or a progress callable's: the workers start no more tasks)
        with lock:
            waiting.clear()
        for thread in threads:
            thread.join()


def _start_worker():
    """A worker process: this interpreter, with numba_ln importable as it is here."""
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent,
                                                      env.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, "-c", "from numba_ln._precompile import serve; serve()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)


def _ask(worker, task):
    """(kernels, seconds) of one task run by the worker process."""
    worker.stdin.write(" ".join(task) + "\n")
    worker.stdin.flush()
    answer = worker.stdout.readline()
    if not answer:
        raise RuntimeError(f"numba_ln.precompile: a worker process ended (exit code "
                           f"{worker.wait()}) during the task {task}")
    answer = json.loads(answer)
    if "error" in answer:
        raise RuntimeError(f"numba_ln.precompile: the task {task} failed in a worker "
                           f"process:\n{answer['error']}")
    return answer["kernels"], answer["seconds"]


def serve():
    """A worker process's loop: a task per line of stdin ("function dtype"), its answer
    a JSON line on stdout; anything else printed goes to stderr."""
    answers, sys.stdout = sys.stdout, sys.stderr
    for line in sys.stdin:
        try:
            [(_, count, seconds)] = _worker([tuple(line.split())])
            answer = {"kernels": count, "seconds": seconds}
        except Exception:
            answer = {"error": traceback.format_exc()}
        answers.write(json.dumps(answer) + "\n")
        answers.flush()


def _names(names, argument, known):
    """names (a sequence of strings, or one comma-separated string) as a tuple, each one of
    known, each once (a name given twice ran its tasks twice); TypeError/ValueError naming
    the argument otherwise, also for no name at all (which compiled nothing, quietly)."""
    if isinstance(names, str):
        names = [n for n in names.split(",") if n]
    try:
        names = tuple(names)
    except TypeError:
        raise TypeError(f"{argument} must be a sequence of names, got {names!r}") from None
    if not all(isinstance(n, str) for n in names):
        raise TypeError(f"{argument} must be names (strings), got {names!r}")
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"{argument}: unknown {', '.join(map(repr, unknown))}; choose from "
                         f"{', '.join(known)}")
    if not names:
        raise ValueError(f"{argument}: no name given; choose from {', '.join(known)}")
    return tuple(dict.fromkeys(names))


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m numba_ln.precompile",
        description="Compile numba_ln's kernels for the common calls into Numba's on-disk "
                    "cache, so that a new process's first call loads them instead of "
                    "compiling (about 5-8 s per function and dtype otherwise).")
    parser.add_argument("--dtypes", default=",".join(COMMON_DTYPES),
                        help="comma-separated, from " + ", ".join(COMMON_DTYPES))
    parser.add_argument("--functions", default=",".join(FUNCTIONS),
                        help="comma-separated, from " + ", ".join(FUNCTIONS))
    parser.add_argument("--all", action="store_true",
                        help="also the other argument forms (return_stats, out=, other "
                             "axes, rows split over threads)")
    parser.add_argument("--processes", type=int, default=None,
                        help="worker processes (default: the CPU count)")
    args = parser.parse_args(argv)
    try:  # (precompile's own rules: the names, once)
        dtypes = _names(args.dtypes, "dtypes", COMMON_DTYPES)
        functions = _names(args.functions, "functions", FUNCTIONS)
    except ValueError as bad:
        parser.error(f"unknown or invalid: {bad}")
    if args.processes is not None and args.processes < 1:
        parser.error(f"unknown or invalid: --processes {args.processes}")
    os.environ.setdefault("NUMBA_LN_QUIET", "1")  # (the workers say it in the progress)
    print(f"numba_ln: compiling the kernels of {len(tasks(dtypes, functions, args.all))} "
          "tasks...", file=sys.stderr)
    summary = precompile(dtypes, functions, args.all, args.processes,
                         progress=lambda line: print(line, file=sys.stderr))
    print(f"numba_ln: {summary['kernels']} kernels compiled for {summary['tasks']} tasks in "
          f"{summary['seconds']:.1f} s; cache: {summary['cache']}")
    return 0
