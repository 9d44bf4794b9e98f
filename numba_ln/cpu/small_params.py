"""weight/bias in the work type for the small-call kernels (small.py): as they come, or
cast in compiled code into a stack buffer, as the general path casts them in NumPy."""
from numba.extending import overload

from ._elements import _absent
from ._jit import kernel
from ._pointers import stack_or_new
from ._storage import load, work_type


def work_param(p, x):
    """weight/bias p as the row kernels read it for x: p itself when absent or of x's work
    type; else a copy in the work type, the general path's cast made here in ~50 ns
    instead of a NumPy cast in the front (~0.5-1 us): float64 weights on float32 or
    16-bit data and float32 ones on float64 (IEEE rounding either way: the same values,
    so the same kernel and bits), and 16-bit parameters of 16-bit data, widened exactly
    to float32 (read as bits in the row loop, they cost 11-14% of a (4096, 1024) pass)."""


def _casts(p, x):
    """Typing: whether work_param copies p."""
    return not (_absent(p) or p.dtype == work_type(x))


@kernel(inline="always")
def _widen_into(out, start, p):
    """out[start:start + len(p)] = p, each element converted to out's dtype (load)."""
    for j in range(p.shape[0]):
        out[start + j] = load(p, j)


# Parameters a small call casts go on the stack, both within 32 KiB (4096 columns of
# float32 work, 2048 of float64); more take a heap allocation (~60 ns with its release:
# float64 weight and bias on (1, 768) float32 data, 771 -> 690-727 ns a kernel call).
_STACK_PARAM_BYTES = 32768


@kernel(inline="always")
def cast_buffer(count, dtype):
    """A 1-D C-contiguous array of count elements of dtype (a Numba type), on the stack
    when they fit in _STACK_PARAM_BYTES, else fresh (the same type either way)."""
    return stack_or_new((count,), dtype, _STACK_PARAM_BYTES)


@overload(work_param, inline="always")
def _work_param(p, x):
    if not _casts(p, x):
        return lambda p, x: p
    dtype = work_type(x)

    def cast(p, x):
        out = cast_buffer(p.shape[0], dtype)
        _widen_into(out, 0, p)
        return out
    return cast


@kernel(inline="always")
def as_given(w, b, x):
    """(w, b): work_params of parameters neither of which is cast."""
    return w, b


def params_for(w, b, x):
    """Typing: work_params, or as_given when it would cast neither (an inline kernel: no
    compilation of its own, as every overload's implementation has)."""
    return work_params if _casts(w, x) or _casts(b, x) else as_given


def work_params(w, b, x):
    """(work_param(w, x), work_param(b, x)), both copies in one buffer when both are
    copied."""


@overload(work_params, inline="always")
def _work_params(w, b, x):
    if not (_casts(w, x) and _casts(b, x)):
        return lambda w, b, x: (work_param(w, x), work_param(b, x))
    dtype = work_type(x)

    def in_one_buffer(w, b, x):
        n = w.shape[0]
        buffer = cast_buffer(n + b.shape[0], dtype)
        _widen_into(buffer, 0, w)
        _widen_into(buffer, n, b)
        return buffer[:n], buffer[n:]
    return in_one_buffer
