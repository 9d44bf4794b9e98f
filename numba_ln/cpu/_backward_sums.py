"""A backward row's sums (backward.py's docstring says which), piece by piece as
_moments.row_sums adds them: alone (lead_row), in the sweep that writes the previous
row's dx (sweep_row), and for a row with no row before it in the same sweep (lone_sums:
by the sweep, so that every row's sums are the same compiled code).
"""
from ._backward_elements import clear
from ._backward_rows import lead, sweep
from ._elements import smaller, work
from ._jit import kernel
from ._moments import PIECE
from ._pointers import advance
from ._stream import fits_row_buffer


@kernel(inline="always")
def lead_row(dy, x, w, center, cols, centered):
    """(S1, S2, Sg, Sgd) of a whole row alone, piece by piece (as _moments.row_sums adds
    them)."""
    t1 = t2 = tg = tgd = 0.0
    for p in range(0, cols, PIECE):
        a1, a2, ag, agd = lead(advance(dy, p), advance(x, p), advance(w, p), center,
                               smaller(cols, p + PIECE) - p, centered)
        t1 += a1
        t2 += a2
        tg += ag
        tgd += agd
    return t1, t2, tg, tgd


@kernel(inline="always")
def sweep_row(row, sums, w, terms, following, cols, centered):
    """_backward_rows.sweep (whose docstring says what the arguments hold) over a whole
    row, piece by piece, the totals added in order."""
    dx, dy, x, gr = row
    sw, sb = sums
    dy2, x2, center2 = following
    t1 = t2 = tg = tgd = 0.0
    for p in range(0, cols, PIECE):
        a1, a2, ag, agd = sweep((advance(dx, p), advance(dy, p), advance(x, p), advance(gr, p)),
                                (advance(sw, p), advance(sb, p)), advance(w, p), terms,
                                (advance(dy2, p), advance(x2, p), center2),
                                smaller(cols, p + PIECE) - p, centered)
        t1 += a1
        t2 += a2
        tg += ag
        tgd += agd
    return t1, t2, tg, tgd


@kernel(inline="always")
def lone_sums(scratch, zeros, gr, sums, w, following, cols, centered):
    """(S1, S2, Sg, Sgd) of a row summed without a row before it in the same sweep (a
    task's first row, or one after a row computed in float64): by the sweep that sums
    every other row, while it writes the dx of a zeroed row (zeros: rows of dy's and x's
    type) into dx's scratch row (scratch: IN_PLACE as dx is), so that it is the compiled
    code the other rows run.  LLVM vectorizes lead's loops and the sweep's with the lanes
    in another order for RMSNorm (float32, float64) and, at some widths, bfloat16: a
    row's dx depended on whether a task started there, so a row alone differed from the
    same row in a batch (tests/test_task_split.py).  The dummy row adds zeros to the
    partial rows.  Rows longer than the scratch rows are summed alone (README, Same bits)."""
    dy0, x0 = zeros
    dy2, x2, k = following
    if fits_row_buffer(x2, cols):
        clear(dy0, cols)  # (zeros: no subnormal or NaN arithmetic)
        clear(x0, cols)
        zero = work(x2, 0.0)
        return sweep_row((scratch, dy0, x0, gr), sums, w, (zero, zero, zero, zero, zero),
                         following, cols, centered)
    return lead_row(dy2, x2, w, k, cols, centered)
