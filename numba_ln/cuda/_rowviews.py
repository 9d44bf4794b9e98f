"""Row views of device arrays for the GPU kernels: (rows, cols) views with unit column
stride (numba_ln/_layout.Geometry gives the shapes), the gather/scatter copies for layouts
that have none, the outputs' buffers, and the launch shape of a (rows, cols) problem."""
import numpy as np

from .._layout import Geometry
from . import _arrays, _config
from ._copy import copy_grid, copy_kernel


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

class _Rows(Geometry):
    """x's shape and axes as (rows, cols) (numba_ln/_layout.Geometry), and row views of
    device arrays."""

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
        plan.inverse_perm = plan.inverse
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
        view = sh.transpose(self.rows.inverse_perm)
        return _arrays.numba_array(_arrays.view_like(buf, view, base))


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
    """(held, threads, groups, chunks, blocks) for a (rows, cols) problem, Python ints
    (settings may be NumPy integers: a shared or local array sized by one does not
    compile)."""
    held, threads, groups, chunks, blocks = _shape(rows, cols, vec, work)
    return held, int(threads), int(groups), int(chunks), int(blocks)


def _shape(rows, cols, vec, work):
    for name in ("NARROW_THREADS", "MIN_ROW_THREADS", "MAX_ROW_THREADS", "STREAM_THREADS"):
        n = getattr(_config, name)
        if not (isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n > 0
                and n & (n - 1) == 0):
            # (the row reductions halve the thread count: another one lost partial sums)
            raise ValueError(f"numba_ln.cuda._config.{name} must be a power of two, got {n!r}")
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


def _row_stride(d):
    return 0 if d is None else d.strides[0]


def _detach(v, writers, stream, in_place=True):
    """Kernel input view v as it is, unless an output the kernel writes in place overlaps it
    other than element for element (then a contiguous copy, made before the kernel runs);
    in_place False (weight and bias, read by every row): unless one overlaps it at all.
    Outputs written through a scatter are written after the kernel: no hazard."""
    if v is None:
        return None
    for w in writers:
        if w is None or w.d is None or w.scatter is not None:
            continue
        kv = w.kernel
        if not _arrays.overlap(v, kv):
            continue
        if in_place and kv.ptr == v.ptr and kv.strides == v.strides and kv.shape == v.shape:
            continue  # same elements: each is read before it is written, by the same thread
        _, dense = _arrays.empty(v.shape, v.dtype, stream)
        sh, base = _arrays.shadow(v)
        _gather(v, sh, base, dense, stream)
        return dense
    return v
