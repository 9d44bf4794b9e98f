"""GPU arrays as the kernels see them: Numba device arrays, without copies or host syncs.

Any object with ``__cuda_array_interface__`` (CuPy, detached torch CUDA tensors, Numba
device arrays) becomes a Numba ``DeviceNDArray`` view of the same memory with
``sync=False``: Numba would otherwise synchronize the producer's stream on every import.
The simulator's ``FakeCUDAArray`` (NumPy underneath) is used as it is.

Layout questions (can these axes be a (rows, cols) view?) are answered by NumPy on a
*shadow*: an array of the same shape and strides over a one-element buffer, never read.
The shadow's data pointer, minus the buffer's, is the view's byte offset on the device.
"""
import sys

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ._compat import SIMULATOR, cuda


def is_gpu_array(a):
    if isinstance(a, np.ndarray):
        return False
    return hasattr(a, "__cuda_array_interface__") or type(a).__name__ == "FakeCUDAArray"


def as_device(a, name):
    """A Numba device array (or the simulator's fake one) viewing a's memory."""
    if SIMULATOR:
        if type(a).__name__ == "FakeCUDAArray":
            return a
        raise TypeError(f"{name} must be a simulator device array (numba.cuda.to_device) under "
                        f"NUMBA_ENABLE_CUDASIM=1, got {type(a).__name__}")
    if getattr(a, "__cuda_ndarray__", False):  # Numba's own DeviceNDArray
        return a
    try:
        desc = a.__cuda_array_interface__
    except Exception as exc:  # e.g. torch: "Can't export tensors that require gradient"
        raise TypeError(f"{name} does not export __cuda_array_interface__: {exc}") from None
    return cuda.from_cuda_array_interface(desc, owner=a, sync=False)


def pointer(d):
    """Device address of element 0 (host address of the NumPy array under the simulator)."""
    if SIMULATOR:
        return d._ary.__array_interface__["data"][0]
    return d.__cuda_array_interface__["data"][0]


def read_only(a):
    if SIMULATOR:
        return not a._ary.flags.writeable
    desc = getattr(a, "__cuda_array_interface__", None)
    return bool(desc and desc["data"][1])


def shadow(d):
    """(shadow ndarray of d's shape/strides/dtype, its base address)."""
    base = np.empty(1, d.dtype)
    return as_strided(base, tuple(d.shape), tuple(d.strides)), base.ctypes.data


def offset(view, base_address):
    return view.__array_interface__["data"][0] - base_address


def extent(d):
    """[lo, hi) byte range that d's elements occupy."""
    lo = hi = pointer(d)
    for n, s in zip(d.shape, d.strides):
        if n == 0:
            return lo, lo
        if s < 0:
            lo += (n - 1) * s
        else:
            hi += (n - 1) * s
    return lo, hi + d.dtype.itemsize


def overlap(a, b):
    (alo, ahi), (blo, bhi) = extent(a), extent(b)
    return alo < bhi and blo < ahi


class _Raw:
    """An ``__array_interface__`` holder: NumPy keeps it (and so ``base``) alive."""

    def __init__(self, iface, base):
        self.__array_interface__ = iface
        self.base = base


def view(d, byte_offset, shape, strides):
    """A device array of the given shape and byte strides starting byte_offset past d[0...]."""
    shape, strides = tuple(int(n) for n in shape), tuple(int(s) for s in strides)
    if SIMULATOR:
        base = d._ary
        iface = {"data": (pointer(d) + byte_offset, not base.flags.writeable), "shape": shape,
                 "strides": strides, "typestr": base.dtype.str, "version": 3}
        return type(d)(np.asarray(_Raw(iface, base)))
    desc = {"data": (pointer(d) + byte_offset, False), "shape": shape, "strides": strides,
            "typestr": d.dtype.str, "version": 2}
    return cuda.from_cuda_array_interface(desc, owner=d, sync=False)


def view_like(d, shadow_view, base_address):
    """The device view of d that shadow_view is of d's shadow."""
    return view(d, offset(shadow_view, base_address), shadow_view.shape, shadow_view.strides)


def empty(shape, dtype, stream):
    if SIMULATOR:
        return cuda.device_array(shape, dtype)
    return cuda.device_array(shape, dtype, stream=stream)


def to_device(a, stream):
    a = np.ascontiguousarray(a)
    if SIMULATOR:
        return cuda.to_device(a)
    return cuda.to_device(a, stream=stream)


# -- streams ---------------------------------------------------------------------------------

_EXTERNAL = {}


def _stream_from_pointer(ptr):
    if ptr in (0, None):
        return cuda.default_stream()
    if ptr == 1:
        return getattr(cuda, "legacy_default_stream", cuda.default_stream)()
    if ptr == 2:
        return cuda.per_thread_default_stream()
    key = (ptr, id(cuda.current_context()))
    stream = _EXTERNAL.get(key)
    if stream is None:
        if len(_EXTERNAL) > 64:
            _EXTERNAL.clear()
        stream = _EXTERNAL[key] = cuda.external_stream(ptr)
    return stream


def producer_stream(a):
    """The stream on which a's producer orders its work now.

    CuPy arrays: CuPy's current stream; torch tensors: torch's current stream on the
    tensor's device; Numba device arrays: the stream they are bound to, else Numba's default
    stream; other producers: the ``stream`` their ``__cuda_array_interface__`` exports.
    cupy/torch are read through sys.modules only: never imported here.
    """
    if SIMULATOR:
        return 0
    top = type(a).__module__.partition(".")[0]
    if top == "cupy" and "cupy" in sys.modules:
        return _stream_from_pointer(sys.modules["cupy"].cuda.get_current_stream().ptr)
    if top == "torch" and "torch" in sys.modules:
        torch = sys.modules["torch"]
        return _stream_from_pointer(torch.cuda.current_stream(a.device).cuda_stream)
    if getattr(a, "__cuda_ndarray__", False):
        return a.stream or cuda.default_stream()
    return _stream_from_pointer(a.__cuda_array_interface__.get("stream"))


def device_index(a):
    """CUDA device ordinal of a CuPy array or torch tensor, else None (the current device)."""
    if SIMULATOR:
        return None
    top = type(a).__module__.partition(".")[0]
    if top == "cupy":
        return a.device.id
    if top == "torch":
        return a.device.index
    return None
