"""The held row kernel: each thread keeps its part of the row in registers, so x is read
from global memory once (numba_ln/cuda/_kernels.py: the statistics and the launch forms)."""
import math

from .._variants import STATS_MEAN_RSTD, STATS_MEAN_VAR, STATS_RSTD
from ._compat import cuda
from ._row_parts import FULL_MASK, kernel_io, shared_size

# The row reduction appears inline in held_rows below and in _streamed.py's kernel (device
# functions would compile through a dispatcher that asks the driver for the device, and
# compile_ptx must work without one).  It sums ``total`` over the G threads of a row and
# leaves the same value in all of them; every thread of the block runs it (it may hold
# barriers):
#
# - shuffle path: an xor butterfly within each warp (the partial sums are bitwise equal in
#   all lanes, float addition commuting), then for rows of several warps one value per warp
#   through shared memory, added in the same order by every thread;
# - shared path (the simulator, which has no shuffles, or shuffle=False): a
#   barrier-separated tree in shared memory.


def held_rows(v):
    G, W, CHUNKS, VEC = v.threads, v.groups, v.chunks, v.vec
    N = CHUNKS * VEC
    STEP = G * VEC
    ACC = v.acc.type
    OUT = v.out.type
    CENTERED, HAS_R, HAS_W, HAS_B = v.centered, v.has_r, v.has_w, v.has_b
    WANT_Y, STATS = v.want_y, v.stats
    PHASES = 3 if CENTERED else 1
    SHUFFLE, WARPS, SH = v.shuffle, G // 32, shared_size(v)
    ROW_IN_WARP = SHUFFLE and G <= 32  # (the simulator, without shuffles, has no syncwarp)
    load_x, load_r, load_p, store_y, get_x, get_r, put_st = kernel_io(v)

    def held_rows(y, y_rs, s, s_rs, x, x_rs, r, r_rs, w, b, st1, st2, rows, cols, eps):
        sh = cuda.shared.array(SH, ACC)
        vals = cuda.local.array(N, ACC)  # this thread's part of the row, x or s (registers)
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
                if shift - shift != ACC(0):  # inf or NaN: about 0 (_kernels.py's docstring)
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
            # LayerNorm: phase 0 sums x - k, phase 1 c = (x - hi) - lo (each refines the
            # mean hi + lo), phase 2 c**2; RMSNorm: x*x (numba_ln/cuda/_kernels.py).
            hi, lo = shift, ACC(0)
            total = ACC(0)
            for phase in range(PHASES):
                total = ACC(0)
                for j in range(CHUNKS):
                    if first + j * STEP < cols:
                        for e in range(VEC):
                            d = (vals[j * VEC + e] - hi) - lo
                            if CENTERED and phase < 2:
                                total += d
                            else:
                                total += d * d
                # -- row reduction (see the comment above held_rows) --
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
                if CENTERED and phase < 2:
                    m = lo + total / n  # the mean: hi + m, renormalized (TwoSum)
                    t = hi + m
                    if phase == 0 or t - t == ACC(0):  # (a non-finite mean stays)
                        u = t - hi
                        lo = (hi - (t - u)) + (m - u)
                        hi = t
                        if lo - lo != ACC(0):  # the sum inf or NaN: hi keeps it
                            lo = ACC(0)
            second = total / n  # variance (LayerNorm) or mean square (RMSNorm)
            denom = ACC(math.sqrt(second + eps))
            rstd = ACC(1) / denom  # (inf for a constant row with eps 0: y NaN, as on the CPU)
            if valid and lane == 0:
                if STATS == STATS_MEAN_RSTD:
                    put_st(st1, row, hi)
                    put_st(st2, row, rstd)
                elif STATS == STATS_RSTD:
                    put_st(st1, row, rstd)
                elif STATS == STATS_MEAN_VAR:
                    put_st(st1, row, hi)
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
                            t = ((vals[j * VEC + e] - hi) - lo) * rstd
                            if HAS_W:
                                t = t * wt[e]
                            if HAS_B:
                                t = t + bt[e]
                            tmp[e] = t
                        store_y(y, y_rs, row, c, tmp, 0)
            base += cuda.gridDim.x * W

    return held_rows
