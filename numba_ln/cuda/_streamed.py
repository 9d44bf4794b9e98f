"""The streamed row kernel, for rows too wide to hold in registers: each pass re-reads the
row (mostly from L2) with Kahan-compensated per-thread sums (numba_ln/cuda/_kernels.py:
the statistics; numba_ln/cuda/_held.py: the row reduction)."""
import math

from .._variants import STATS_MEAN_RSTD, STATS_MEAN_VAR, STATS_RSTD
from ._compat import cuda
from ._row_parts import FULL_MASK, kernel_io, shared_size
from ._vector import row_io


def streamed_rows(v):
    G, VEC = v.threads, v.vec
    STEP = G * VEC
    ACC = v.acc.type
    OUT = v.out.type
    CENTERED, HAS_R, HAS_W, HAS_B = v.centered, v.has_r, v.has_w, v.has_b
    WANT_Y, STATS = v.want_y, v.stats
    PHASES = 3 if CENTERED else 1
    SHUFFLE, WARPS, SH = v.shuffle, G // 32, shared_size(v)
    ROW_IN_WARP = SHUFFLE and G <= 32  # (the simulator, without shuffles, has no syncwarp)
    load_x, load_r, load_p, store_y, get_x, get_r, put_st = kernel_io(v)
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
                    if ROW_IN_WARP:  # (as in held_rows: s may be written over x or r)
                        cuda.syncwarp(FULL_MASK)
                    else:
                        cuda.syncthreads()
                else:
                    shift = ACC(get_x(x, x_rs, row, 0))
                if shift - shift != ACC(0):  # inf or NaN: about 0 (_kernels.py's docstring)
                    shift = ACC(0)
            else:
                shift = ACC(0)
            # Phase 0 reads x (and r, writing s), the later phases re-read it (or s): the
            # sums of held_rows.  Kahan-compensated: a thread adds cols / G terms here,
            # far more than the <= 32 of the held kernels.
            hi, lo = shift, ACC(0)
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
                        d = (tmp[e] - hi) - lo
                        if CENTERED and phase < 2:
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
                # -- row reduction (numba_ln/cuda/_held.py), W = 1 --
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
                if CENTERED and phase < 2:
                    m = lo + total / n  # the mean: hi + m, renormalized (TwoSum)
                    t = hi + m
                    if phase == 0 or t - t == ACC(0):  # (a non-finite mean stays)
                        u = t - hi
                        lo = (hi - (t - u)) + (m - u)
                        hi = t
                        if lo - lo != ACC(0):  # the sum inf or NaN: hi keeps it
                            lo = ACC(0)
            second = total / n
            denom = ACC(math.sqrt(second + eps))
            rstd = ACC(1) / denom  # (inf for a constant row with eps 0: y NaN, as on the CPU)
            if tid == 0:
                if STATS == STATS_MEAN_RSTD:
                    put_st(st1, row, hi)
                    put_st(st2, row, rstd)
                elif STATS == STATS_RSTD:
                    put_st(st1, row, rstd)
                elif STATS == STATS_MEAN_VAR:
                    put_st(st1, row, hi)
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
                        t = ((tmp[e] - hi) - lo) * rstd
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
