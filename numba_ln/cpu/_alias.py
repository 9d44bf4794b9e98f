"""What the kernels tell LLVM about which row pointers never overlap: alias scopes on the
loads and stores they make through row pointers (_pointers).

A loop that stores y[j] while it loads x, w, b (and sums the next row) is vectorized by
LLVM behind a run-time overlap test, since LLVM cannot know that y overlaps none of them;
when y happens to start within a vector's reach after one of them (the allocator's
choice), the test fails and the scalar copy of the loop runs, whose sums add in another
order: the row's last bits then depended on where y was placed.  The front guarantees the
overlap never happens (an output overlapping an input is computed into a copy, y over x
is IN_PLACE and stored through `store` instead, s over r IN_PLACE through r itself), so
the kernels say so, with two scopes (_storage's loads and stores emit them through
`emit_load` and `emit_store`):

``output``  y's stores (`store_out`, OUTPUT), and the backward's dx stores when dx is not
            over dy (`_backward_elements.put_dx`: its fronts, @njit's too, read any
            other input that dx overlaps from a copy; its sweep varied so until
            2026-12-05).  Neither is read by a kernel, so every load through a row
            pointer (`load`, GET) carries `!noalias` of it.
``sums``    the fused forms' s = x + r stores (`keep`, SUM), and a sweep's loads of the
            row of s it normalizes (`_sweep.load_src`, GET_SUM).  s *is* read back, so
            only the loads of arrays a forward kernel never writes -- x, a residual r
            that s is not stored over, weight, bias (`load_input`, GET_INPUT) -- carry
            `!noalias` of it; y's and s's stores exclude each other.  (The loads of s
            are in the scope, not only excluded from nothing: LLVM's loop access
            analysis merges every pointer that may alias another into one set and tests
            all of a set's pointers against its stores at run time, so a load of s that
            x's loads might alias drew x and r into the test against s's stores; s
            lying within 256 bytes after r chose the scalar loop until 2026-12-06.)

LLVM then drops the tests that involved y, and the vector loop runs wherever y lies; the
one test left in a fused sweep is between s's stored row and the row of s it normalizes,
whose distance is s's own row stride (passed for any positive stride: the stored row
lies after the row read).  (A user's @njit call may pass y as exactly x's
memory: each element is then stored after its last load, and the stored value depends on
that load and the row's statistics, so no reordering LLVM may do crosses them.)  The
scopes are named by strings, so they are the same nodes in every module Numba links.
"""
from llvmlite import ir


def _scopes(module, *names):
    """The metadata list of the named scopes (one domain, "numba_ln")."""
    domain = module.add_metadata([ir.MetaDataString(module, "numba_ln")])
    return module.add_metadata([
        module.add_metadata([ir.MetaDataString(module, f"numba_ln.{name}"), domain])
        for name in names])


def emit_load(builder, pointer, index, access):
    """pointer[index], with access = (scope or None, excluded): in the scope, if any, and
    marked as overlapping none of the excluded scopes."""
    scope, excluded = access
    value = builder.load(builder.gep(pointer, [index]))
    if scope is not None:
        value.set_metadata("alias.scope", _scopes(builder.module, scope))
    value.set_metadata("noalias", _scopes(builder.module, *excluded))
    return value


def emit_store(builder, pointer, index, value, scope, excluded):
    """pointer[index] = value (of the pointee's type), in scope, overlapping none of the
    excluded scopes."""
    stored = builder.store(value, builder.gep(pointer, [index]))
    stored.set_metadata("alias.scope", _scopes(builder.module, scope))
    stored.set_metadata("noalias", _scopes(builder.module, *excluded))


# The scopes of each access, (scope, excluded) (the module docstring says why)
GET = (None, ("output",))  # any row
GET_INPUT = (None, ("output", "sums"))  # an array no kernel writes
GET_SUM = ("sums", ("output",))  # the row of s a fused sweep normalizes
OUTPUT = ("output", ("sums",))  # y's stores: (scope, excluded)
SUM = ("sums", ("output",))  # s's stores
