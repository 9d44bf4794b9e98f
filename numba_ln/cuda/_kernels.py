"""CUDA kernels for rows: LayerNorm, RMSNorm, the fused residual-add forms and moments.

Every kernel works on 2-D row views ``(rows, cols)`` whose columns are contiguous (any row
stride, including 0 for a broadcast residual); numba_ln/cuda/_front.py makes the views.
Kernels are built by factories from compile-time constants (threads per row, elements per
thread, vector width, which inputs and outputs exist) and cached, so each variant compiles
only the code it runs.

Statistics, exact in the working precision (float32 for float16/float32 data, float64
for float64), with no ``E[x**2] - E[x]**2``:

    k = x[row, 0]                  the shift: one of the data, read by every thread
    d = x - k                      exact (Sterbenz) whenever x is within a factor 2 of k,
                                   i.e. at any offset large against the spread
    mean_d = sum(d) / n            a small number: its rounding is relative to the spread,
                                   not to the offset, so mean = k + mean_d is held to
                                   ~1e-7 of the spread as a (hi, lo) pair of float32s
    var = sum((d - mean_d)**2) / n second pass over the row held in registers
    y = (d - mean_d) * rstd * w + b

The held kernels read each element from global memory once: one warp per row for narrow
rows (the row in 32 lanes' registers, reductions by ``shfl.bfly``), one block per row for
wide rows (shuffles, then one shared-memory exchange between warps).  Rows too wide to hold
are streamed three times with Kahan-compensated per-thread sums.  A constant row gives
``d == 0`` exactly, so ``y == b`` exactly; with ``eps == 0`` its ``rstd`` is inf and the
kernel scales by 0 instead (0 * inf would be NaN).  A NaN or inf in a row makes
``mean_d`` non-finite and with it every ``y`` of that row, and no other row.
"""
import math

import numpy as np

from . import _config
from ._compat import SIMULATOR, cuda
from ._vector import row_io

FULL_MASK = 0xFFFFFFFF

# What a kernel writes per row (``st1``, ``st2``).
STATS_NONE = 0
STATS_MEAN_RSTD = 1  # layer_norm: mean, rstd
STATS_RSTD = 2  # rms_norm: rstd
STATS_MEAN_VAR = 3  # moments: mean, var


def _device(fn):
    return fn if SIMULATOR else cuda.jit(device=True)(fn)


def _kernel(fn):
    return cuda.jit(fn)


def group_sum(threads, groups, acc, shuffle):
    """(sum, shared_size): ``sum(v, sh, tid)`` adds v over each group of ``threads``
    consecutive threads (``groups`` groups per block) and gives every thread of the group the
    same total.  Every thread of the block must call it (it may hold barriers).

    Shuffle path: xor-butterfly within each warp (partial sums are bitwise identical in all
    lanes, since float addition commutes), then, for groups of several warps, one value per
    warp through shared memory added in the same order by every thread.  Shared path (the
    simulator, or when shuffles are off): a barrier-separated tree in shared memory.
    """
    if shuffle and threads % 32 == 0:
        warps = threads // 32

        def warp_sum(v):
            off = 16
            while off > 0:
                v += cuda.shfl_xor_sync(FULL_MASK, v, off)
                off //= 2
            return v

        warp_sum = _device(warp_sum)
        if warps == 1:
            def block_sum(v, sh, tid):
                return warp_sum(v)

            return _device(block_sum), 1

        def block_sum(v, sh, tid):
            v = warp_sum(v)
            if tid % 32 == 0:
                sh[tid // 32] = v
            cuda.syncthreads()
            first = (tid // threads) * warps
            total = acc(0)
            for i in range(warps):
                total += sh[first + i]
            cuda.syncthreads()
            return total

        return _device(block_sum), groups * warps

    def tree_sum(v, sh, tid):
        sh[tid] = v
        cuda.syncthreads()
        lane = tid % threads
        off = threads // 2
        while off > 0:
            if lane < off:
                sh[tid] += sh[tid + off]
            cuda.syncthreads()
            off //= 2
        total = sh[tid - lane]
        cuda.syncthreads()
        return total

    return _device(tree_sum), threads * groups


class Variant:
    """Compile-time constants of one row kernel (hashable: the kernel cache key)."""

    __slots__ = ("held", "threads", "groups", "chunks", "vec", "acc", "out", "centered",
                 "has_r", "has_w", "has_b", "want_y", "stats", "shuffle")

    def __init__(self, *, held, threads, groups, chunks, vec, acc, out, centered, has_r,
                 has_w, has_b, want_y, stats, shuffle):
        self.held, self.threads, self.groups, self.chunks = held, threads, groups, chunks
        self.vec, self.acc, self.out = vec, np.dtype(acc), np.dtype(out)
        self.centered, self.has_r, self.has_w, self.has_b = centered, has_r, has_w, has_b
        self.want_y, self.stats, self.shuffle = want_y, stats, shuffle

    def key(self):
        return tuple(getattr(self, k) for k in self.__slots__)

    def __repr__(self):
        return "Variant(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__) + ")"


def make_row_kernel(v):
    """The Python function of variant v's kernel (``cuda.jit`` it, or ``compile_ptx`` it)."""
    return (_held_rows if v.held else _streamed_rows)(v)


_KERNELS = {}


def row_kernel(v):
    """Variant v's compiled kernel, built once per process."""
    key = v.key()
    kernel = _KERNELS.get(key)
    if kernel is None:
        kernel = _KERNELS[key] = _kernel(make_row_kernel(v))
    return kernel


def _held_rows(v):
    G, W, CHUNKS, VEC = v.threads, v.groups, v.chunks, v.vec
    N = CHUNKS * VEC
    STEP = G * VEC
    ACC = v.acc.type
    OUT = v.out.type
    CENTERED, HAS_R, HAS_W, HAS_B = v.centered, v.has_r, v.has_w, v.has_b
    WANT_Y, STATS = v.want_y, v.stats
    reduce, SH = group_sum(G, W, ACC, v.shuffle)
    load, store = row_io(VEC)

    def held_rows(y, s, x, r, w, b, st1, st2, rows, cols, eps):
        sh = cuda.shared.array(SH, ACC)
        vals = cuda.local.array(N, ACC)  # the row segment this thread holds (registers)
        tmp = cuda.local.array(VEC, ACC)
        wt = cuda.local.array(VEC, ACC)
        bt = cuda.local.array(VEC, ACC)
        tid = cuda.threadIdx.x
        lane = tid % G
        first = lane * VEC
        n = ACC(cols)
        base = cuda.blockIdx.x * W
        while base < rows:  # uniform across the block: barriers stay matched
            row = base + tid // G
            valid = row < rows
            if not valid:
                row = rows - 1  # compute on a real row, write nothing
            if CENTERED:
                if HAS_R:
                    shift = ACC(OUT(ACC(x[row, 0]) + ACC(r[row, 0])))
                else:
                    shift = ACC(x[row, 0])
            else:
                shift = ACC(0)
            total = ACC(0)
            for j in range(CHUNKS):
                c = first + j * STEP
                if c < cols:
                    load(x, row, c, vals, j * VEC)
                    if HAS_R:
                        load(r, row, c, tmp, 0)
                        for e in range(VEC):
                            vals[j * VEC + e] = ACC(OUT(vals[j * VEC + e] + tmp[e]))
                        if valid:
                            store(s, row, c, vals, j * VEC)
                    for e in range(VEC):
                        d = vals[j * VEC + e] - shift
                        vals[j * VEC + e] = d
                        if CENTERED:
                            total += d
                        else:
                            total += d * d
            total = reduce(total, sh, tid)
            if CENTERED:
                mean_d = total / n
                m2 = ACC(0)
                for j in range(CHUNKS):
                    c = first + j * STEP
                    if c < cols:
                        for e in range(VEC):
                            d = vals[j * VEC + e] - mean_d
                            m2 += d * d
                m2 = reduce(m2, sh, tid)
                second = m2 / n
            else:
                mean_d = ACC(0)
                second = total / n
            denom = math.sqrt(second + eps)
            rstd = ACC(1) / denom
            scale = ACC(0) if denom == ACC(0) else rstd
            if valid and lane == 0:
                if STATS == STATS_MEAN_RSTD:
                    st1[row] = shift + mean_d
                    st2[row] = rstd
                elif STATS == STATS_RSTD:
                    st1[row] = rstd
                elif STATS == STATS_MEAN_VAR:
                    st1[row] = shift + mean_d
                    st2[row] = second
            if WANT_Y and valid:
                for j in range(CHUNKS):
                    c = first + j * STEP
                    if c < cols:
                        if HAS_W:
                            load(w, 0, c, wt, 0)
                        if HAS_B:
                            load(b, 0, c, bt, 0)
                        for e in range(VEC):
                            t = (vals[j * VEC + e] - mean_d) * scale
                            if HAS_W:
                                t = t * wt[e]
                            if HAS_B:
                                t = t + bt[e]
                            tmp[e] = t
                        store(y, row, c, tmp, 0)
            base += cuda.gridDim.x * W

    return held_rows


def _streamed_rows(v):
    G, VEC = v.threads, v.vec
    STEP = G * VEC
    ACC = v.acc.type
    OUT = v.out.type
    CENTERED, HAS_R, HAS_W, HAS_B = v.centered, v.has_r, v.has_w, v.has_b
    WANT_Y, STATS = v.want_y, v.stats
    reduce, SH = group_sum(G, 1, ACC, v.shuffle)
    load, store = row_io(VEC)

    def streamed_rows(y, s, x, r, w, b, st1, st2, rows, cols, eps):
        sh = cuda.shared.array(SH, ACC)
        tmp = cuda.local.array(VEC, ACC)
        tmp2 = cuda.local.array(VEC, ACC)
        tid = cuda.threadIdx.x
        first = tid * VEC
        n = ACC(cols)
        row = cuda.blockIdx.x
        while row < rows:
            if CENTERED:
                if HAS_R:
                    shift = ACC(OUT(ACC(x[row, 0]) + ACC(r[row, 0])))
                else:
                    shift = ACC(x[row, 0])
            else:
                shift = ACC(0)
            # Pass 1: s = x + r (written), sum(x - k) or sum(x*x), Kahan-compensated: a
            # thread adds cols / G terms here, far more than the held kernels' <= 32.
            total = ACC(0)
            comp = ACC(0)
            c = first
            while c < cols:
                load(x, row, c, tmp, 0)
                if HAS_R:
                    load(r, row, c, tmp2, 0)
                    for e in range(VEC):
                        tmp[e] = ACC(OUT(tmp[e] + tmp2[e]))
                    store(s, row, c, tmp, 0)
                for e in range(VEC):
                    d = tmp[e] - shift
                    term = d if CENTERED else d * d
                    t_y = term - comp
                    t_t = total + t_y
                    comp = (t_t - total) - t_y
                    total = t_t
                c += STEP
            if HAS_R:
                cuda.syncthreads()  # s written above is read by other threads below
            total = reduce(total - comp, sh, tid)
            if CENTERED:
                mean_d = total / n
                m2 = ACC(0)
                comp = ACC(0)
                c = first
                while c < cols:
                    if HAS_R:
                        load(s, row, c, tmp, 0)
                    else:
                        load(x, row, c, tmp, 0)
                    for e in range(VEC):
                        d = (tmp[e] - shift) - mean_d
                        t_y = d * d - comp
                        t_t = m2 + t_y
                        comp = (t_t - m2) - t_y
                        m2 = t_t
                    c += STEP
                m2 = reduce(m2 - comp, sh, tid)
                second = m2 / n
            else:
                mean_d = ACC(0)
                second = total / n
            denom = math.sqrt(second + eps)
            rstd = ACC(1) / denom
            scale = ACC(0) if denom == ACC(0) else rstd
            if tid == 0:
                if STATS == STATS_MEAN_RSTD:
                    st1[row] = shift + mean_d
                    st2[row] = rstd
                elif STATS == STATS_RSTD:
                    st1[row] = rstd
                elif STATS == STATS_MEAN_VAR:
                    st1[row] = shift + mean_d
                    st2[row] = second
            if WANT_Y:
                c = first
                while c < cols:
                    if HAS_R:
                        load(s, row, c, tmp, 0)
                    else:
                        load(x, row, c, tmp, 0)
                    if HAS_W:
                        load(w, 0, c, tmp2, 0)
                    for e in range(VEC):
                        t = ((tmp[e] - shift) - mean_d) * scale
                        if HAS_W:
                            t = t * tmp2[e]
                        tmp[e] = t
                    if HAS_B:
                        load(b, 0, c, tmp2, 0)
                        for e in range(VEC):
                            tmp[e] = tmp[e] + tmp2[e]
                    store(y, row, c, tmp, 0)
                    c += STEP
            cuda.syncthreads()  # the next row's pass 1 must not overtake this row's reads
            row += cuda.gridDim.x

    return streamed_rows


# -- strided copies: non-trailing axes, broadcasts, layouts without a row view ---------------

def make_copy_kernel(ndim, scatter):
    """gather: ``dst[i] = src[start + sum(idx_k * strides[k])]`` for i in C order of shape;
    scatter: the reverse.  ``src``/``dst`` are flat 1-D views, strides in elements; the
    assignment converts dtypes."""
    if scatter:
        def copy(flat, dense, shape, strides, start):
            i = cuda.grid(1)
            step = cuda.gridsize(1)
            while i < dense.size:
                rem = i
                off = start
                for k in range(ndim - 1, -1, -1):
                    off += (rem % shape[k]) * strides[k]
                    rem //= shape[k]
                flat[off] = dense[i]
                i += step
    else:
        def copy(flat, dense, shape, strides, start):
            i = cuda.grid(1)
            step = cuda.gridsize(1)
            while i < dense.size:
                rem = i
                off = start
                for k in range(ndim - 1, -1, -1):
                    off += (rem % shape[k]) * strides[k]
                    rem //= shape[k]
                dense[i] = flat[off]
                i += step
    return copy


def copy_kernel(ndim, scatter):
    key = ("copy", ndim, scatter)
    kernel = _KERNELS.get(key)
    if kernel is None:
        kernel = _KERNELS[key] = _kernel(make_copy_kernel(ndim, scatter))
    return kernel


def launch_copy(flat, dense, shape, strides, start, stream):
    """Run the gather (dense <- flat) or... see make_copy_kernel; chooses the grid."""
    raise NotImplementedError


def copy_grid(size):
    threads = _config.COPY_THREADS
    return max(1, min(_config.MAX_BLOCKS, -(-size // threads))), threads
