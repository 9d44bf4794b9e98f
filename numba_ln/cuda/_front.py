"""The GPU front: the CPU front's rules (numba_ln/_validate.py) applied to device arrays,
then a plan (which row views, which kernel variant, which launch) and the launches.

No host synchronisation: arrays are read through ``__cuda_array_interface__`` without
touching their streams, and every launch goes on the producer's current stream
(numba_ln/cuda/_arrays.py).  Host weight/bias (and a host residual) are copied to the device
on that stream.  The common call (trailing axes of C-contiguous arrays, device weight and
bias) builds no NumPy shadow and no Numba array: about 25 us of Python on the 2-core
development machine before the launch.
"""
import math

import numpy as np

from .. import _validate
from . import _arrays, _config
from ._compat import SIMULATOR, cuda
from ._kernels import STATS_RSTD, copy_grid, copy_kernel, row_kernel

SUPPORTED = "float16, float32, float64, integer and bool arrays"
_F16 = np.dtype(np.float16)
_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)


# -- dtype rules ---------------------------------------------------------------------------

def result_dtype(dtype, name="x"):
    """The CPU rule (float32 -> float32; float64, integers, bools -> float64) plus
    float16 -> float16, which the GPU computes in float32."""
    dtype = np.dtype(dtype)
    if dtype == _F16:
        return dtype
    try:
        return _validate.result_dtype(dtype, name)
    except TypeError:
        raise TypeError(f"{name} has dtype {dtype}, which numba_ln does not support on the "
                        f"GPU; supported: {SUPPORTED}") from None


def work_dtype(dtype):
    """Arithmetic and weight/bias dtype: float32 for float16/float32 results, else float64."""
    return _F64 if dtype == _F64 else _F32


def _check_kind(dtype, name):
    if dtype.kind not in "fiub" or dtype.itemsize > 8:
        raise TypeError(f"{name} has dtype {dtype}, which numba_ln does not support; "
                        f"supported: {SUPPORTED}")


# -- arguments -----------------------------------------------------------------------------

def _device_input(a, name, stream):
    """Dev of a GPU array as it is, or of a device copy of a host array."""
    if _arrays.is_gpu_array(a):
        return _arrays.as_dev(a, name)
    host = _validate.as_array(a, name)
    _check_kind(host.dtype, name)
    return _arrays.to_device(host, stream)[1]


def _output(a, name, shape, dtype):
    if not _arrays.is_gpu_array(a):
        raise TypeError(f"{name} must be a GPU array when x is one (a device array, CuPy array "
                        f"or CUDA tensor), got {type(a).__module__}.{type(a).__name__}")
    d = _arrays.as_dev(a, name)
    if d.shape != tuple(shape):
        raise ValueError(f"{name} has shape {d.shape}, expected {tuple(shape)}")
    if d.dtype != dtype:
        raise TypeError(f"{name} has dtype {d.dtype}, expected {dtype}")
    if d.readonly:
        raise ValueError(f"{name} is read-only")
    return d


def _param(p, name, norm_shape, dtype, stream):
    """weight/bias -> contiguous (1, cols) Dev in the work dtype: host ones via the CPU's
    prepare_param and a copy, device ones in place when they already are that, else through
    the gather kernel (broadcasts, other dtypes)."""
    if p is None:
        return None
    cols = math.prod(norm_shape)
    if not _arrays.is_gpu_array(p):
        host = _validate.prepare_param(p, name, norm_shape, dtype)
        return _arrays.to_device(host.reshape(1, cols), stream)[1]
    d = _arrays.as_dev(p, name)
    if d.dtype == dtype and d.size == cols and d.shape[-1:] == norm_shape[-1:] \
            and len(d.shape) <= len(norm_shape) and _arrays.is_c_contiguous(d) \
            and d.shape == tuple(norm_shape)[len(norm_shape) - len(d.shape):]:
        item = dtype.itemsize
        return d.view(0, (1, cols), (cols * item, item))  # the common case, without NumPy
    if d.dtype.kind not in "fiub" or d.dtype.itemsize > 8:
        raise TypeError(f"{name} has dtype {d.dtype}; it must be real (float, int or bool)")
    try:
        if np.broadcast_shapes(d.shape, norm_shape) != tuple(norm_shape):
            raise ValueError
    except ValueError:
        raise ValueError(f"{name} of shape {d.shape} does not broadcast to the "
                         f"normalized shape {tuple(norm_shape)}") from None
    sh, base = _arrays.shadow(d)
    full = np.broadcast_to(sh, norm_shape)
    if d.dtype == dtype and full.flags.c_contiguous:
        return _arrays.view_like(d, full.reshape(1, cols), base)
    _, dense = _arrays.empty((1, cols), dtype, stream)
    _gather(d, full, base, dense, stream)
    return dense


# -- copies (layouts with no row view) ---------------------------------------------------------

def _flat(d, shadow_view, base):
    """(1-D Numba array over every element shadow_view reaches, element strides, start)."""
    item = d.dtype.itemsize
    at = _arrays.offset(shadow_view, base)
    lo = hi = at
    strides = []
    for n, s in zip(shadow_view.shape, shadow_view.strides):
        if s % item:
            raise ValueError(f"strides {shadow_view.strides} are not multiples of the item size")
        strides.append(s // item)
        if n and s < 0:
            lo += (n - 1) * s
        elif n:
            hi += (n - 1) * s
    span = (hi - lo) // item + 1
    flat = _arrays.numba_array(d.view(lo, (span,), (item,)))
    return flat, tuple(strides), (at - lo) // item


def _copy(d, shadow_view, base, dense, stream, scatter):
    size = shadow_view.size
    if size == 0:
        return
    flat, strides, start = _flat(d, shadow_view, base)
    blocks, threads = copy_grid(size)
    kernel = copy_kernel(shadow_view.ndim, scatter, threads)
    dense_flat = _arrays.numba_array(dense.view(0, (size,), (dense.dtype.itemsize,)))
    kernel[blocks, threads, stream](flat, dense_flat, tuple(shadow_view.shape), strides, start)


def _gather(d, shadow_view, base, dense, stream):
    """dense (a contiguous Dev of shadow_view's size) <- the elements of d shadow_view shows."""
    _copy(d, shadow_view, base, dense, stream, scatter=False)


def _scatter(dense, d, shadow_view, base, stream):
    """The elements of d that shadow_view shows <- dense (contiguous)."""
    _copy(d, shadow_view, base, dense, stream, scatter=True)


# -- plans -------------------------------------------------------------------------------------

class _Rows:
    """x's shape and axes as (rows, cols): the permutation and the shapes that go with it."""

    def __init__(self, shape, axes):
        self.shape = shape
        self.axes = axes
        self.batch = tuple(a for a in range(len(shape)) if a not in axes)
        self.perm = self.batch + axes
        self.trailing = self.perm == tuple(range(len(shape)))
        self.norm_shape = tuple(shape[a] for a in axes)
        self.cols = math.prod(self.norm_shape)
        self.rows = math.prod(shape[a] for a in self.batch)
        self.inverse = tuple(int(i) for i in np.argsort(self.perm))

    def stats_shape(self):
        return tuple(1 if a in self.axes else n for a, n in enumerate(self.shape))

    def row_view(self, d, sh=None, base=None):
        """The (rows, cols) view of d with unit column stride, or None."""
        item = d.dtype.itemsize
        if sh is None and self.trailing and _arrays.is_c_contiguous(d):  # the common case
            return d.view(0, (self.rows, self.cols), (self.cols * item, item))
        if sh is None:
            sh, base = _arrays.shadow(d)
        try:
            v = sh.transpose(self.perm).reshape((self.rows, self.cols), copy=False)
        except ValueError:
            return None
        if (self.cols > 1 and v.strides[1] != item) or v.strides[0] % item:
            return None
        return _arrays.view_like(d, v, base)


_PLANS = {}


def _rows_plan(shape, axes):
    """_Rows(shape, axes), remembered: a training loop calls with the same shapes."""
    key = (shape, axes)
    plan = _PLANS.get(key)
    if plan is None:
        if len(_PLANS) > 256:
            _PLANS.clear()
        plan = _PLANS[key] = _Rows(shape, axes)
    return plan


def _rows_input(d, rows, stream, shape=None):
    """(rows, cols) view of input d (broadcast to shape first), copied only when no view
    with unit column stride exists."""
    if shape is None or d.shape == tuple(shape):
        v = rows.row_view(d)
        if v is not None:
            return v
    sh, base = _arrays.shadow(d)
    if shape is not None and tuple(sh.shape) != tuple(shape):
        sh = np.broadcast_to(sh, shape)
        v = rows.row_view(d, sh, base)
        if v is not None:
            return v
    _, dense = _arrays.empty((rows.rows, rows.cols), d.dtype, stream)
    _gather(d, sh.transpose(rows.perm), base, dense, stream)
    return dense


class _Output:
    """Where a kernel writes an x-shaped result: straight into out's (rows, cols) view, or a
    contiguous buffer in row order that is scattered into out afterwards, or (no out) a new
    array whose row view is contiguous, returned in x's shape."""

    def __init__(self, out_obj, d, rows, dtype, stream, like):
        self.obj, self.d, self.rows, self.stream = out_obj, d, rows, stream
        self.scatter = None
        if d is not None:
            v = rows.row_view(d)
            if v is not None:
                self.kernel = v
                return
            sh, base = _arrays.shadow(d)
            self.scatter = (sh.transpose(rows.perm), base)
        permuted = tuple(rows.shape[a] for a in rows.perm)
        self.buffer, buf = _arrays.empty(permuted, dtype, stream, like)
        item = dtype.itemsize
        self.kernel = buf.view(0, (rows.rows, rows.cols), (rows.cols * item, item))

    def result(self):
        if self.d is not None:
            if self.scatter is not None:
                _scatter(self.kernel, self.d, *self.scatter, self.stream)
            return self.obj
        if self.rows.trailing:
            return self.buffer
        buf = _arrays.as_dev(self.buffer, "buffer")
        sh, base = _arrays.shadow(buf)
        return _arrays.numba_array(_arrays.view_like(buf, sh.transpose(self.rows.inverse), base))


def _pow2(n):
    return 1 << max(0, int(n) - 1).bit_length()


def _vector_width(arrays, cols):
    """16 bytes' worth of elements when every row array allows it, else 1."""
    if not _config.VECTOR_IO or any(a.dtype.kind != "f" for a in arrays):
        return 1
    vec = 16 // max(a.dtype.itemsize for a in arrays)
    if cols % vec:
        return 1
    for a in arrays:
        item = a.dtype.itemsize
        if a.ptr % (vec * item) or (a.shape[0] > 1 and a.strides[0] % (vec * item)):
            return 1
    return vec


def _shape_kernel(rows, cols, vec, work):
    """(held, threads, groups, chunks, blocks) for a (rows, cols) problem."""
    words = work.itemsize // 4
    g = _config.NARROW_THREADS
    chunks = _pow2(-(-cols // (g * vec)))
    if chunks * vec * words <= _config.MAX_ITEMS:
        groups = _config.ROWS_PER_BLOCK
        blocks = min(-(-rows // groups), _config.MAX_BLOCKS)
        return True, g, groups, chunks, blocks
    g = _pow2(-(-cols // _config.TARGET_ITEMS))
    g = max(_config.MIN_ROW_THREADS, min(_config.MAX_ROW_THREADS, g))
    chunks = _pow2(-(-cols // (g * vec)))
    blocks = min(rows, _config.MAX_BLOCKS)
    if chunks * vec * words <= _config.MAX_ITEMS:
        return True, g, 1, chunks, blocks
    return False, _config.STREAM_THREADS, 1, 1, blocks


# -- the call ----------------------------------------------------------------------------------

def run(x, residual, weight, bias, axis, eps, out, residual_out, *, centered, stats, want_y):
    """Validate, plan and launch.  Returns (y, s, st1, st2): y/s as given back to the
    caller, st1/st2 per-row statistics in keepdims shape (or None)."""
    index = _arrays.device_index(x)
    if index is not None and index != cuda.get_current_device().id:
        with cuda.gpus[index]:
            return _run(x, residual, weight, bias, axis, eps, out, residual_out,
                        centered=centered, stats=stats, want_y=want_y)
    return _run(x, residual, weight, bias, axis, eps, out, residual_out, centered=centered,
                stats=stats, want_y=want_y)


def _run(x, residual, weight, bias, axis, eps, out, residual_out, *, centered, stats, want_y):
    xd = _arrays.as_dev(x, "x")
    _check_kind(xd.dtype, "x")
    shape = xd.shape
    stream = _arrays.producer_stream(x)
    rd = None
    if residual is not None:
        rd = _device_input(residual, "residual", stream)
        try:
            ok = np.broadcast_shapes(rd.shape, shape) == shape
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"residual of shape {rd.shape} does not broadcast to x's "
                             f"shape {shape}")
    axes = _validate.normalize_axes(axis, len(shape))
    eps = _validate.check_eps(eps)
    dtype = result_dtype(xd.dtype if rd is None else np.result_type(xd.dtype, rd.dtype))
    work = work_dtype(dtype)
    od = _output(out, "out", shape, dtype) if out is not None else None
    sd = None
    if residual_out is not None:
        sd = _output(residual_out, "residual_out", shape, dtype)
        if od is not None and _arrays.overlap(od, sd):
            raise ValueError("out and residual_out must not overlap")
    rows = _rows_plan(shape, axes)
    w = _param(weight, "weight", rows.norm_shape, work, stream)
    b = _param(bias, "bias", rows.norm_shape, work, stream)
    if 0 in rows.norm_shape:
        raise ValueError(f"the normalized shape {rows.norm_shape} has no elements (axis={axes})")

    if rows.rows == 0:
        y = s = st1 = st2 = None
        if want_y:
            y = out if od is not None else _arrays.empty(shape, dtype, stream, x)[0]
        if rd is not None:
            s = residual_out if sd is not None else _arrays.empty(shape, dtype, stream, x)[0]
        if stats:
            st1 = _arrays.empty(rows.stats_shape(), work, stream, x)[0]
            st2 = _arrays.empty(rows.stats_shape(), work, stream, x)[0]
        return y, s, st1, st2

    x2 = _rows_input(xd, rows, stream)
    r2 = _rows_input(rd, rows, stream, shape) if rd is not None else None
    yo = _Output(out, od, rows, dtype, stream, x) if want_y else None
    so = _Output(residual_out, sd, rows, dtype, stream, x) if rd is not None else None
    x2 = _detach(x2, (yo, so), stream)
    if r2 is not None:
        r2 = _detach(r2, (yo, so), stream)

    st1 = st2 = st1d = st2d = None
    if stats:
        st1, st1d = _arrays.empty((rows.rows,), work, stream, x)
        if stats != STATS_RSTD:
            st2, st2d = _arrays.empty((rows.rows,), work, stream, x)

    row_arrays = [a for a in (x2, r2, yo and yo.kernel, so and so.kernel) if a is not None]
    vec = _vector_width(row_arrays + [p for p in (w, b) if p is not None], rows.cols)
    held, threads, groups, chunks, blocks = _shape_kernel(rows.rows, rows.cols, vec, work)
    kernel = row_kernel(held=held, threads=threads, groups=groups, chunks=chunks, vec=vec,
                        acc=work, out=dtype, x=x2.dtype, r=None if r2 is None else r2.dtype,
                        centered=centered, has_r=r2 is not None, has_w=w is not None,
                        has_b=b is not None, want_y=want_y, stats=stats,
                        shuffle=_config.USE_SHUFFLE and not SIMULATOR)
    arg = _arrays.kernel_arg
    yk = yo.kernel if yo else None
    sk = so.kernel if so else None
    kernel[blocks, threads * groups, stream](
        arg(yk), _row_stride(yk), arg(sk), _row_stride(sk), arg(x2), _row_stride(x2),
        arg(r2), _row_stride(r2), arg(w), arg(b), arg(st1d), arg(st2d),
        rows.rows, rows.cols, work.type(eps))

    y = yo.result() if yo else None
    s = so.result() if so else None
    keep = rows.stats_shape()
    st1 = st1.reshape(keep) if st1 is not None else None
    st2 = st2.reshape(keep) if st2 is not None else None
    return y, s, st1, st2


def _row_stride(d):
    return 0 if d is None else d.strides[0]


def _detach(v, writers, stream):
    """Kernel input view v as it is, unless an output the kernel writes in place overlaps it
    other than element for element (then a contiguous copy, made before the kernel runs).
    Outputs written through a scatter are written after the kernel: no hazard."""
    for w in writers:
        if w is None or w.d is None or w.scatter is not None:
            continue
        kv = w.kernel
        if not _arrays.overlap(v, kv):
            continue
        if kv.ptr == v.ptr and kv.strides == v.strides and kv.shape == v.shape:
            continue  # same elements: each is read before it is written, by the same thread
        _, dense = _arrays.empty(v.shape, v.dtype, stream)
        sh, base = _arrays.shadow(v)
        _gather(v, sh, base, dense, stream)
        return dense
    return v
