"""The small-call kernels' argument helpers (small.py, small_backward.py), settled in
compiled code: whether an argument's type fits (decided while compiling), whether its
sizes fit and outputs lie apart from inputs (a few integer compares), the flat views the
row kernels take, and scratch statistics rows (parameters in the work type:
small_params.py)."""
import numpy as np
from numba import types
from numba.core import cgutils
from numba.core.imputils import impl_ret_borrowed
from numba.extending import intrinsic
from numba.np.arrayobj import populate_array

from ._elements import _absent, _in_place
from ._jit import kernel
from ._pointers import stack_or_new


# The form's flags, fixed inside each small-call kernel rather than passed: a bool or a
# None argument costs Numba's dispatcher ~65 ns to type (a float ~28 ns, an array ~40),
# a tenth of a (1, 768) call.  Module globals, so that Numba types them as run-time
# values, as the general path passes them: each kernel compiles the body the general
# path runs, with the same argument types (the same specializations, the same bits).
CENTERED = True
NOT_CENTERED = False
NO_EPS = 0.0


def _array_fits(a, like):
    """Typing: a is IN_PLACE or a writeable C-contiguous array of like's dtype and rank."""
    return _in_place(a) or (a.layout == "C" and a.ndim == like.ndim
                            and a.dtype == like.dtype and a.mutable)


def _param_type_fits(p):
    return _absent(p) or (p.layout == "C" and p.ndim == 1)


def _param_rows_fit(p):
    """Typing: weight/bias, or a parameter gradient, of a rows call (small_layer_norm_rows,
    small_layer_norm_backward_rows): None, or C-contiguous of any rank (the normalized
    shape: the front checked it; row_of flattens it)."""
    return _absent(p) or p.layout == "C"


# shape_of, length_fits, span and view_of are intrinsics: a few instructions written into
# the kernel that calls them.  As inline overloads each was also compiled on its own
# (Numba compiles an overload's implementation to type it, inlined or not): ~20-130 ms a
# helper and argument type on a kernel's first use.

@intrinsic
def shape_of(typingctx, a, like):
    """a's shape (like's for IN_PLACE)."""
    source = like if _in_place(a) else a

    def codegen(context, builder, sig, args):
        value = args[1] if _in_place(a) else args[0]
        return context.make_array(source)(context, builder, value).shape
    return types.UniTuple(types.intp, source.ndim)(a, like), codegen


@intrinsic
def length_fits(typingctx, p, cols):
    """Whether weight/bias p is None or has cols elements."""
    def codegen(context, builder, sig, args):
        if _absent(p):
            return cgutils.true_bit
        length = builder.extract_value(context.make_array(p)(context, builder, args[0]).shape, 0)
        return builder.icmp_signed("==", length,
                                   context.cast(builder, args[1], cols, types.intp))
    return types.boolean(p, cols), codegen


@intrinsic
def span(typingctx, a):
    """[start, end) byte addresses of an array's elements ((0, 0) for None/IN_PLACE): of a
    strided array, from its lowest to past its highest element's."""
    def codegen(context, builder, sig, args):
        intp = context.get_value_type(types.intp)
        if _absent(a) or _in_place(a):
            start = end = intp(0)
        elif a.layout == "C":
            array = context.make_array(a)(context, builder, args[0])
            start = builder.ptrtoint(array.data, intp)
            end = builder.add(start, builder.mul(array.nitems, array.itemsize))
        else:  # each axis reaches (n - 1) * stride bytes from the first element
            array = context.make_array(a)(context, builder, args[0])
            first = builder.ptrtoint(array.data, intp)
            start, end = first, builder.add(first, array.itemsize)
            shape = cgutils.unpack_tuple(builder, array.shape, a.ndim)
            strides = cgutils.unpack_tuple(builder, array.strides, a.ndim)
            for n, stride in zip(shape, strides):
                reach = builder.mul(builder.sub(n, intp(1)), stride)
                below = builder.icmp_signed("<", reach, intp(0))
                start = builder.add(start, builder.select(below, reach, intp(0)))
                end = builder.add(end, builder.select(below, intp(0), reach))
            empty = builder.icmp_signed("==", array.nitems, intp(0))
            end = builder.select(empty, start, end)
        return context.make_tuple(builder, sig.return_type, (start, end))
    return types.UniTuple(types.intp, 2)(a), codegen


@kernel(inline="always")
def apart(a, b):
    """Whether two arrays' memory does not overlap (None/IN_PLACE overlap nothing)."""
    a_lo, a_hi = span(a)
    b_lo, b_hi = span(b)
    return a_hi <= b_lo or b_hi <= a_lo


@kernel(inline="always")
def _the_input(output, input_):
    return input_


@kernel(inline="always")
def _the_output(output, input_):
    return output


def written_over(output):
    """Typing: (output, input) -> the array an output is written over: the input when the
    output is IN_PLACE (out=x, out=dy, residual_out=residual), else the output itself.
    What the parameters and statistics must not overlap (apart: IN_PLACE overlaps
    nothing)."""
    return _the_input if _in_place(output) else _the_output


def rows_layout_fits(a):
    """Typing: whether view_of reads a: C-contiguous, or rows of a 2-D array (rows_fit
    then checks its strides)."""
    return a.layout == "C" or a.ndim == 2


@kernel(inline="always")
def _strided_rows_fit(a):
    item = a.itemsize
    return a.strides[1] == item and a.strides[0] >= 0 and a.strides[0] % item == 0


@kernel(inline="always")
def _contiguous_rows_fit(a):
    return True


def rows_fit(a):
    """Typing: the check that view_of can read a's rows as a flat view with one row step:
    none for a C-contiguous array; for another 2-D one, elements adjacent in a row and
    rows a whole number of elements apart, forwards (x[:, -1, :] of (batch, seq,
    hidden), x[::2], np.broadcast_to rows)."""
    return _contiguous_rows_fit if a.layout == "C" else _strided_rows_fit


@intrinsic
def view_of(typingctx, a, cols):
    """The row view (a.reshape(-1), 0, cols) of a C-contiguous array -- of a 2-D one that
    rows_fit passed, (its elements from the first row's to the last's, 0, its row step)
    -- the starts and the steps int64 (the specialization other calls use); IN_PLACE and
    None stay as they are."""
    if _in_place(a) or _absent(a):
        return a(a, cols), lambda context, builder, sig, args: args[0]
    if not rows_layout_fits(a):
        return None  # (a typing error: read only as flat rows)
    flat = a.copy(ndim=1, layout="C")
    view = types.Tuple((flat, types.int64, types.int64))

    def codegen(context, builder, sig, args):
        array = context.make_array(a)(context, builder, args[0])
        out = context.make_array(flat)(context, builder)
        cols_value = context.cast(builder, args[1], cols, types.int64)
        if a.layout == "C":
            count, step = array.nitems, cols_value
        else:  # ((rows - 1) * step + cols elements: the rows and what lies between them)
            rows = builder.extract_value(array.shape, 0)
            step = builder.sdiv(builder.extract_value(array.strides, 0), array.itemsize)
            count = builder.add(builder.mul(builder.sub(rows, rows.type(1)), step), cols_value)
        populate_array(out, data=array.data, shape=[count], strides=[array.itemsize],
                       itemsize=array.itemsize, meminfo=array.meminfo, parent=array.parent)
        result = context.make_tuple(builder, view, (
            out._getvalue(), context.get_constant(types.int64, 0), step))
        return impl_ret_borrowed(context, builder, view, result)  # (a reference to a's data)
    return view(a, cols), codegen


@intrinsic
def row_of(typingctx, p):
    """A C-contiguous weight/bias as one 1-D row of its elements (a view); None as it is."""
    if _absent(p) or p.ndim == 1:
        return p(p), lambda context, builder, sig, args: impl_ret_borrowed(
            context, builder, sig.return_type, args[0])
    row = p.copy(ndim=1)

    def codegen(context, builder, sig, args):
        array = context.make_array(p)(context, builder, args[0])
        out = context.make_array(row)(context, builder)
        populate_array(out, data=array.data, shape=[array.nitems], strides=[array.itemsize],
                       itemsize=array.itemsize, meminfo=array.meminfo, parent=array.parent)
        return impl_ret_borrowed(context, builder, row, out._getvalue())
    return row(p), codegen


@kernel(inline="always")
def _last_axis(x, cols):
    return x.shape[-1]


@kernel(inline="always")
def _given(x, cols):
    return cols


@kernel(inline="always")
def _itself(p):
    return p


def rows_helpers(cols):
    """Typing: (row_length, as_row) for a small kernel's cols argument: None reads rows
    along x's last axis (x.shape[-1]) and weight/bias and their gradients as they come; an
    int is the length of the rows a C-contiguous x holds along its last axes, read with
    the parameters of the normalized shape flattened (row_of)."""
    return (_last_axis, _itself) if _absent(cols) else (_given, row_of)


def row_type(p):
    """Typing: the type row_of gives p."""
    return p if _absent(p) or p.ndim == 1 else p.copy(ndim=1)


@intrinsic
def as_mutable(typingctx, a):
    """An input array the kernels only read, typed as writeable (None and IN_PLACE as they
    are): read-only is a Numba array type of its own, and a read-only input would reach
    the row kernels as a variant of theirs that other calls never compile (seconds each);
    the machine code, and so the bits, are the same either way."""
    if _absent(a) or _in_place(a) or a.mutable:
        return a(a), lambda context, builder, sig, args: impl_ret_borrowed(
            context, builder, sig.return_type, args[0])
    writeable = a.copy(readonly=False)
    return writeable(a), lambda context, builder, sig, args: impl_ret_borrowed(
        context, builder, writeable, args[0])


# Rows of scratch statistics a small call keeps on the stack: one token up to a batch of
# 64 (1 KiB); more rows take a heap allocation (~60 ns with its release, a tenth of a
# (1, 768) kernel: the whole kernel call measured 580 -> 555 ns).
STACK_ROWS = 64
_STACK_BYTES = 2 * 8 * STACK_ROWS


@kernel(inline="always")
def scratch_stats(rows):
    """(mean, second) rows for rows_block: each a 1-D C-contiguous float64 array, as
    np.empty(rows) (the same type either way: one rows_block variant), on the stack for
    at most STACK_ROWS rows, else both in one allocation.  For serial calls only: a
    stack frame is the calling thread's."""
    both = stack_or_new((2, rows), np.float64, _STACK_BYTES)
    return both[0], both[1]
