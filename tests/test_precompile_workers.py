"""precompile's worker processes: they import the caller's numba_ln, and end with their
caller however it ends (killed, interrupted, an exception, a Ctrl-C to the group)."""
import os
import subprocess
import sys
import textwrap

import pytest

import numba_ln
from numba_ln import _precompile


def _python(args, env, cwd):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=600, env=env, cwd=cwd)


def test_workers_import_this_numba_ln_from_any_folder_name(tmp_path):
    """The workers found numba_ln through PYTHONPATH, which a folder named with the path
    separator (':' here) splits: they imported another numba_ln (the installed one),
    cached into another folder, and the caller compiled every kernel again."""
    import shutil

    site = tmp_path / f"odd{os.pathsep}name"
    shutil.copytree(os.path.dirname(numba_ln.__file__), site / "numba_ln",
                    ignore=shutil.ignore_patterns("__pycache__"))
    # (a task name no worker knows: the error's traceback names the _precompile.py that
    # the worker imported)
    code = textwrap.dedent("""
        import sys
        sys.path.insert(0, sys.argv[1])
        from numba_ln import _precompile
        with _precompile._start_worker() as worker:
            try:
                _precompile._ask(worker, ("no_such_function", "float32"))
            except RuntimeError as error:
                print(error)
            worker.stdin.close()
    """)
    done = _python(["-c", code, str(site)], dict(os.environ), tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert str(site / "numba_ln" / "_precompile.py") in done.stdout, done.stdout


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_a_worker_ends_when_its_caller_is_killed(tmp_path):
    """SIGTERM or SIGKILL to `python -m numba_ln.precompile` (a CI step's timeout) runs no
    cleanup: its workers went on compiling their tasks, orphaned, then printed
    BrokenPipeError tracebacks.  Now a worker ends once its caller has gone."""
    import signal
    import time

    code = textwrap.dedent("""
        from numba_ln import _precompile
        worker = _precompile._start_worker()
        print(worker.pid, flush=True)
        _precompile._ask(worker, ("layer_norm_backward", "float64"))  # (seconds, cold)
    """)
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    caller = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    worker_pid = int(caller.stdout.readline())
    time.sleep(0.5)  # (the worker is importing or compiling)
    caller.send_signal(signal.SIGKILL)
    caller.wait()
    caller.stdout.close()
    deadline = time.monotonic() + 60  # (a liveness bound, not a speed check)
    while time.monotonic() < deadline:
        try:
            os.kill(worker_pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(worker_pid, signal.SIGKILL)
        pytest.fail("the worker outlived its killed caller by 60 s")
    assert "Traceback" not in caller.stderr.read()
    caller.stderr.close()


class _FakeWorker:
    """A worker process's stand-in for _in_workers: kill() sets the event `killed`."""
    stdin = None

    def __init__(self, killed):
        self.killed = killed

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def kill(self):
        self.killed.set()


def test_leaving_the_workers_early_kills_their_current_tasks(monkeypatch):
    """A KeyboardInterrupt (Jupyter's interrupt, `kill -INT` to the caller alone) or a
    progress callable's error waited for every worker's current task (~30 s) before it
    was raised: the workers are now killed first."""
    import threading

    killed = threading.Event()

    b_started = threading.Event()

    def ask(worker, task):  # (b: a task that ends only when its worker is killed)
        if task == ("a", "float32"):
            b_started.wait(60)
            return 1, 0.0
        b_started.set()
        killed.wait(60)
        raise RuntimeError("killed")

    monkeypatch.setattr(_precompile, "_start_worker", lambda: _FakeWorker(killed))
    monkeypatch.setattr(_precompile, "_ask", ask)
    running = _precompile._in_workers([("a", "float32"), ("b", "float32")], 2)
    assert next(running)[0] == ("a", "float32")
    running.close()  # (as an exception raised in the caller's loop leaves it)
    assert killed.is_set()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to another process")
def test_a_worker_ends_quietly_on_the_terminals_ctrl_c(tmp_path):
    """A terminal's Ctrl-C reaches the whole process group: each worker printed the
    traceback of whatever it was doing.  Now it ends at once, quietly (SIGINT's default
    action), which also stops a precompile() running outside the main thread."""
    code = textwrap.dedent("""
        import signal
        from numba_ln import _precompile
        worker = _precompile._start_worker()
        try:  # (one answer first: the worker is serving)
            _precompile._ask(worker, ("no_such_function", "float32"))
        except RuntimeError:
            pass
        worker.send_signal(signal.SIGINT)
        print(worker.wait(timeout=60))
    """)
    done = _python(["-c", code], dict(os.environ), tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == [str(-2)]  # (-SIGINT: ended by the signal)
    assert "Traceback" not in done.stderr and "KeyboardInterrupt" not in done.stderr


def test_a_ctrl_c_among_the_thread_starts_kills_the_started_workers(monkeypatch):
    """The threads were started before the block that ends the workers: a Ctrl-C between
    two starts left the first worker compiling every task."""
    import threading

    killed, serving = threading.Event(), threading.Event()

    def ask(worker, task):  # (a task that ends only when its worker is killed)
        serving.set()
        killed.wait(60)
        raise RuntimeError("killed")

    starts = []
    start = threading.Thread.start

    def interrupted_start(thread):
        if starts:  # (the second start: Ctrl-C, once the first worker serves)
            serving.wait(60)
            raise KeyboardInterrupt
        starts.append(thread)
        start(thread)

    monkeypatch.setattr(_precompile, "_start_worker", lambda: _FakeWorker(killed))
    monkeypatch.setattr(_precompile, "_ask", ask)
    monkeypatch.setattr(threading.Thread, "start", interrupted_start)
    with pytest.raises(KeyboardInterrupt):
        next(_precompile._in_workers([("a", "float32"), ("b", "float32")], 2))
    assert killed.is_set()
