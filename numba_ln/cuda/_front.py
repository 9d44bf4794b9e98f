"""The GPU backend: a call on device arrays, validated by the call spec (numba_ln/_spec.py,
the CPU's rules and messages) through the device-array adapter below, then a plan (which
row views, which kernel configuration, which launch) and the launches.

No host synchronisation: arrays are read through ``__cuda_array_interface__`` without
touching their streams, and every launch goes on the producer's current stream
(numba_ln/cuda/_arrays.py).  Host weight/bias (and a host residual) are copied to the device
on that stream.  The common call (trailing axes of C-contiguous arrays, device weight and
bias) builds no NumPy shadow and no Numba array.
"""
import numpy as np

from .. import _dtypes, _spec, _validate
from .._variants import STATS_MEAN_VAR, STATS_NONE, STATS_RSTD
from . import _arrays, _config
from ._compat import SIMULATOR, cuda
from ._compile import row_kernel
from ._rowviews import (_detach, _gather, _Output, _row_stride, _rows_input, _rows_plan,
                        _shape_kernel, _vector_width)


class _DeviceArrays:
    """The spec's array adapter for GPU arrays (see numba_ln/_spec.py).  Inputs become Dev
    records; a host residual is copied to the device on x's producer's stream; host
    weight/bias stay on the host until param() copies them, converted."""

    name = "cuda"

    def __init__(self):
        self.stream = None

    def input(self, a, name):
        if name == "x":
            d = _arrays.as_dev(a, "x")
            self.stream = _arrays.producer_stream(a)
            return d
        if _arrays.is_gpu_array(a):
            d = _arrays.as_dev(a, name)
            # refused as x is (only the simulator's arrays can be bfloat16: a real GPU
            # array's interface has no bfloat16 typestr)
            if _dtypes.is_bfloat16(d.dtype):
                _dtypes.result_dtype(d.dtype, name, "cuda")
            return d
        host = _validate.as_array(a, name)
        if name in ("weight", "bias"):
            return host  # converted on the host (param): bfloat16 ones too
        native = _dtypes.native(host.dtype)  # (a byte-swapped one: to_device swaps it)
        if _dtypes.is_bfloat16(native):  # no bfloat16 loads in the GPU kernels
            _dtypes.result_dtype(native, name, "cuda")
        return _arrays.to_device(host, self.stream)[1]

    @staticmethod
    def output(a, name):
        if not _arrays.is_gpu_array(a):
            raise TypeError(f"{name} must be a GPU array when x is one (a device array, CuPy "
                            f"array or CUDA tensor), got {type(a).__module__}."
                            f"{type(a).__name__}")
        return _arrays.as_dev(a, name)

    @staticmethod
    def readonly(d):
        return d.readonly

    overlap = staticmethod(_arrays.overlap)

    def param(self, p, name, norm_shape, dtype):
        """weight/bias -> contiguous (1, cols) Dev in the work dtype: host ones via the CPU's
        prepare_param and a copy, device ones in place when they already are that, else
        through the gather kernel (broadcasts, other dtypes)."""
        cols = int(np.prod(norm_shape))
        if isinstance(p, np.ndarray):
            host = _validate.prepare_param(p, name, norm_shape, dtype)
            return _arrays.to_device(host.reshape(1, cols), self.stream)[1]
        d = p
        if d.dtype == dtype and d.size == cols and _arrays.is_c_contiguous(d) \
                and d.shape == tuple(norm_shape)[len(norm_shape) - len(d.shape):]:
            item = dtype.itemsize
            return d.view(0, (1, cols), (cols * item, item))  # the common case, without NumPy
        sh, base = _arrays.shadow(d)
        full = np.broadcast_to(sh, norm_shape)
        if d.dtype == dtype and full.flags.c_contiguous:
            return _arrays.view_like(d, full.reshape(1, cols), base)
        _, dense = _arrays.empty((1, cols), dtype, self.stream)
        _gather(d, full, base, dense, self.stream)
        return dense


# -- the call ----------------------------------------------------------------------------------

def run(variant, x, residual, weight, bias, axis, eps, out, residual_out, return_stats,
        keepdims=True):
    """One public call on the GPU (the backend entry point, see numba_ln/_backends.py):
    validate, launch on the device of x, and return what the public function returns."""
    index = _arrays.device_index(x)
    if index is not None and index != cuda.get_current_device().id:
        with cuda.gpus[index]:
            return _run(variant, x, residual, weight, bias, axis, eps, out, residual_out,
                        return_stats, keepdims)
    return _run(variant, x, residual, weight, bias, axis, eps, out, residual_out,
                return_stats, keepdims)


def _run(variant, x, residual, weight, bias, axis, eps, out, residual_out, return_stats,
         keepdims):
    arrays = _DeviceArrays()
    call = _spec.build(variant, arrays, x, residual, weight, bias, axis, eps, out,
                       residual_out, return_stats or not variant.want_y)
    stats = variant.stats if call.want_stats else STATS_NONE
    y, s, st1, st2 = _launch(call, arrays.stream, x, out, residual_out, stats)
    if variant.stats == STATS_MEAN_VAR:
        if not keepdims:
            shape = tuple(n for a, n in enumerate(call.x.shape) if a not in call.axes)
            st1, st2 = st1.reshape(shape), st2.reshape(shape)
        return st1, st2
    return variant.results(y, s, st1, st2, call.want_stats)


def _launch(call, stream, x, out, residual_out, stats):
    """Plan and launch.  Returns (y, s, st1, st2): y/s as given back to the caller, st1/st2
    per-row statistics in keepdims shape (or None)."""
    xd, rd, od, sd, w, b = call.x, call.residual, call.out, call.residual_out, call.weight, \
        call.bias
    shape, dtype, work, want_y = xd.shape, call.dtype, call.work, call.variant.want_y
    rows = _rows_plan(shape, call.axes)

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
    r2 = _detach(r2, (yo, so), stream)
    # (a weight or bias inside an output, say a row of out: read from a copy, as on the CPU)
    w, b = _detach(w, (yo, so), stream, in_place=False), _detach(b, (yo, so), stream,
                                                                 in_place=False)

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
                        centered=call.variant.centered, has_r=r2 is not None,
                        has_w=w is not None, has_b=b is not None, want_y=want_y, stats=stats,
                        shuffle=_config.USE_SHUFFLE and not SIMULATOR)
    arg = _arrays.kernel_arg
    yk = yo.kernel if yo else None
    sk = so.kernel if so else None
    kernel[blocks, threads * groups, stream](
        arg(yk), _row_stride(yk), arg(sk), _row_stride(sk), arg(x2), _row_stride(x2),
        arg(r2), _row_stride(r2), arg(w), arg(b), arg(st1d), arg(st2d),
        rows.rows, rows.cols, _work_eps(call.eps, work))

    y = yo.result() if yo else None
    s = so.result() if so else None
    keep = rows.stats_shape()
    st1 = st1.reshape(keep) if st1 is not None else None
    st2 = st2.reshape(keep) if st2 is not None else None
    return y, s, st1, st2


def _work_eps(eps, work):
    """eps in the kernels' work type, a positive one at least the type's smallest subnormal:
    rounded to 0 (eps below ~7e-46 for float32 work), a constant row's rstd became inf and
    its y NaN, where the CPU gives 0 for any eps > 0 (docs/gpu.md); one beyond the type's
    range is inf, silently (every rstd 0, as the CPU's becomes for ever larger eps)."""
    if float(eps) > float(np.finfo(work).max):  # (without NumPy's overflow warning)
        return work.type(np.inf)
    value = work.type(eps)
    if eps > 0 and value == 0:
        value = np.nextafter(work.type(0), work.type(1))
    return value
