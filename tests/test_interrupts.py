"""Ctrl-C while a kernel compiles or loads (numba_ln/cpu/_interrupts.py): delivered once the
kernel is in place, never inside Numba, and the process stays usable."""
import subprocess
import sys
import textwrap
import time

import pytest

_CHILD = """
    import os, signal
    import numpy as np
    from numba_ln.cpu import transpose

    kernel = transpose.swap_serial
    load = kernel._cache.load_overload

    def interrupted_load(sig, target_context):  # Ctrl-C as the kernel starts loading
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):  # (Python runs handlers between bytecodes: here, unheld)
            pass
        return load(sig, target_context)

    kernel._cache.load_overload = interrupted_load
    a = np.arange(12, dtype=np.uint32).reshape(1, 3, 4)
    d = np.zeros((1, 4, 3), np.uint32)
    try:
        kernel(a, d)
        print("not interrupted")
    except KeyboardInterrupt:
        print("interrupted", len(kernel.overloads))  # (1: it was loaded or compiled first)
    kernel._cache.load_overload = load
    kernel(a, d)  # a later call runs
    print("ok" if np.array_equal(d, a.transpose(0, 2, 1)) else "wrong")
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to oneself")
def test_ctrl_c_while_a_kernel_loads_waits_for_it(tmp_path):
    import os

    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path), "NUMBA_LN_QUIET": "1"}
    # (cached first: a miss would wait for the compile lock, where Ctrl-C is taken at once)
    warm = "import numpy as np; from numba_ln.cpu import transpose; " \
           "transpose.swap_serial(np.zeros((1, 3, 4), np.uint32), np.zeros((1, 4, 3), np.uint32))"
    subprocess.run([sys.executable, "-c", warm], env=env, check=True, timeout=300)
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(_CHILD)], capture_output=True,
                          text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["interrupted", "1", "ok"], (done.stdout, done.stderr[-3000:])


_WAITING_CHILD = """
    import fcntl, os, signal, threading, time
    import numpy as np
    from numba_ln.cpu import transpose

    kernel = transpose.swap_serial
    folder = kernel._cache._cache_file._cache_path
    os.makedirs(folder, exist_ok=True)
    held = open(os.path.join(folder, "numba_ln.lock"), "a")  # (as another process saving)
    fcntl.flock(held, fcntl.LOCK_EX)
    sent = []

    def ctrl_c():  # once the kernel is compiled and its save waits for the lock
        time.sleep(1.0)
        sent.append(time.perf_counter())
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=ctrl_c, daemon=True).start()
    a = np.arange(12, dtype=np.uint32).reshape(1, 3, 4)
    try:
        kernel(a, np.zeros((1, 4, 3), np.uint32))
        print("not interrupted")
    except KeyboardInterrupt:
        print("interrupted", time.perf_counter() - sent[0] < 5)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to oneself, flock")
def test_ctrl_c_while_waiting_for_another_process_is_at_once(tmp_path):
    """A wait for a lock another process holds (it compiles or saves; it may be suspended)
    is where Ctrl-C is delivered at once: held off there, it waited as long as the lock."""
    import os

    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path), "NUMBA_LN_QUIET": "1"}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(_WAITING_CHILD)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.stdout.split() == ["interrupted", "True"], (done.stdout, done.stderr[-3000:])


_OTHER_THREAD_COMPILING = """
    import os, signal, threading
    import numpy as np
    from numba.core.compiler_lock import global_compiler_lock
    from numba_ln.cpu import transpose

    held, release, released = threading.Event(), threading.Event(), threading.Event()

    def other_thread_compiling():  # (as a thread compiling a kernel for long)
        with global_compiler_lock:
            held.set()
            release.wait(20)  # (at most: without the fix the call waits this long)
        released.set()

    threading.Thread(target=other_thread_compiling, daemon=True).start()
    held.wait()
    threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
    try:
        transpose.swap_serial(np.zeros((1, 3, 4), np.uint32), np.zeros((1, 4, 3), np.uint32))
        print("not interrupted")
    except KeyboardInterrupt:
        print("interrupted", "after" if released.is_set() else "while-held")
    release.set()
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to oneself")
def test_ctrl_c_while_another_thread_compiles_is_at_once(tmp_path):
    """The wait for Numba's compiler lock, which another thread holds while it compiles,
    is before SIGINT is held off: a Ctrl-C waited for every other thread's compiles
    (10-40 s with four threads making first calls), where plain Numba is interrupted at
    once; nothing is half done there."""
    import os

    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path), "NUMBA_LN_QUIET": "1"}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(_OTHER_THREAD_COMPILING)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.stdout.split() == ["interrupted", "while-held"], (done.stdout,
                                                                  done.stderr[-3000:])


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="fork() is POSIX")
def test_a_child_forked_while_ctrl_c_is_held_off_gets_it():
    """A child forked by another thread while the main thread held SIGINT off (a kernel
    compiling) inherited the handler that only notes it, and ignored Ctrl-C for life."""
    import os
    import signal
    import threading

    from numba_ln.cpu import _interrupts

    status = []

    def fork_and_interrupt_the_child():
        pid = os.fork()
        if pid == 0:  # (plain Python, no numba_ln: KeyboardInterrupt, as without it)
            try:
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(500):
                    time.sleep(0.01)
                os._exit(3)  # (Ctrl-C swallowed)
            except KeyboardInterrupt:
                os._exit(0)
            os._exit(4)
        status.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("SIGINT is held off in the main thread only")
    before = signal.getsignal(signal.SIGINT)
    with _interrupts.held_off():
        assert signal.getsignal(signal.SIGINT) is not before  # (held off here)
        forker = threading.Thread(target=fork_and_interrupt_the_child)
        forker.start()
        forker.join(30)
    assert status == [0]
    assert signal.getsignal(signal.SIGINT) is before


def test_a_ctrl_c_at_any_line_of_held_off_leaves_its_state_whole():
    """A KeyboardInterrupt raised by the user's handler at any line of held_off where that
    handler is the one installed (where a real SIGINT raises) leaves no depth behind and
    the user's handler in place: a reordering left depth 1 there, after which a compile's
    wait installed the noting handler for good (Ctrl-C ignored for the process's life)."""
    import signal
    import threading

    from numba_ln.cpu import _interrupts

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("SIGINT is held off in the main thread only")

    def users_handler(signum, frame):
        raise KeyboardInterrupt

    code = _interrupts.held_off.__wrapped__.__code__
    before = signal.signal(signal.SIGINT, users_handler)
    left = []
    try:
        for target in sorted({line for _, _, line in code.co_lines() if line}):
            fired = []

            def at_line(frame, event, arg):
                if (event == "line" and frame.f_lineno == target and not fired
                        and signal.getsignal(signal.SIGINT) is users_handler):
                    fired.append(target)
                    raise KeyboardInterrupt  # (what the handler raises there)
                return at_line

            sys.settrace(lambda frame, event, arg: at_line if frame.f_code is code else None)
            try:
                with _interrupts.held_off():
                    pass
            except KeyboardInterrupt:
                pass
            finally:
                sys.settrace(None)
            if _interrupts._State.depth or signal.getsignal(signal.SIGINT) is not users_handler:
                left.append((target, _interrupts._State.depth))
                _interrupts._State.depth = 0
                signal.signal(signal.SIGINT, users_handler)
    finally:
        signal.signal(signal.SIGINT, before)
    assert left == []


def test_the_noting_handler_left_in_by_another_handlers_exception_is_healed():
    """Another signal's handler raising (a timeout) inside the swaps of held_off could
    leave the noting handler in with nothing held off, and the next held_off took it for
    the user's: Ctrl-C ignored for the process's life.  The next held_off puts the
    user's handler back."""
    import signal
    import threading

    from numba_ln.cpu import _interrupts

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("SIGINT is held off in the main thread only")

    def users_handler(signum, frame):
        raise KeyboardInterrupt

    before = signal.signal(signal.SIGINT, users_handler)
    try:
        with _interrupts.held_off():
            pass
        signal.signal(signal.SIGINT, _interrupts._note)  # (as such an exception leaves it)
        with _interrupts.held_off():
            assert signal.getsignal(signal.SIGINT) is _interrupts._note
        assert signal.getsignal(signal.SIGINT) is users_handler
    finally:
        signal.signal(signal.SIGINT, before)
