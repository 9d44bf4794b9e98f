"""Start-up cost: new Python processes with a warm Numba cache, ``import numba_ln`` and the
first calls, against ``python -c "import numba"``.

The scripts are shared with ``benchmarks/bench_compile.py``.  Nothing runs at import.
"""
import os
import subprocess
import sys
import time

import numpy as np

import numba_ln

# What a new process pays before its first results: import numba_ln, then the first call
# of each public function on a small input (serial path) and a 256 x 1024 input (parallel
# path), which loads every kernel those paths use from Numba's cache (or compiles it).
FIRST_CALLS_SCRIPT = """\
import time
t0 = time.perf_counter()
import numpy as np
import numba_ln
t1 = time.perf_counter()
for shape in ((8, 768), (256, 1024)):
    x = np.ones(shape, np.float32)
    x[:, ::3] = 2.0
    w = np.ones(shape[-1], np.float32)
    numba_ln.layer_norm(x, w, w)
    numba_ln.rms_norm(x, w)
    numba_ln.add_layer_norm(x, x, w, w)
    numba_ln.add_rms_norm(x, x, w)
t2 = time.perf_counter()
print("IMPORT_S", t1 - t0, "FIRST_CALLS_S", t2 - t1)
"""
# One first call (layer_norm, serial path): the short cold-compile check of the normal,
# benchmark-disabled test run.
FIRST_CALL_SMALL_SCRIPT = """\
import time
t0 = time.perf_counter()
import numpy as np
import numba_ln
t1 = time.perf_counter()
numba_ln.layer_norm(np.arange(6.0, dtype=np.float32).reshape(2, 3))
t2 = time.perf_counter()
print("IMPORT_S", t1 - t0, "FIRST_CALLS_S", t2 - t1)
"""
BASELINE_SCRIPT = "import numba"


def _project_env(cache_dir=None):
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(numba_ln.__file__)))
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = str(cache_dir)
    return env


def run_script(script, cache_dir=None, timeout=300):
    """Run ``python -c script`` in a fresh process: (wall seconds, {key: float} it printed).

    >>> wall, parsed = run_script("print('ANSWER', 42)")
    >>> wall > 0, parsed
    (True, {'ANSWER': 42.0})
    """
    env = _project_env(cache_dir)
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=timeout)
    wall = time.perf_counter() - t
    if done.returncode != 0:
        raise RuntimeError(f"subprocess failed ({done.returncode}):\n{done.stderr[-2000:]}")
    words = done.stdout.split()
    parsed = {}
    for key, value in zip(words[::2], words[1::2]):
        try:
            parsed[key] = float(value)
        except ValueError:
            pass
    return wall, parsed


def startup_overhead(repeats=5, progress=None):
    """Warm-cache start-up cost of numba_ln over ``python -c "import numba"``.

    One untimed priming run fills the cache (the user's normal cache location), then
    ``repeats`` interleaved pairs.  Returns a dict of medians (seconds).
    """
    run_script(FIRST_CALLS_SCRIPT)
    base, ours, inner = [], [], []
    for i in range(repeats):
        if progress:
            progress(f"start-up: run {i + 1}/{repeats}")
        base.append(run_script(BASELINE_SCRIPT)[0])
        wall, parsed = run_script(FIRST_CALLS_SCRIPT)
        ours.append(wall)
        inner.append(parsed)
    return {
        "import_numba_s": float(np.median(base)),
        "numba_ln_first_calls_s": float(np.median(ours)),
        "overhead_s": float(np.median(np.subtract(ours, base))),
        "in_process_import_s": float(np.median([p.get("IMPORT_S", np.nan) for p in inner])),
        "in_process_first_calls_s": float(np.median([p.get("FIRST_CALLS_S", np.nan)
                                                     for p in inner])),
        "repeats": repeats,
    }
