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

from ._precompile_calls import run_task
from ._validate import count_or_none, flag

COMMON_DTYPES = ("float32", "float64", "float16", "bfloat16")
FUNCTIONS = ("layer_norm", "rms_norm", "add_layer_norm", "add_rms_norm", "moments",
             "layer_norm_backward", "rms_norm_backward")
_COUNTING = False


# Seconds a task took on the development machine (2026-12-05, 2 workers; all_forms, which
# --all adds, estimated), for the order the workers take them in: longest first, so that
# no long task starts last and runs alone at the end (in dtype order, the four
# layer_norm_backward tasks of 13-14 s each came 8th, 15th, 22nd and 28th of 28).
_SECONDS = {"layer_norm_backward": 14, "all_forms": 25, "rms_norm_backward": 6,
            "layer_norm": 5, "rms_norm": 4, "add_layer_norm": 5, "add_rms_norm": 4,
            "moments": 2}


def available(dtypes):
    """dtypes without bfloat16 where ml_dtypes is missing (numba_ln never needs it
    otherwise); ValueError when that leaves none (the run would compile nothing,
    quietly)."""
    if "bfloat16" not in dtypes:
        return dtypes
    try:
        import ml_dtypes  # noqa: F401
    except ImportError:
        dtypes = tuple(d for d in dtypes if d != "bfloat16")
        if not dtypes:
            raise ValueError("dtypes: bfloat16 needs ml_dtypes (pip install ml_dtypes)")
    return dtypes


def tasks(dtypes=COMMON_DTYPES, functions=FUNCTIONS, everything=False):
    """The (function, dtype) tasks to run, in order: the longest first."""
    todo = [(f, d) for d in dtypes for f in functions] + (
        [("all_forms", d) for d in dtypes] if everything else [])
    return sorted(todo, key=lambda task: -_SECONDS.get(task[0], 0))  # (stable)


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
        run_task(*task)
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
    dtypes = available(dtypes)
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
    workers = []  # (their processes, ended early when this generator is left early)

    def next_task():
        with lock:
            return waiting.pop() if waiting else None

    def serve_tasks():
        try:
            with _start_worker() as worker:
                with lock:
                    workers.append(worker)
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
    done = False
    try:
        for thread in threads:  # (inside: a Ctrl-C among the starts left workers running)
            thread.start()
        for _ in todo:
            result = finished.get()
            if isinstance(result, BaseException):
                raise result
            yield result
        done = True
    finally:  # (on an error, a progress callable's, or Ctrl-C: no more tasks)
        with lock:
            waiting.clear()
            if not done:  # (their current tasks too: a KeyboardInterrupt waited ~30 s
                for worker in workers:  # for them in the joins below)
                    worker.kill()
        for thread in threads:
            if thread.ident is not None:  # (started)
                thread.join()


def _start_worker():
    """A worker process: this interpreter, with numba_ln importable as it is here (its
    folder first on sys.path: through PYTHONPATH, a folder whose name holds the path
    separator made the workers import another numba_ln)."""
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env.setdefault("NUMBA_LN_QUIET", "1")  # (no first-use notice: they say it in the progress)
    # (SIGINT's default action: a terminal's Ctrl-C reaches the whole process group, and
    # a worker printed the traceback of whatever it was importing; now it ends quietly,
    # which also stops a precompile() running outside the main thread, where no
    # KeyboardInterrupt reaches the caller)
    code = (f"import signal; signal.signal(signal.SIGINT, signal.SIG_DFL); "
            f"import sys; sys.path.insert(0, {package_parent!r}); "
            f"from numba_ln._precompile import serve; serve({os.getpid()})")
    return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)


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


def serve(caller=None):
    """A worker process's loop: a task per line of stdin ("function dtype"), its answer
    a JSON line on stdout; anything else printed goes to stderr.  caller: the pid of the
    process that started it (the worker ends once that one has gone)."""
    answers, sys.stdout = sys.stdout, sys.stderr
    threading.Thread(target=_end_with, args=(caller or os.getppid(),), daemon=True).start()
    for line in sys.stdin:
        try:
            [(_, count, seconds)] = _worker([tuple(line.split())])
            answer = {"kernels": count, "seconds": seconds}
        except Exception:
            answer = {"error": traceback.format_exc()}
        try:
            answers.write(json.dumps(answer) + "\n")
            answers.flush()
        except OSError:  # (the caller has gone: a BrokenPipeError traceback said so)
            os._exit(1)


def _end_with(caller):
    """End this worker once its caller has gone (killed, or SIGTERM, which runs no
    cleanup: an orphan went on compiling its task for ~30 s), also when it went while
    this worker was still importing."""
    while os.getppid() == caller:
        time.sleep(0.2)
    os._exit(1)


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
        dtypes = available(_names(args.dtypes, "dtypes", COMMON_DTYPES))
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
