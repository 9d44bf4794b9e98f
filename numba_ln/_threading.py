"""Choose a threading layer that is safe for threads *and* for fork().

Numba's default on Linux is GNU OpenMP, and a process that forks after a parallel call
kills its child ("fork() called from a process already using GNU OpenMP"): that breaks
multiprocessing's default start method and preforking servers.  The workqueue layer aborts
when two Python threads launch parallel work at once.  TBB is safe for both, but pip's
``tbb`` wheel installs ``libtbb.so.12`` into the environment's ``lib/``, which the dynamic
loader does not search, so Numba reports TBB unavailable.  We load that library by path
(RTLD_GLOBAL) before the first parallel launch, and Numba's own choice then takes TBB:
its default order (``NUMBA_THREADING_LAYER_PRIORITY``) puts TBB first.  (numba_ln set
``numba.config.THREADING_LAYER = "tbb"`` itself until 2026-12-07, which overrode a
user's priority order.)

A layer or an order the user chose (``NUMBA_THREADING_LAYER``,
``NUMBA_THREADING_LAYER_PRIORITY``, or the same ``numba.config`` settings in code) is
Numba's to apply, and a parallel region that ran before numba_ln was imported keeps its
layer; the library is loaded in every case, so that a choice of tbb, or of safe,
threadsafe or forksafe, which prefer it, finds it.  Until Numba's threads have started,
and afterwards when the layer they run is not TBB, ``PARALLEL_LOCK`` serializes
numba_ln's own parallel launches across Python threads (workqueue would otherwise
abort): the layer is read where it is known, at the first launch, not at import, since
code may still set ``numba.config.THREADING_LAYER``.
"""
import ctypes
import glob
import os
import sys
import threading

import numba
from numba.extending import register_jitable

from . import _config

# Re-entrant: the thread that holds it may call again before its launch is under way -- a
# garbage collector's finalizer or a signal handler that runs while the launch's kernel is
# typed, loaded or compiled (a plain lock deadlocked there) -- never inside a parallel
# region, where no Python code runs.
PARALLEL_LOCK = threading.RLock()
_serialized = None  # whether launches need PARALLEL_LOCK: known once Numba's threads run
# the layers that take TBB when it loads (Numba's "safe", "threadsafe", "forksafe")
_TBB_CHOICES = ("tbb", "safe", "threadsafe", "forksafe")


def _load_tbb_library():
    """Load libtbb.so.12 from the environment's lib/ folder; True when TBB is importable."""
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix, sys.exec_prefix)):
        for path in sorted(glob.glob(os.path.join(prefix, "lib", "libtbb.so.12*"))):
            try:
                ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
                break
            except OSError:
                continue
    try:
        from numba.np.ufunc import tbbpool  # noqa: F401  (the check Numba itself makes)
    except ImportError:
        return False
    return True


def _parallel_already_started():
    from numba.np.ufunc import parallel

    return bool(getattr(parallel, "_is_initialized", False))


def configure():
    """Make TBB loadable for Numba's choice of a layer, unless an earlier parallel launch
    or the user's choice of a layer that never takes TBB decided already."""
    if _parallel_already_started():
        return
    # (NUMBA_THREADING_LAYER, or numba.config.THREADING_LAYER set in code before this
    # import: Numba's own setting, "default" unless chosen)
    choice = str(numba.config.THREADING_LAYER).strip().lower()
    if choice == "default" or choice in _TBB_CHOICES:
        _load_tbb_library()


def needs_lock():
    """True when concurrent parallel launches must be serialized: before Numba's threads
    start (the first launch: whichever layer it starts), and when the layer they run is
    not TBB."""
    global _serialized
    if _serialized is None:
        if not _parallel_already_started():
            return True
        _serialized = numba.threading_layer() != "tbb"
    return _serialized


# --- the one serial/parallel rule of every CPU launch ----------------------------------------
# Used by the forward (_engine: rows and channels), the backward (cpu/backward.py), dask's
# blocks (dask/_blocks.py), the conversions and copies (run_kernel: _half_backward.py,
# cpu/transpose.py) and, inlined for speed, the small-call gates (_small_front.py).

def runs_serial(elements, cost=1):
    """Whether a launch over this many elements runs serially in the calling thread:
    starting threads costs more than the work below SERIAL_MAX_ELEMENTS forward elements;
    ``cost`` is an element's work in those (_config.BACKWARD_COST for the backward).  A
    function of the shape only, never of the thread count, so neither are the results
    (a kernel's callers may add a shortcut that gives the same bits, e.g. one task, said
    where)."""
    return elements * cost <= _config.SERIAL_MAX_ELEMENTS


def rows_per_task(rows, cols):
    """Rows per parallel task of the row kernels: about TASK_ELEMENTS elements, spread
    evenly (even_tasks).  A function of the shape only (each row's output is the same
    whichever task computes it, tests/test_task_split.py).  Measured, layer_norm out=,
    float32, 2 threads, us: (400, 1024) 75.5 -> 54.8, (320, 1024) 52.5 -> 46.4, (1100,
    300) 75.4 -> 67.5, (4096, 768) 520 -> 507 (49 tasks -> 50)."""
    return even_tasks(rows, max(1, _config.TASK_ELEMENTS // cols))


@register_jitable
def even_tasks(rows, per_task):
    """Rows per task for tasks of about per_task rows: an even number of tasks (when more
    than one) with the rows spread evenly over them, so that two threads get equal shares
    -- tasks of TASK_ELEMENTS alone cut (256, 768) into 85, 85, 85 and 1 rows and (400,
    1024) into six of 64 and one of 16.  From Python (the forward) and from compiled code
    (the backward's cpu/_backward_tasks.split_rows) alike."""
    tasks = -(-rows // per_task)
    if tasks % 2 and tasks > 1:
        tasks += 1
    return -(-rows // tasks)


SPLIT = "split"


def row_launch(rows, cols, cost=1):
    """How the forward's row kernels run a call: None (serially, rows_block), SPLIT (a
    few rows longer than PIECE: rows_split) or the rows per task of rows_parallel.  The
    general path (_engine.run_rows) and the fused small-call gate both ask this."""
    if runs_serial(rows * cols, cost):
        return None
    if rows < _config.SPLIT_MAX_ROWS and cols > _config.PIECE:
        return SPLIT
    return rows_per_task(rows, cols)


def run_kernel(serial, parallel, elements, *args):
    """serial(*args) in this thread for a call below the serial bound (runs_serial), else
    the parallel kernel through launch: for kernels over flat elements (conversions,
    copies), whose results are the same either way."""
    if runs_serial(elements):
        serial(*args)
    else:
        launch(parallel, *args)


def launch(kernel, *args):
    """Run a parallel kernel, one launch at a time when the layer needs it."""
    if needs_lock():
        with PARALLEL_LOCK:
            return kernel(*args)
    return kernel(*args)


def _fresh_lock_in_child():
    """A forked child's own lock: the parent's may have been held by another thread (in a
    launch), which the child does not have, and its first parallel call hung for ever."""
    global PARALLEL_LOCK
    PARALLEL_LOCK = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_fresh_lock_in_child)
configure()
