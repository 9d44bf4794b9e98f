"""How the backward cuts rows into tasks: a function of the shape alone (never of the
thread count), from Python (backward.run_backward) and from compiled code
(small_backward, _njit) alike.  Each task has partial rows of dweight and dbias
(_partials.py), added in task order, so the results are the same for any thread count."""
from numba.extending import register_jitable

from .. import _config
from .._threading import even_tasks

# At most this many tasks, and at least TASK_MIN_ROWS rows a task: each task has partial
# rows of dweight/dbias (cols float64 + cols work type per parameter), which the final
# reduction reads once.  With TASK_ELEMENTS-sized tasks alone a (4096, 4096) float32 call
# would write 24 MiB of partials against 192 MiB of data, and rows of a million elements
# (one row a task) twice the data; 64 tasks keep the first at 2%, 8 rows a task the
# second at a quarter, and every thread still gets several tasks on the machines we
# target.  (Few, very long rows thus run on few threads: there is no split kernel.)
MAX_TASKS = 64
TASK_MIN_ROWS = 8


def task_rows(rows, cols):
    """Rows per task (``split_rows`` with the settings in _config)."""
    return split_rows(rows, cols, _config.TASK_ELEMENTS,
                      _config.SERIAL_MAX_ELEMENTS // _config.BACKWARD_COST)


@register_jitable
def split_rows(rows, cols, task_elements, serial_max):
    """Rows per task: about task_elements elements (whole rows, at least TASK_MIN_ROWS),
    at most MAX_TASKS tasks; two tasks where that would be one but the call runs in
    parallel (more than serial_max elements: _threading.runs_serial with BACKWARD_COST),
    so that a (96, 1024) call uses two threads; otherwise spread evenly over an even
    number of tasks (_threading.even_tasks).  A function of the shape only; from Python
    and from compiled code (small_backward.py, _njit) alike.  (max as conditional
    expressions: Numba's max is an overload, a compilation per kernel on first use.)

    Measured (2 threads, us, against torch's 63.2 and 61.8): (256, 768) 68.5 in tasks of
    85, 85, 85 and 1 rows, 57.4 in 8 tasks of 32 rows; (192, 1024) 63.3 in 3 tasks, 53.6
    in 4; (4096, 768) 49 -> 50 tasks, 873 -> 846.  More, shorter tasks cost more than
    they balance: each sums its first row on its own and clears, flushes and adds up
    partial rows of its own ((64, 1024) in 2 tasks 28.5 us, in 4 32.2, in 8 36.7)."""
    per_task = task_elements // cols
    if per_task < TASK_MIN_ROWS:
        per_task = TASK_MIN_ROWS
    if rows > per_task * MAX_TASKS:
        return -(-rows // MAX_TASKS)
    if rows <= per_task:  # (one task)
        if rows * cols <= serial_max:
            return per_task
        per_task = -(-rows // 2)
    per_task = even_tasks(rows, per_task)
    return per_task if per_task > TASK_MIN_ROWS else TASK_MIN_ROWS
