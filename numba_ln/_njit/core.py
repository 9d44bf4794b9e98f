"""The compiled core every numba_ln overload calls: argument handling in jitted code, then
the same row kernel as a Python call (cpu.rows.rows_block, all rows as one block)."""
import numpy as np
from numba.extending import register_jitable

from .. import _dtypes
from .._variants import STATS_MEAN_RSTD, STATS_MEAN_VAR, STATS_NONE, STATS_RSTD
from ..cpu._elements import IN_PLACE
from ..cpu.rows import rows_block
from .checks import (_check_eps, _check_residual, _is_view, _output_kind, _param_kind,
                     _real_dtype, _x_dtype)


# Numba compiles an overload (and any dispatcher it calls that has no specialization yet)
# with the calling function's fastmath and error_model unless they are set explicitly, and
# that compilation then serves every later caller, Python ones too.  Pinning the kernels'
# flags (cpu/_jit.py) here keeps a user's @njit(fastmath=True) from changing numba_ln's
# rounding or NaN handling, in these implementations (the rstd of return_stats) and in
# anything they compile.
_JIT_OPTIONS = {"fastmath": False, "error_model": "numpy"}

# --- compiled helpers, used only for the less common argument types --------------------------
# Every jitted function costs a compilation of its own (~0.2 s, and the kernel's code is
# generated again in each), so the common path is one function, ``core`` below.

# Copies loop over ``.flat`` rather than assigning ``out[...] = a``: Numba compiles that
# assignment with formatted shape-mismatch errors, ~1 s more per calling function.

@register_jitable
def _flat_copy(a, dt):
    """a's elements in C order, as a new contiguous 1-D array of dtype dt (any layout)."""
    out = np.empty(a.size, dt)
    k = 0
    for v in a.flat:
        out[k] = v
        k += 1
    return out


@register_jitable
def _copy_into(out, flat):
    """out's elements, in C order, from the contiguous 1-D array flat (out of any layout)."""
    for k in range(flat.size):
        out.flat[k] = flat[k]


@register_jitable
def _param_copy(p, cols, dt):
    if p.ndim == 0:  # (a 0-d array broadcasts to any length; the branch is pruned by ndim)
        return np.full(cols, _flat_copy(p, dt)[0], dt)
    for k in range(p.ndim - 1):
        if p.shape[k] != 1:
            raise ValueError("numba_ln: weight/bias does not broadcast to the normalized "
                             "shape (x.shape[-1],)")
    if p.shape[-1] != cols and p.shape[-1] != 1:
        raise ValueError("numba_ln: weight/bias does not broadcast to the normalized shape "
                         "(x.shape[-1],)")
    flat = _flat_copy(p, dt)
    if flat.size == cols:
        return flat
    return np.full(cols, flat[0], dt)


@register_jitable
def _extent(a):
    """The bytes [lo, hi) that a's elements lie within, whatever its strides (the bounds
    np.may_share_memory compares)."""
    lo = hi = a.ctypes.data
    for k in range(a.ndim):
        reach = a.strides[k] * (a.shape[k] - 1)
        if reach < 0:
            lo += reach
        else:
            hi += reach
    return lo, hi + a.itemsize


@register_jitable
def _may_overlap(a, b):
    """Whether arrays a and b (any layouts: flat contiguous ones, or outputs as given) may
    share memory, as the Python call's np.may_share_memory says."""
    if a.size == 0 or b.size == 0:
        return False
    (a_lo, a_hi), (b_lo, b_hi) = _extent(a), _extent(b)
    return a_lo < b_hi and b_lo < a_hi


@register_jitable
def _repeats_elements(a):
    """Whether a has a zero stride along an axis of more than one element (a broadcast
    view: several elements are one memory location, so it cannot hold a result)."""
    for k in range(a.ndim):
        if a.strides[k] == 0 and a.shape[k] > 1:
            return True
    return False


@register_jitable
def _detach_any(a, o):
    """a, or a copy of it when output o shares any memory with it (weight, bias and
    statistics: never written in place)."""
    if _may_overlap(a, o):
        return a.copy()
    return a


@register_jitable
def _detach(a, o):
    """a, or a copy of it when output o overlaps it other than element for element (as
    _engine._detach_inputs does)."""
    if _may_overlap(a, o) and not (a.ctypes.data == o.ctypes.data and a.size == o.size):
        return a.copy()
    return a


# --- the shared core --------------------------------------------------------------------------

def _make_core(variant, x, residual, weight, bias, eps, out, residual_out, *, return_stats,
               keepdims=True):
    """Check the argument types of a call of `variant` (numba_ln/_variants.py) and return
    a jitted ``core(x, residual, weight, bias, eps, out, residual_out) -> (y, s, a, b)``.

    (a, b): unused without statistics; (mean, rstd) for LayerNorm, (rstd, rstd) for
    RMSNorm, (mean, var) for moments; in the result dtype, with keepdims shape unless
    moments without keepdims.  Branches on the closure constants below are pruned by Numba
    before typing, so each call's types compile only the code they use.
    """
    fname, centered, want_y = variant.name, variant.centered, variant.want_y
    # _variants' STATS_* (moments always returns its statistics)
    stats = variant.stats if return_stats or variant.stats == STATS_MEAN_VAR else STATS_NONE
    dtype = _x_dtype(fname, x)
    has_r = residual is not None
    if has_r:
        _check_residual(fname, residual, x)
        # (of the raw dtypes, as from Python: int16 x + float32 residual is float32; x's
        # result dtype first made it float64)
        dtype = _dtypes.result_dtype(np.result_type(_real_dtype(x), _real_dtype(residual)))
    none_eps = _check_eps(fname, eps, centered, dtype)  # (RMSNorm's eps=None: a float)
    eps_given = none_eps is None
    x_view = _is_view(x, dtype)
    r_view = has_r and _is_view(residual, dtype)
    w_kind = _param_kind(fname, "weight", weight, dtype)
    b_kind = _param_kind(fname, "bias", bias, dtype)
    w_absent, w_scalar, w_view = (w_kind == k for k in ("absent", "scalar", "view"))
    b_absent, b_scalar, b_view = (b_kind == k for k in ("absent", "scalar", "view"))
    y_kind = _output_kind(fname, "out", out, x, dtype) if want_y else None
    s_kind = _output_kind(fname, "residual_out", residual_out, x, dtype) if has_r else None
    y_new, y_view, y_temp = (y_kind == k for k in ("new", "view", "temp"))
    s_new, s_view, s_temp = (s_kind == k for k in ("new", "view", "temp"))
    y_user, s_user = y_view or y_temp, s_view or s_temp
    stats_layer, stats_rms = stats == STATS_MEAN_RSTD, stats == STATS_RSTD
    stats_moments = stats == STATS_MEAN_VAR
    keepdims = keepdims or not stats_moments  # (only moments may drop the axes)
    dt = dtype.type  # np.float32 or np.float64: a constant in jitted code
    may_y_in_place = not has_r and y_view and x_view
    may_s_in_place = has_r and s_view and r_view

    @register_jitable(**_JIT_OPTIONS)
    def core(x, residual, weight, bias, eps, out, residual_out):
        e = float(eps) if eps_given else none_eps
        if not (e >= 0.0 and e < np.inf):
            raise ValueError("numba_ln: eps must be a finite number >= 0")
        shape = x.shape
        cols = shape[-1]
        if cols == 0:
            raise ValueError("numba_ln: the normalized axis (the last) has no elements")
        rows = x.size // cols
        zero = np.int64(0)  # not a literal 0: the kernel's signature must be the Python path's

        if x_view:
            xf = x.reshape(-1)
        else:
            xf = _flat_copy(x, dt)
        empty = xf[:0]  # absent arrays are empty views: an allocation costs ~30 ns

        if not has_r:
            rf, r_stride = empty, zero
        else:
            lead = x.ndim - residual.ndim
            for k in range(residual.ndim):
                n = residual.shape[k]
                if n != 1 and n != shape[lead + k]:
                    raise ValueError("numba_ln: residual does not broadcast to x's shape")
            if residual.size == x.size or (residual.size == cols
                                           and residual.shape[-1] == cols):
                # x's shape, or one row read again for every row (row stride 0; a column
                # of as many elements, (rows, 1) with rows == cols, is broadcast below)
                r_stride = cols if residual.size == x.size else zero
                if r_view:
                    rf = residual.reshape(-1)
                else:
                    rf = _flat_copy(residual, dt)
            else:
                rf, r_stride = _flat_copy(np.broadcast_to(residual, shape), dt), cols

        if w_absent:
            wf = empty
        elif w_scalar:
            wf = np.full(cols, weight, dt)
        elif w_view:  # (a length-1 one is broadcast by _param_copy)
            wf = weight if weight.shape[0] == cols else _param_copy(weight, cols, dt)
        else:
            wf = _param_copy(weight, cols, dt)
        if b_absent:
            bf = empty
        elif b_scalar:
            bf = np.full(cols, bias, dt)
        elif b_view:  # (a length-1 one is broadcast by _param_copy)
            bf = bias if bias.shape[0] == cols else _param_copy(bias, cols, dt)
        else:
            bf = _param_copy(bias, cols, dt)

        if y_view or y_temp:
            if out.shape != shape:
                raise ValueError("numba_ln: out/residual_out must have x's shape")
        if y_temp:  # (a C-contiguous one has no zero stride)
            if _repeats_elements(out):
                raise ValueError("numba_ln: out has a zero stride (a broadcast view): several "
                                 "of its elements are one memory location")
        if y_view:
            y = out
            yf = out.reshape(-1)
        elif y_new or y_temp:
            y = np.empty(shape, dt)
            yf = y.reshape(-1)
        else:
            y = yf = empty
        if s_view or s_temp:
            if residual_out.shape != shape:
                raise ValueError("numba_ln: out/residual_out must have x's shape")
        if s_temp:
            if _repeats_elements(residual_out):
                raise ValueError("numba_ln: residual_out has a zero stride (a broadcast view): "
                                 "several of its elements are one memory location")
        if y_user and s_user:  # (the arrays as given: a strided one is written from a copy)
            if _may_overlap(out, residual_out):
                raise ValueError("numba_ln: out and residual_out must not overlap")
        if s_view:
            s = residual_out
            sf = residual_out.reshape(-1)
        elif s_new or s_temp:
            s = np.empty(shape, dt)
            sf = s.reshape(-1)
        else:
            s = sf = empty

        # (an output may be its own input only, as from Python (_spec.FORWARD_IN_PLACE):
        # out=x and residual_out=residual; out=residual or x that is the residual with
        # residual_out over it read from a copy, or the kernel reads x after s is stored)
        if y_user:
            xf = _detach(xf, yf)
            rf = _detach_any(rf, yf)
            wf = _detach_any(wf, yf)
            bf = _detach_any(bf, yf)
        if s_user:
            xf = _detach_any(xf, sf)
            rf = _detach(rf, sf)
            wf = _detach_any(wf, sf)
            bf = _detach_any(bf, sf)

        # Statistics are always written (scratch rows when not returned), as from Python:
        # one kernel variant fewer (_stand_ins)
        first, second = np.empty(rows), np.empty(rows)
        # Absent arrays are None for the kernel (a compile-time fact, as from Python).
        if has_r:
            s_v, r_v = (sf, zero, cols), (rf, zero, r_stride)
        else:
            s_v = r_v = None
        if want_y:
            y_v = (yf, zero, cols)
        else:
            y_v = None
        if w_absent:
            w_v = None
        else:
            w_v = wf
        if b_absent:
            b_v = None
        else:
            b_v = bf
        st = (first, second)
        x_v = (xf, zero, cols)
        c = np.bool_(centered)
        unstreamed = np.bool_(False)  # (one serial block: cpu/_stream is for threaded calls)
        # An output over its own input goes as IN_PLACE, as from Python (cpu/_elements):
        # the same kernel variant, hence the same bits.  Only where the types allow it.
        # (no rows: nothing to write.  rows_block sums its first row before its loop: it
        # read one row past x, and a fused call wrote one past s)
        done = rows == 0
        if may_y_in_place:
            if not done and yf.ctypes.data == xf.ctypes.data:
                rows_block((IN_PLACE, s_v, x_v, r_v), (w_v, b_v, e, c), st, cols, zero, rows,
                           unstreamed)
                done = True
        if may_s_in_place:
            if not done and sf.ctypes.data == rf.ctypes.data:
                rows_block((y_v, IN_PLACE, x_v, r_v), (w_v, b_v, e, c), st, cols, zero, rows,
                           unstreamed)
                done = True
        if not done:
            rows_block((y_v, s_v, x_v, r_v), (w_v, b_v, e, c), st, cols, zero, rows,
                       unstreamed)

        if y_temp:
            _copy_into(out, yf)
            y_res = out
        else:
            y_res = y
        if s_temp:
            _copy_into(residual_out, sf)
            s_res = residual_out
        else:
            s_res = s
        keep = shape[:-1] + (1,)
        if stats_layer or stats_rms:
            # As _api: 1/sqrt in float64, then rounded once to the result dtype.
            rstd = (1.0 / np.sqrt(second + e)).astype(dt).reshape(keep)
            if stats_layer:
                a = first.astype(dt).reshape(keep)
            else:
                a = rstd
            return y_res, s_res, a, rstd
        if stats_moments:
            if keepdims:
                return y_res, s_res, first.astype(dt).reshape(keep), second.astype(dt).reshape(keep)
            return (y_res, s_res, first.astype(dt).reshape(shape[:-1]),
                    second.astype(dt).reshape(shape[:-1]))
        return y_res, s_res, first, second

    return core
