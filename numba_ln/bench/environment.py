"""The machine and versions a report was measured with (CPU, threads, threading layer,
the kernels' vector width, library versions, load average)."""
import os
import platform

import numba
import numpy as np

import numba_ln
from numba_ln import _config

from .base import missing
from .lines import prange_copy


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def version(module):
    """The installed version of ``module``, or None when it is not installed."""
    if missing(module):
        return None
    try:
        from importlib.metadata import version as dist_version

        return dist_version(module)
    except Exception:
        return "installed"


def load_average():
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def threading_layer():
    try:
        return numba.threading_layer()
    except ValueError:  # no parallel region has run yet
        prange_copy(np.empty(1, np.uint32), np.empty(1, np.uint32))  # float32 line's types
        return numba.threading_layer()


def environment(threads):
    return {
        "load_average": load_average(),
        "numba_ln": numba_ln.__version__,
        "numba": numba.__version__,
        "numpy": np.__version__,
        "torch": version("torch"),
        "onnxruntime": version("onnxruntime"),
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "threads": threads,
        "threading_layer": threading_layer(),
        # (NUMBA_LN_VECTOR_BITS; None: LLVM's choice for the CPU)
        "vector_bits": _config.PREFERRED_VECTOR_BITS,
        "stream_min_bytes": _config.STREAM_MIN_BYTES,
        "platform": platform.platform(),
        "NUMBA_NUM_THREADS": numba.config.NUMBA_NUM_THREADS,
    }
