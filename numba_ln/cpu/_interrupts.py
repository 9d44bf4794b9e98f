"""Ctrl-C held off while the main thread compiles or loads a kernel.

A KeyboardInterrupt raised in the middle of Numba's compiler -- typing, an llvmlite object's
__del__, a cached kernel half registered -- left the process crashing ("double free", a
segfault) or with every later call failing ("generator raised StopIteration"): a helper
sending SIGINT every ~10 ms through a fresh process's first calls broke 2 to 6 of 8 of
them (a single Ctrl-C at a bad moment breaks plain Numba too, ~1-2% of moments; our first
calls load dozens of kernels).  So while one of our kernels compiles or loads (cpu/_jit.py
wraps Dispatcher.compile), a SIGINT is only noted, and delivered to the handler that was
there once the outermost compilation has finished: Ctrl-C still interrupts the call, a
kernel (a few seconds cold, milliseconds cached) later (the wait for Numba's compiler
lock, while other threads compile, comes before: cpu/_jit.py).  Only in the main thread, where
Python runs signal handlers; elsewhere, and where the handler is not Python's, nothing
changes.
"""
import contextlib
import os
import signal
import threading


class _State:
    depth = 0          # nested compilations in progress (the main thread's)
    previous = None    # the SIGINT handler to restore
    caught = None      # (signum, frame) of a SIGINT held off
    forking_from_main = True  # whether the fork under way comes from the main thread
    users = None       # the last handler held_off found in place (never _note)


def _note(signum, frame):
    _State.caught = (signum, frame)


@contextlib.contextmanager
def held_off():
    """Run the block with SIGINT held off (see the module docstring)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # (Python runs handlers in the main thread only: nothing to hold off)
        return
    # (previous is set before the noting handler goes in and cleared after the handler is
    # back, so that a fork from another thread at any moment finds what to restore; depth
    # moves only where a KeyboardInterrupt cannot leave it wrong: a SIGINT after the
    # noting handler is in is noted, not raised)
    if _State.depth == 0:
        try:
            previous = signal.getsignal(signal.SIGINT)
        except (ValueError, TypeError, OSError):  # (no signals here, e.g. a subinterpreter)
            previous = None
        if previous is _note:  # (left in by another handler's exception, a timeout, raised
            previous = _State.users  # as it was swapped: healed here)
        if previous is None:  # (or a handler not set from Python: left alone)
            yield
            return
        _State.previous, _State.caught, _State.users = previous, None, previous
        try:
            signal.signal(signal.SIGINT, _note)
        except (ValueError, TypeError, OSError):
            yield
            return
        except BaseException:  # (another handler's exception, a timeout, as it went in)
            _put_back(previous)
            _State.previous = None
            raise
    _State.depth += 1
    try:
        yield
    finally:
        _State.depth -= 1
        if _State.depth == 0:
            previous = _State.previous
            try:
                _put_back(previous)
            finally:  # (caught read after the swap: a SIGINT noted just before it counts)
                caught, _State.previous, _State.caught = _State.caught, None, None
            if caught is not None:
                _deliver(previous, caught)


def _put_back(handler):
    """signal.signal(SIGINT, handler), done even when another signal's handler raises from
    it (signal.signal runs pending handlers before it swaps: a timeout there left the
    noting handler in for good, Ctrl-C ignored); that exception is raised afterwards."""
    error = None
    for _ in range(4):
        try:
            signal.signal(signal.SIGINT, handler)
            break
        except BaseException as exception:  # noqa: BLE001  (raised below)
            error = error or exception
    if error is not None:
        raise error


@contextlib.contextmanager
def interruptible():
    """Inside held_off, a block that only waits -- for a lock another process holds while
    it compiles or saves (cpu/_jit.py), which may take long or forever (a suspended
    process) -- where Ctrl-C is delivered at once: nothing of Numba's is half done."""
    if _State.depth == 0 or threading.current_thread() is not threading.main_thread():
        yield
        return
    signal.signal(signal.SIGINT, _State.previous)
    try:
        caught, _State.caught = _State.caught, None
        if caught is not None:  # (noted before the wait)
            _deliver(_State.previous, caught)
        yield
    finally:
        signal.signal(signal.SIGINT, _note)


def _deliver(handler, caught):
    if callable(handler):
        handler(*caught)  # (Python's default_int_handler raises KeyboardInterrupt)
    elif handler == signal.SIG_DFL:
        os.kill(os.getpid(), signal.SIGINT)  # (the default action, now restored)


# A child forked by another thread while the main thread held SIGINT off inherited the
# noting handler with no held_off block left to restore it (only the forking thread goes
# on in the child): it ignored Ctrl-C for its whole life.  Its handler is put back.  (A
# fork from the main thread itself, inside a held_off block, continues that block in the
# child, which restores the handler as the parent does.)
def _note_forking_thread():
    _State.forking_from_main = threading.current_thread() is threading.main_thread()


def _restore_in_child():
    if _State.forking_from_main:
        return
    # (SIG_DFL is 0: a handler is told from None by identity)
    previous = _State.previous if _State.previous is not None else _State.users
    _State.depth, _State.previous, _State.caught = 0, None, None
    try:
        if previous is not None and signal.getsignal(signal.SIGINT) is _note:
            signal.signal(signal.SIGINT, previous)
    except (ValueError, TypeError, OSError):
        pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_note_forking_thread, after_in_child=_restore_in_child)
