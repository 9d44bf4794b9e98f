"""The backward's rows in blocks (backward.backward_block takes this path for rows of at
most BLOCKED_COLS elements): BLOCK rows' sums and terms first, then their dx.

backward_block's sweep writes a row's dx while it sums the next row, so each row waits
for the previous row's terms (the float64 finish: divisions, a square root, the calls of
row_terms) before its sweep can start.  A row of 64 elements is four vectors, and that
chain is most of its time.  Here each of a block's rows is summed alone (lead_row, as a
task's first row is), its terms follow, and then each row's dx is written as a task's
last row is (row_dx): the rows' chains are independent, so they overlap.

The sums are a task's first row's, and the dx a task's last row's, for every row: a row
gives the same bits whether it is alone or in a batch, and wherever a task starts (the
sweep summed RMSNorm's float32 and float64 rows, and some bfloat16 rows, in other lanes
than lead_row: such a row's dx moved in the last bit with its place; wider rows get the
same property the other way round, _backward_sums.lone_sums).  The partial rows are
updated row by row and flushed every PARAM_ROWS rows, as backward_block does.

Measured (Zen 4, 2 threads, one process, the two versions interleaved, recomputed
statistics, us): float32 (1024, 64) 93 -> 65, (4096, 64) 203 -> 146, (16384, 64) 816 ->
606, (4096, 32) 231 -> 178, (4096, 16) 275 -> 213, (65536, 64) 3260 -> 3055; float16
(16384, 64) 969 -> 610; float64 (16384, 64) 910 -> 836; at 128 float32 columns 0.84-0.93x
(the sweep's overlap of one row's loads with the previous row's stores wins there).
"""
from .. import _config
from ._backward_elements import PARAM_ROWS, flush_rows
from ._backward_rows import row_dx, row_wide
from ._backward_stats import row_terms, sums_center
from ._backward_sums import lead_row
from ._elements import is_narrow, smaller, work
from ._jit import kernel
from ._pointers import address, row_address, stack_doubles
from ._rowops import normalizer

RSTD_MAX = _config.NARROW_RSTD_MAX
BLOCK = 16
BLOCKED_COLS = 64  # (the measurements above)


@kernel(_nrt=False)
def blocked_rows(arrays, norm, stats, partials, cols, first, last):
    """Rows first..last-1 of a task (backward_block's arguments; partials the task's own
    rows pw, pb, sw, sb), BLOCK rows at a time."""
    dx, dy, x, gr = arrays
    w, eps, centered = norm
    pw, pb, sw, sb = partials
    wp = address(w, 0)
    means, rstds, c1s, c2s = (stack_doubles(BLOCK), stack_doubles(BLOCK),
                              stack_doubles(BLOCK), stack_doubles(BLOCK))
    for start in range(first, last, BLOCK):
        n = smaller(BLOCK, last - start)
        for j in range(n):
            dyp, xp = row_address(dy, start + j, 0), row_address(x, start + j, 0)
            k = sums_center(stats, start + j, xp, cols, centered)
            t1, t2, tg, tgd = lead_row(dyp, xp, wp, k, cols, centered)
            means[j], rstds[j], c1s[j], c2s[j] = row_terms(
                stats, start + j, dyp, xp, wp, cols, eps, centered, k, t1, t2, tg, tgd)
        for j in range(n):
            i = start + j
            dyp, xp = row_address(dy, i, 0), row_address(x, i, 0)
            dxp, grp = row_address(dx, i, 0), row_address(gr, i, 0)
            if not is_narrow(xp) or rstds[j] < RSTD_MAX:
                hi, lo, scale = normalizer(xp, means[j], rstds[j])
                k1, k2 = work(xp, rstds[j] * c1s[j]), work(xp, rstds[j] * c2s[j])
                row_dx(dxp, dyp, xp, wp, grp, sw, sb, hi, lo, scale, k1, k2, cols, centered)
            else:
                row_wide(dxp, dyp, xp, wp, grp, sw, sb, means[j], rstds[j], cols, centered)
            if (i - first) % PARAM_ROWS == PARAM_ROWS - 1 or i + 1 == last:
                flush_rows(pw, sw, pb, sb, cols)

