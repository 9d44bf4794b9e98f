"""Ctrl-C while a kernel compiles or loads (numba_ln/cpu/_interrupts.py): delivered once the
kernel is in place, never inside Numba, and the process stays usable."""
import subprocess
import sys
import textwrap

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
def test_ctrl_c_while_a_kernel_loads_waits_for_it():
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(_CHILD)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["interrupted", "1", "ok"], (done.stdout, done.stderr[-3000:])
