"""GPU arrays as the front handles them: no copies, no host synchronisation, few objects.

An input (anything with ``__cuda_array_interface__``: CuPy, detached torch CUDA tensors,
Numba device arrays) becomes a ``Dev`` record read straight from that interface: address
of element 0, shape, byte strides, dtype.  Kernels take addresses (numba_ln/cuda/_vector.py),
so no Numba array object is built for an input; results are Numba device arrays.  The
simulator's ``FakeCUDAArray`` (NumPy underneath) gives the same record with a host address,
and kernels get NumPy-backed fake arrays back.

Layout questions (can these axes be a (rows, cols) view?) are answered by NumPy on a
*shadow*: an array of the same shape and strides over a one-element buffer, never read.
The shadow's data pointer, minus the buffer's, is the view's byte offset on the device.
"""
import sys

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ._compat import SIMULATOR, cuda


class Dev:
    """A device array: address of element 0, shape, byte strides, dtype, read-only flag, and
    the object that owns the memory (kept alive by whatever holds the record)."""

    __slots__ = ("ptr", "shape", "strides", "dtype", "readonly", "owner", "contiguous")

    def __init__(self, ptr, shape, strides, dtype, readonly, owner, contiguous=None):
        self.ptr, self.shape, self.strides = ptr, shape, strides
        self.dtype, self.readonly, self.owner = dtype, readonly, owner
        self.contiguous = contiguous  # C-contiguous; None: not yet known

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        n = 1
        for k in self.shape:
            n *= k
        return n

    def view(self, byte_offset, shape, strides):
        return Dev(self.ptr + byte_offset, tuple(int(n) for n in shape),
                   tuple(int(s) for s in strides), self.dtype, self.readonly, self.owner)


def is_gpu_array(a):
    if isinstance(a, np.ndarray):
        return False
    return hasattr(a, "__cuda_array_interface__") or type(a).__name__ == "FakeCUDAArray"


def c_strides(shape, itemsize):
    strides = []
    step = itemsize
    for n in reversed(shape):
        strides.append(step)
        step *= max(n, 1)
    return tuple(reversed(strides))


def is_c_contiguous(d):
    if d.contiguous is None:
        expected = c_strides(d.shape, d.dtype.itemsize)
        d.contiguous = all(n <= 1 or s == e for n, s, e in zip(d.shape, d.strides, expected))
    return d.contiguous


def as_dev(a, name):
    """The Dev record of GPU array a (no copy, no sync)."""
    if SIMULATOR:
        if type(a).__name__ != "FakeCUDAArray":
            raise TypeError(f"{name} must be a simulator device array (numba.cuda.to_device) "
                            f"under NUMBA_ENABLE_CUDASIM=1, got {type(a).__name__}")
        h = a._ary
        _native(h.dtype, name)
        ptr = _aligned(h.__array_interface__["data"][0], h.shape, h.strides, h.dtype, name)
        return Dev(ptr, tuple(h.shape), tuple(h.strides), h.dtype, not h.flags.writeable, h)
    try:
        desc = a.__cuda_array_interface__
    except Exception as exc:  # e.g. torch: "Can't export tensors that require gradient"
        raise TypeError(f"{name} does not export __cuda_array_interface__: {exc}") from None
    if desc.get("mask") is not None:
        raise TypeError(f"{name} is a masked array; numba_ln does not support masks")
    shape = tuple(desc["shape"])
    dtype = _native(_dtype(desc["typestr"]), name)
    strides = desc.get("strides")
    contiguous = strides is None or None
    strides = c_strides(shape, dtype.itemsize) if strides is None else tuple(strides)
    ptr, readonly = desc["data"]
    ptr = _aligned(ptr or 0, shape, strides, dtype, name)
    return Dev(ptr, shape, strides, dtype, bool(readonly), a, contiguous)


def _aligned(ptr, shape, strides, dtype, name):
    """ptr, if the elements of the GPU array it starts lie on multiples of the item size:
    the kernels load whole aligned elements (a misaligned load faults on the GPU), and a
    stride of odd bytes was refused only after the launch, when another output had been
    written (cupy and the interface allow both)."""
    size = dtype.itemsize
    if dtype.kind not in "fiub":  # (bytes, text, records: the dtype check's TypeError)
        return ptr
    if 0 not in shape and (ptr % size or any(
            s % size for n, s in zip(shape, strides) if n > 1)):
        raise ValueError(f"{name} is a GPU array whose data pointer or strides (bytes: "
                         f"{tuple(strides)}) are not multiples of its item size ({size}): "
                         f"the GPU kernels load aligned elements; copy it into an aligned "
                         f"array first")
    return ptr


def _native(dtype, name):
    """dtype, if its byte order is the machine's: the kernels load native numbers, and a
    byte-swapped device array read as one gave garbage (its PTX was the same loads)."""
    if not dtype.isnative:
        raise TypeError(f"{name} is a GPU array of non-native byte order ({dtype.str}): the "
                        f"GPU kernels read native numbers; byte-swap it on the device first "
                        f"(e.g. cupy's a.astype(a.dtype.newbyteorder('=')))")
    return dtype


_DTYPES = {}  # typestr -> dtype (at most _DTYPES_KEPT: arrays of odd typestrs are refused)
_DTYPES_KEPT = 64


def _dtype(typestr):
    dtype = _DTYPES.get(typestr)
    if dtype is None:
        dtype = np.dtype(typestr)
        if len(_DTYPES) < _DTYPES_KEPT:
            _DTYPES[typestr] = dtype
    return dtype


def pointer(d):
    return d.ptr


class _Raw:
    """An ``__array_interface__`` holder: NumPy keeps it (and so ``base``) alive."""

    def __init__(self, iface, base):
        self.__array_interface__ = iface
        self.base = base


def _host_view(d):
    """Simulator: the NumPy array d describes."""
    iface = {"data": (d.ptr, d.readonly), "shape": d.shape, "strides": d.strides,
             "typestr": d.dtype.str, "version": 3}
    return np.asarray(_Raw(iface, d.owner))


def kernel_arg(d):
    """How a kernel receives d: its address (GPU) or a fake device array (simulator)."""
    if d is None:
        return 0
    return _fake(d) if SIMULATOR else d.ptr


def _fake(d):
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

    return FakeCUDAArray(_host_view(d))


def numba_array(d):
    """d as a Numba device array (results; arguments of the copy kernels)."""
    if SIMULATOR:
        return _fake(d)
    owner = d.owner
    if getattr(owner, "__cuda_ndarray__", False) and tuple(owner.shape) == d.shape \
            and tuple(owner.strides) == d.strides and owner.device_ctypes_pointer.value == d.ptr:
        return owner
    desc = {"data": (d.ptr, False), "shape": d.shape, "strides": d.strides,
            "typestr": d.dtype.str, "version": 2}
    return cuda.from_cuda_array_interface(desc, owner=owner, sync=False)


def shadow(d):
    """(shadow ndarray of d's shape/strides/dtype, its base address)."""
    base = np.empty(1, d.dtype)
    return as_strided(base, d.shape, d.strides), base.ctypes.data


def offset(view, base_address):
    return view.__array_interface__["data"][0] - base_address


def view_like(d, shadow_view, base_address):
    """The view of d that shadow_view is of d's shadow."""
    return d.view(offset(shadow_view, base_address), shadow_view.shape, shadow_view.strides)


def extent(d):
    """[lo, hi) byte range that d's elements occupy."""
    lo = hi = d.ptr
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


# -- allocation ------------------------------------------------------------------------------

_TORCH_DTYPES = ("float16", "float32", "float64")


def empty(shape, dtype, stream, like=None):
    """(Numba device array, its Dev) of a new C-contiguous array.

    Allocated from the producer's pool when x came from CuPy or torch (their caching
    allocators, stream-ordered); from Numba's memory manager otherwise (cuMemAlloc unless an
    EMM plugin such as RMM's is installed)."""
    shape = tuple(int(n) for n in shape)
    dtype = np.dtype(dtype)
    if not SIMULATOR and like is not None:
        top = type(like).__module__.partition(".")[0]
        owner = None
        if top == "cupy" and "cupy" in sys.modules:
            owner = sys.modules["cupy"].empty(shape, dtype)
        elif top == "torch" and "torch" in sys.modules and dtype.name in _TORCH_DTYPES:
            torch = sys.modules["torch"]
            owner = torch.empty(shape, dtype=getattr(torch, dtype.name), device=like.device)
        if owner is not None:
            d = as_dev(owner, "buffer")
            return numba_array(d), d
    if SIMULATOR:
        a = cuda.device_array(shape, dtype)
    else:
        a = cuda.device_array(shape, dtype, stream=stream)
    d = as_dev(a, "buffer")
    return a, d


def to_device(a, stream):
    """(Numba device array, Dev) holding a copy of host array a."""
    a = np.asarray(a, order="C")  # (ascontiguousarray would make a 0-d array 1-d)
    if not a.dtype.isnative:  # (a byte-swapped host residual: the kernels read native ones)
        a = a.astype(a.dtype.newbyteorder("="))
    obj = cuda.to_device(a) if SIMULATOR else cuda.to_device(a, stream=stream)
    return obj, as_dev(obj, "copy")


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
