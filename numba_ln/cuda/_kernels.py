"""CUDA kernels for rows: LayerNorm, RMSNorm, the fused residual-add forms and moments.

Every kernel works on row views ``(rows, cols)`` whose columns are contiguous (any row
stride, including 0 for a broadcast residual), passed as an address and a row stride in
bytes (numba_ln/cuda/_vector.py); numba_ln/cuda/_front.py makes the views.
``make_row_kernel`` builds a kernel from its KernelConfig (compile-time constants, see
numba_ln/cuda/_compile.py, which compiles and caches the kernels), so each configuration
compiles only the code it runs.

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
``d == 0`` exactly, so ``y == b`` exactly; with ``eps == 0`` its ``rstd`` is inf and y is
NaN (0 * inf), as on the CPU, in NumPy's formula and in torch.  A NaN or inf in a row makes
``mean_d`` non-finite and with it every ``y`` of that row, and no other row.  A shift
that is inf or NaN is replaced by 0: about it every difference was
inf - inf or -inf, and a row holding +inf had mean NaN where NumPy's is inf.
"""
import math

from .._variants import STATS_MEAN_RSTD, STATS_MEAN_VAR, STATS_RSTD
from ._compat import cuda
from ._vector import row_io, scalar_io

FULL_MASK = 0xFFFFFFFF


def make_row_kernel(v):
    """The Python function of KernelConfig v's kernel (``cuda.jit`` or ``compile_ptx`` it)."""
    return (_held_rows if v.held else _streamed_rows)(v)


def _io(v):
    """The memory helpers of configuration v (numba_ln/cuda/_vector.py): row segments of x, r,
    weight/bias (work dtype) and y/s, single elements of x and r, statistics."""
    load_x = row_io(v.x, v.vec)[0]
    load_r = row_io(v.r, v.vec)[0]
    load_p = row_io(v.acc, v.vec)[0]
    store_y = row_io(v.out, v.vec)[1]
    get_x = scalar_io(v.x)[0]
    get_r = scalar_io(v.r)[0]
    put_st = scalar_io(v.acc)[1]
    return load_x, load_r, load_p, store_y, get_x, get_r, put_st


def _shared_size(v):
    """Shared-memory words for the row reduction (see ``_held_rows``)."""
    if v.shuffle:
        return max(1, v.groups * (v.threads // 32))
    return v.threads * v.groups


# The row reduction appears inline in both kernels below (device functions would compile
# through a dispatcher that asks the driver for the device, and compile_ptx must work
# without one).  It sums ``total`` over the G threads of a row and leaves the same value in
# all of them; every thread of the block runs it (it may hold barriers):
#
# - shuffle path: an xor butterfly within each warp (the partial sums are bitwise equal in
#   all lanes, float addition commuting), then for rows of several warps one value per warp
#   through shared memory, added in the same order by every thread;
# - shared path (the simulator, which has no shuffles, or shuffle=False): a
#   barrier-separated tree in shared memory.


def _held_rows(v):
    G, W, CHUNKS, VEC = v.threads, v.groups, v.chunks, v.vec
    N = CHUNKS * VEC
    STEP = G * VEC
    ACC = v.acc.type
    OUT = v.out.type
    CENTERED, HAS_R, HAS_W, HAS_B = v.centered, v.has_r, v.has_w, v.has_b
    WANT_Y, STATS = v.want_y, v.stats
    PHASES = 2 if CENTERED else 1
    SHUFFLE, WARPS, SH = v.shuffle, G // 32, _shared_size(v)
    ROW_IN_WARP = SHUFFLE and G <= 32  # (the simulator, without shuffles, has no syncwarp)
    load_x, load_r, load_p, store_y, get_x, get_r, put_st = _io(v)

    def held_rows(y, y_rs, s, s_rs, x, x_rs, r, r_rs, w, b, st1, st2, rows, cols, eps):
        sh = cuda.shared.array(SH, ACC)
        vals = cuda.local.array(N, ACC)  # this thread's part of the row: x - k (registers)
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
                    shift = ACC(OUT(ACC(get_x(x, x_rs, row, 0)) + ACC(get_r(r, r_rs, row, 0))))
                    # (s may be written over x or r: every thread reads the shift first;
                    # a row within one warp meets at a warp barrier, no block barrier)
                    if ROW_IN_WARP:
                        cuda.syncwarp(FULL_MASK)
                    else:
                        cuda.syncthreads()
                else:
                    shift = ACC(get_x(x, x_rs, row, 0))
                if shift - shift != ACC(0):  # inf or NaN: about 0 (module docstring)
                    shift = ACC(0)
            else:
                shift = ACC(0)
            for j in range(CHUNKS):
                c = first + j * STEP
                if c < cols:
                    load_x(x, x_rs, row, c, vals, j * VEC)
                    if HAS_R:
                        load_r(r, r_rs, row, c, tmp, 0)
                        for e in range(VEC):
                            vals[j * VEC + e] = ACC(OUT(vals[j * VEC + e] + tmp[e]))
                        if valid:
                            store_y(s, s_rs, row, c, vals, j * VEC)
                    for e in range(VEC):
                        vals[j * VEC + e] = vals[j * VEC + e] - shift
            # Phase 0: sum(d) (LayerNorm) or sum(d*d) (RMSNorm); phase 1: sum((d - mean_d)**2).
            mean_d = ACC(0)
            total = ACC(0)
            for phase in range(PHASES):
                total = ACC(0)
                for j in range(CHUNKS):
                    if first + j * STEP < cols:
                        for e in range(VEC):
                            d = vals[j * VEC + e] - mean_d
                            if CENTERED and phase == 0:
                                total += d
                            else:
                                total += d * d
                # -- row reduction (see the comment above _held_rows) --
                if SHUFFLE:
                    off = 16
                    while off > 0:
                        total += cuda.shfl_xor_sync(FULL_MASK, total, off)
                        off //= 2
                    if WARPS > 1:
                        if tid % 32 == 0:
                            sh[tid // 32] = total
                        cuda.syncthreads()
                        total = ACC(0)
                        for i in range(WARPS):
                            total += sh[(tid // G) * WARPS + i]
                        cuda.syncthreads()
                else:
                    sh[tid] = total
                    cuda.syncthreads()
                    off = G // 2
                    while off > 0:
                        if lane < off:
                            sh[tid] += sh[tid + off]
                        cuda.syncthreads()
                        off //= 2
                    total = sh[tid - lane]
                    cuda.syncthreads()
                # --
                if CENTERED and phase == 0:
                    mean_d = total / n
            second = total / n  # variance (LayerNorm) or mean square (RMSNorm)
            denom = ACC(math.sqrt(second + eps))
            rstd = ACC(1) / denom  # (inf for a constant row with eps 0: y NaN, as on the CPU)
            if valid and lane == 0:
                if STATS == STATS_MEAN_RSTD:
                    put_st(st1, row, shift + mean_d)
                    put_st(st2, row, rstd)
                elif STATS == STATS_RSTD:
                    put_st(st1, row, rstd)
                elif STATS == STATS_MEAN_VAR:
                    put_st(st1, row, shift + mean_d)
                    put_st(st2, row, second)
            if WANT_Y and valid:
                for j in range(CHUNKS):
                    c = first + j * STEP
                    if c < cols:
                        if HAS_W:
                            load_p(w, 0, 0, c, wt, 0)
                        if HAS_B:
                            load_p(b, 0, 0, c, bt, 0)
                        for e in range(VEC):
                            t = (vals[j * VEC + e] - mean_d) * rstd
                            if HAS_W:
                                t = t * wt[e]
                            if HAS_B:
                                t = t + bt[e]
                            tmp[e] = t
                        store_y(y, y_rs, row, c, tmp, 0)
            base += cuda.gridDim.x * W

    return held_rows


def _streamed_rows(v):
    G, VEC = v.threads, v.vec
    STEP = G * VEC
    ACC = v.acc.type
    OUT = v.out.type
    CENTERED, HAS_R, HAS_W, HAS_B = v.centered, v.has_r, v.has_w, v.has_b
    WANT_Y, STATS = v.want_y, v.stats
    PHASES = 2 if CENTERED else 1
    SHUFFLE, WARPS, SH = v.shuffle, G // 32, _shared_size(v)
    ROW_IN_WARP = SHUFFLE and G <= 32  # (the simulator, without shuffles, has no syncwarp)
    load_x, load_r, load_p, store_y, get_x, get_r, put_st = _io(v)
    load_y = row_io(v.out, VEC)[0]

    def streamed_rows(y, y_rs, s, s_rs, x, x_rs, r, r_rs, w, b, st1, st2, rows, cols, eps):
        sh = cuda.shared.array(SH, ACC)
        tmp = cuda.local.array(VEC, ACC)
        tmp2 = cuda.local.array(VEC, ACC)
        tid = cuda.threadIdx.x
        lane = tid
        first = tid * VEC
        n = ACC(cols)
        row = cuda.blockIdx.x
        while row < rows:
            if CENTERED:
                if HAS_R:
                    shift = ACC(OUT(ACC(get_x(x, x_rs, row, 0)) + ACC(get_r(r, r_rs, row, 0))))
                    if ROW_IN_WARP:  # (as in _held_rows: s may be written over x or r)
                        cuda.syncwarp(FULL_MASK)
                    else:
                        cuda.syncthreads()
                else:
                    shift = ACC(get_x(x, x_rs, row, 0))
                if shift - shift != ACC(0):  # inf or NaN: about 0 (see above)
                    shift = ACC(0)
            else:
                shift = ACC(0)
            # Phase 0 reads x (and r, writing s): sum(d) or sum(d*d); phase 1 re-reads:
            # sum((d - mean_d)**2).  Kahan-compensated: a thread adds cols / G terms here,
            # far more than the <= 32 of the held kernels.
            mean_d = ACC(0)
            total = ACC(0)
            for phase in range(PHASES):
                total = ACC(0)
                comp = ACC(0)
                c = first
                while c < cols:
                    if phase == 0:
                        load_x(x, x_rs, row, c, tmp, 0)
                        if HAS_R:
                            load_r(r, r_rs, row, c, tmp2, 0)
                            for e in range(VEC):
                                tmp[e] = ACC(OUT(tmp[e] + tmp2[e]))
                            store_y(s, s_rs, row, c, tmp, 0)
                    elif HAS_R:
                        load_y(s, s_rs, row, c, tmp, 0)
                    else:
                        load_x(x, x_rs, row, c, tmp, 0)
                    for e in range(VEC):
                        d = (tmp[e] - shift) - mean_d
                        if CENTERED and phase == 0:
                            term = d - comp
                        else:
                            term = d * d - comp
                        t = total + term
                        comp = (t - total) - term
                        if comp - comp != ACC(0):  # inf or NaN: the row holds an inf (or
                            comp = ACC(0)  # a NaN), or its sum overflowed: total keeps it
                        total = t
                    c += STEP
                total = total - comp
                if HAS_R and phase == 0:
                    cuda.syncthreads()  # s written above is read by other threads later
                # -- row reduction (see the comment above _held_rows), W = 1 --
                if SHUFFLE:
                    off = 16
                    while off > 0:
                        total += cuda.shfl_xor_sync(FULL_MASK, total, off)
                        off //= 2
                    if WARPS > 1:
                        if tid % 32 == 0:
                            sh[tid // 32] = total
                        cuda.syncthreads()
                        total = ACC(0)
                        for i in range(WARPS):
                            total += sh[i]
                        cuda.syncthreads()
                else:
                    sh[tid] = total
                    cuda.syncthreads()
                    off = G // 2
                    while off > 0:
                        if lane < off:
                            sh[tid] += sh[tid + off]
                        cuda.syncthreads()
                        off //= 2
                    total = sh[0]
                    cuda.syncthreads()
                # --
                if CENTERED and phase == 0:
                    mean_d = total / n
            second = total / n
            denom = ACC(math.sqrt(second + eps))
            rstd = ACC(1) / denom  # (inf for a constant row with eps 0: y NaN, as on the CPU)
            if tid == 0:
                if STATS == STATS_MEAN_RSTD:
                    put_st(st1, row, shift + mean_d)
                    put_st(st2, row, rstd)
                elif STATS == STATS_RSTD:
                    put_st(st1, row, rstd)
                elif STATS == STATS_MEAN_VAR:
                    put_st(st1, row, shift + mean_d)
                    put_st(st2, row, second)
            if WANT_Y:
                c = first
                while c < cols:
                    if HAS_R:
                        load_y(s, s_rs, row, c, tmp, 0)
                    else:
                        load_x(x, x_rs, row, c, tmp, 0)
                    if HAS_W:
                        load_p(w, 0, 0, c, tmp2, 0)
                    for e in range(VEC):
                        t = ((tmp[e] - shift) - mean_d) * rstd
                        if HAS_W:
                            t = t * tmp2[e]
                        tmp[e] = t
                    if HAS_B:
                        load_p(b, 0, 0, c, tmp2, 0)
                        for e in range(VEC):
                            tmp[e] = tmp[e] + tmp2[e]
                    store_y(y, y_rs, row, c, tmp, 0)
                    c += STEP
            row += cuda.gridDim.x

    return streamed_rows
