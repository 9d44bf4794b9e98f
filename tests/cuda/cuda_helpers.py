"""Shared by the tests in tests/cuda/: where they can run, launch sizes, device copies."""
import numpy as np

try:
    from numba_ln.cuda import _arrays, _front
    from numba_ln.cuda._compat import SIMULATOR, cuda
    IMPORT_ERROR = None
except Exception as exc:  # numba.cuda missing or broken: every test here is skipped
    SIMULATOR = False
    IMPORT_ERROR = f"numba.cuda cannot be imported: {exc!r}"


def _gpu_present():
    if IMPORT_ERROR or SIMULATOR:
        return False
    try:
        return bool(cuda.is_available())
    except Exception:
        return False


GPU = _gpu_present()
RUN = SIMULATOR or GPU
REASON = IMPORT_ERROR or ("no CUDA GPU here and NUMBA_ENABLE_CUDASIM is not set; "
                          "tests/test_cuda_sim.py runs these under the simulator")

# Launch sizes small enough that tiny shapes reach every kernel path.  The simulator runs
# each thread as a Python thread: blocks of at most 8 keep a launch at ~0.05 s.  On a GPU,
# 32-thread rows with several warps per block exercise the shuffle paths.
SIM_CONFIG = dict(NARROW_THREADS=4, ROWS_PER_BLOCK=2, MAX_ITEMS=8, TARGET_ITEMS=4,
                  MIN_ROW_THREADS=4, MAX_ROW_THREADS=8, STREAM_THREADS=8)
GPU_CONFIG = dict(NARROW_THREADS=32, ROWS_PER_BLOCK=2, MAX_ITEMS=8, TARGET_ITEMS=4,
                  MIN_ROW_THREADS=64, MAX_ROW_THREADS=64, STREAM_THREADS=64)
SMALL_CONFIG = SIM_CONFIG if SIMULATOR else GPU_CONFIG

# Row lengths that reach each kernel under SMALL_CONFIG: (vectorizable, scalar-only).
PATH_COLS = {
    "narrow": (8, 7) if SIMULATOR else (256, 200),
    "wide": (48, 45) if SIMULATOR else (512, 500),
    "stream": (256, 203) if SIMULATOR else (1024, 1001),
}

# float32 result vs the float64 oracle: |y - ref| <= ATOL * max(scale, |ref|) (the issue's
# 2e-6); float16 results are rounded to 11 bits; float64 as on the CPU.
ATOL = {np.dtype(np.float16): 2e-3, np.dtype(np.float32): 2e-6, np.dtype(np.float64): 1e-12}


def fix_simulator_shared_arrays():
    """Make the simulator's ``cuda.shared.array`` thread-safe.

    It finds a block's array by the calling line in a dict, check-then-insert without a
    lock: two threads arriving together each get an array of their own, and the block's
    reduction silently reads the other one (seen as wrong sums and NaN variances once the
    thread switch interval is short).  This is the same lookup under a lock.
    """
    import sys
    import threading

    from numba.cuda.simulator import kernelapi

    original = kernelapi.FakeCUDAShared.array
    if getattr(original, "_numba_ln_locked", False):
        return
    lock = threading.Lock()

    def array(self, shape, dtype, alignment=None):
        if shape == 0 or alignment is not None:
            return original(self, shape, dtype, alignment)
        frame = sys._getframe(1)
        caller = (frame.f_code.co_filename, frame.f_lineno)
        with lock:
            res = self._allocations.get(caller)
            if res is None:
                res = self._allocations[caller] = np.empty(shape, np.dtype(dtype))
        return res

    array._numba_ln_locked = True
    kernelapi.FakeCUDAShared.array = array


def dev(a):
    """A C-contiguous device copy of host array a."""
    return cuda.to_device(np.asarray(a, order="C"))


def strided(host, make_view):
    """A device array laid out as make_view(host) is over host: the base is copied to the
    device and the same view taken there (for layouts device slicing cannot make)."""
    base = _arrays.as_dev(dev(host), "base")
    sh, address = _arrays.shadow(base)
    return _arrays.numba_array(_arrays.view_like(base, make_view(sh), address))


def to_host(a):
    """Host copy of any device array (views of any layout included)."""
    if not np.dtype(a.dtype).isnative:  # (a test's byte-swapped input, which as_dev refuses)
        return a.copy_to_host()
    d = _arrays.as_dev(a, "a")
    if d.size == 0:
        return np.empty(d.shape, d.dtype)
    if _arrays.is_c_contiguous(d):
        return _arrays.numba_array(d).copy_to_host()
    obj, dense = _arrays.empty(d.shape, d.dtype, 0)
    sh, address = _arrays.shadow(d)
    _front._gather(d, sh, address, dense, 0)
    return obj.copy_to_host()


def assert_close(actual, expected, dtype=None, scale=1.0, atol=None):
    actual = to_host(actual) if not isinstance(actual, np.ndarray) else actual
    dtype = np.dtype(dtype or actual.dtype)
    assert actual.dtype == dtype, f"dtype {actual.dtype}, expected {dtype}"
    assert actual.shape == np.shape(expected), f"shape {actual.shape} vs {np.shape(expected)}"
    expected = np.asarray(expected, dtype=np.float64)
    bound = (atol or ATOL[dtype]) * np.maximum(scale, np.abs(expected))
    err = np.abs(actual.astype(np.float64) - expected)
    both_nan = np.isnan(actual) & np.isnan(expected)
    bad = ~((err <= bound) | both_nan)
    assert not bad.any(), (f"max error {np.nanmax(np.where(both_nan, 0, err))} at "
                           f"{np.argwhere(bad)[:3].tolist()}")
    return float(np.nanmax(np.where(both_nan, 0, err), initial=0.0))
