"""Typed pointers into arrays, for the per-row functions.

A Numba array argument is seven machine words (meminfo, parent, size, itemsize, data,
shape, strides), and a function call passes each of them: the fused sweep of a row takes
seven arrays, so a call cost ~50 argument words, more than the work on a 64-element row.
A ``CPointer`` is one word, and Numba indexes it like an array (``p[j]``, ``p[j] = v``)
with no bounds or wraparound handling, so loops over it vectorize the same.  Pointers
carry no reference count: they are made and used inside kernels while the arrays they
point into are alive.
"""
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from ._elements import _absent, _in_place


@intrinsic
def _address(typingctx, array, index):
    sig = types.CPointer(array.dtype)(array, index)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.gep(ary.data, [args[1]])

    return sig, codegen


def address(array, index):
    """Pointer to array[index] (array: a flat, unit-stride array), or None for None."""


@overload(address, inline="always")
def _address_overload(array, index):
    if _absent(array):
        return lambda array, index: None
    return lambda array, index: _address(array, index)


def row_address(view, i, col):
    """Pointer to column col of row i of a row view (buf, start, stride); None and IN_PLACE
    stay what they are."""


@overload(row_address, inline="always")
def _row_address(view, i, col):
    if _absent(view) or _in_place(view):
        return lambda view, i, col: view
    return lambda view, i, col: _address(view[0], view[1] + i * view[2] + col)


@intrinsic
def _advance(typingctx, pointer, count):
    sig = pointer(pointer, count)

    def codegen(context, builder, signature, args):
        return builder.gep(args[0], [args[1]])

    return sig, codegen


def advance(pointer, count):
    """pointer + count elements; None and IN_PLACE stay what they are."""


@overload(advance, inline="always")
def _advance_overload(pointer, count):
    if _absent(pointer) or _in_place(pointer):
        return lambda pointer, count: pointer
    return lambda pointer, count: _advance(pointer, count)


@intrinsic(prefer_literal=True)
def stack_doubles(typingctx, count):
    """Pointer to `count` (a literal int) float64s in the calling kernel's stack frame,
    allocated once in its entry block: scratch a kernel keeps without an allocation (one
    and its release cost ~60 ns).  Valid while that kernel runs, in its own thread."""
    if not isinstance(count, types.IntegerLiteral):
        return None
    sig = types.CPointer(types.float64)(count)
    size = count.literal_value

    def codegen(context, builder, signature, args):
        return cgutils.alloca_once(builder, context.get_value_type(types.float64), size=size)
    return sig, codegen
