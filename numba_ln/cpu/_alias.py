"""What the kernels tell LLVM about which row pointers never overlap: alias scopes on the
loads and stores they make through row pointers (_pointers).

A loop that stores y[j] while it loads x, w, b (and sums the next row) is vectorized by
LLVM behind a run-time overlap test, since LLVM cannot know that y overlaps none of them;
when y happens to start within a vector's reach after one of them (the allocator's
choice), the test fails and the scalar copy of the loop runs, whose sums add in another
order: the row's last bits then depended on where y was placed.  The front guarantees the
overlap never happens (an output overlapping an input is computed into a copy, y over x
is IN_PLACE and stored through `store` instead, s over r IN_PLACE through r itself), so
the kernels say so, with two scopes:

``output``  y's stores (`set_output`).  y is never read by a kernel, so every load through
            a row pointer (`get`) carries `!noalias` of it.
``sums``    the fused forms' s = x + r stores (`set_sum`).  s *is* read back (the next
            sweep normalizes it), so only the loads of arrays a forward kernel never writes
            -- x, a residual r that s is not stored over, weight, bias (`get_input`) --
            carry `!noalias` of it; y's and s's stores exclude each other.

LLVM then drops the tests that involved y, and the vector loop runs wherever y lies; the
one test left in a fused sweep is between s's stored row and the row of s it normalizes,
whose distance is s's own row stride.  (A user's @njit call may pass y as exactly x's
memory: each element is then stored after its last load, and the stored value depends on
that load and the row's statistics, so no reordering LLVM may do crosses them.)  The
scopes are named by strings, so they are the same nodes in every module Numba links.
"""
from llvmlite import ir
from numba import types
from numba.extending import intrinsic


def _scopes(module, *names):
    """The metadata list of the named scopes (one domain, "numba_ln")."""
    domain = module.add_metadata([ir.MetaDataString(module, "numba_ln")])
    return module.add_metadata([
        module.add_metadata([ir.MetaDataString(module, f"numba_ln.{name}"), domain])
        for name in names])


def _loader(excluded):
    @intrinsic
    def load(typingctx, pointer, index):
        def codegen(context, builder, signature, args):
            value = builder.load(builder.gep(args[0], [args[1]]))
            value.set_metadata("noalias", _scopes(builder.module, *excluded))
            return value
        return pointer.dtype(pointer, index), codegen
    return load


def _storer(scope, excluded):
    @intrinsic
    def store(typingctx, pointer, index, value):
        def codegen(context, builder, signature, args):
            stored = builder.store(context.cast(builder, args[2], signature.args[2],
                                                signature.args[0].dtype),
                                   builder.gep(args[0], [args[1]]))
            stored.set_metadata("alias.scope", _scopes(builder.module, scope))
            stored.set_metadata("noalias", _scopes(builder.module, *excluded))
            return context.get_dummy_value()
        return types.none(pointer, index, value), codegen
    return store


get = _loader(("output",))  # pointer[index], any row
get_input = _loader(("output", "sums"))  # pointer[index] of an array no kernel writes
set_output = _storer("output", ("sums",))  # y's pointer[index] = value
set_sum = _storer("sums", ("output",))  # s's pointer[index] = value
