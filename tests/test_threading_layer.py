"""The threading layer (numba_ln/_threading.py): TBB by Numba's own choice once its library
is loadable, any layer or order the user chose respected, and Numba's settings numba_ln
cannot run under refused at import."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import numba_ln


def test_threading_layer_is_fork_and_thread_safe():
    import numba

    numba_ln.layer_norm(np.ones((256, 1024), np.float32))  # a parallel launch (> 131072)
    if _tbb_wheel_installed() and not os.environ.get("NUMBA_THREADING_LAYER") \
            and not os.environ.get("NUMBA_THREADING_LAYER_PRIORITY"):
        assert numba.threading_layer() == "tbb"  # (the wheel's library, loaded by path)
    if numba.threading_layer() != "tbb":
        assert numba_ln._threading.needs_lock()


def _tbb_wheel_installed():
    from importlib import metadata

    try:
        metadata.version("tbb")
    except metadata.PackageNotFoundError:
        return False
    return True


_THREADS_AT_ONCE = """
    import sys, threading
    import numba, numpy as np
    if sys.argv[1] == "before":
        numba.config.THREADING_LAYER = "workqueue"
    import numba_ln
    if sys.argv[1] == "after":
        numba.config.THREADING_LAYER = "workqueue"
    if sys.argv[1] == "order after":
        numba.config.THREADING_LAYER_PRIORITY = ["workqueue", "omp", "tbb"]
    x = np.arange(256 * 1024, dtype=np.float32).reshape(256, 1024) % 7
    want = numba_ln.layer_norm(x).tobytes()  # (a parallel launch: > 131072 elements)
    results = []
    def work():
        results.extend(numba_ln.layer_norm(x).tobytes() == want for _ in range(20))
    threads = [threading.Thread(target=work) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    print(numba.threading_layer(), all(results), len(results))
"""


def test_disabled_jit_is_refused_on_import():
    """NUMBA_DISABLE_JIT=1 ran the kernels' intrinsics as Python: calls returned
    uninitialized memory without an error."""
    done = subprocess.run([sys.executable, "-c", "import numba_ln"], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "NUMBA_DISABLE_JIT": "1"})
    assert done.returncode == 1
    assert "ImportError: numba_ln needs Numba's compiler: it cannot run with " \
           "NUMBA_DISABLE_JIT=1" in done.stderr


@pytest.mark.parametrize("settings, when, layer", [
    ({"NUMBA_THREADING_LAYER": "tbb"}, "", "tbb"),  # (the tbb wheel's library, by path)
    ({"NUMBA_THREADING_LAYER": "forksafe"}, "", "tbb"),
    ({}, "before", "workqueue"), ({}, "after", "workqueue"),
    ({"NUMBA_THREADING_LAYER_PRIORITY": "workqueue omp tbb"}, "", "workqueue"),
    ({}, "order after", "workqueue")])
def test_the_users_threading_layer(settings, when, layer):
    """A layer chosen with NUMBA_THREADING_LAYER (tbb was not found: the wheel's library
    was loaded only for numba_ln's own choice) or with numba.config.THREADING_LAYER in
    code, before the import (it was replaced by tbb) or after it (numba_ln's launches were
    not serialized, and workqueue aborted the process on concurrent calls); an order
    chosen with NUMBA_THREADING_LAYER_PRIORITY or its numba.config setting (numba_ln
    chose tbb over it)."""
    if layer == "tbb" and not _tbb_wheel_installed():
        pytest.skip("the tbb wheel is not installed")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_THREADING_LAYER")}
    env.update(settings)
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(_THREADS_AT_ONCE),
                           when or "-"], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == [layer, "True", "80"]


_FINALIZER_CALLS = """
    import numpy as np, numba_ln
    x = np.linspace(-1.0, 1.0, 2000 * 512, dtype=np.float32).reshape(2000, 512)
    class Model:
        def __del__(self):  # (a finalizer that calls numba_ln, run by the collector)
            numba_ln.rms_norm(x)
    m = Model(); m.me = m; del m  # (cyclic garbage: collected during a later allocation)
    y = numba_ln.layer_norm(x)  # (the process's first parallel launch: > 131072 elements)
    print(float(np.abs(y.mean(axis=-1)).max()) < 1e-5)
"""


def test_a_finalizer_calling_during_the_first_launch_does_not_deadlock():
    """A collector's finalizer that made a parallel call while the process's first launch
    was typed or loaded waited for that launch's lock in the same thread, for ever."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(_FINALIZER_CALLS)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["True"]


_FORK_WHILE_ANOTHER_THREAD_LAUNCHES = """
    import os, threading, time
    import numpy as np, numba_ln
    x = np.linspace(-1.0, 1.0, 2000 * 512, dtype=np.float32).reshape(2000, 512)
    want = numba_ln.layer_norm(x).tobytes()  # (the first launch: the layer is known)
    stop = False
    def busy():  # (another thread's parallel calls, each holding the launch lock)
        while not stop:
            numba_ln.layer_norm(x)
    thread = threading.Thread(target=busy); thread.start()
    codes = []
    for _ in range(3):
        time.sleep(0.05)
        pid = os.fork()
        if pid == 0:
            os._exit(0 if numba_ln.layer_norm(x).tobytes() == want else 3)
        deadline = time.time() + 60
        while not os.waitpid(pid, os.WNOHANG)[0]:
            if time.time() > deadline:  # (hung: killed)
                os.kill(pid, 9); os.waitpid(pid, 0); codes.append("hung"); break
            time.sleep(0.02)
        else:
            codes.append("ok")
    stop = True; thread.join()
    print(*codes)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX")
def test_a_child_forked_while_another_thread_launches_gets_its_own_lock():
    """Under a layer whose launches numba_ln serializes (here workqueue), a child forked
    while another thread held the launch lock inherited it held, and its first parallel
    call hung for ever (20 of 20 forks)."""
    env = {**os.environ, "NUMBA_THREADING_LAYER": "workqueue"}
    done = subprocess.run([sys.executable, "-c",
                           textwrap.dedent(_FORK_WHILE_ANOTHER_THREAD_LAUNCHES)],
                          capture_output=True, text=True, timeout=400, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["ok"] * 3
