"""Parallel kernels that call their block kernel through its address.

A parallel kernel (``rows.rows_parallel``, ``backward.backward_rows``) runs tasks of
consecutive rows, each a call of a block kernel (``rows_block``, ``backward_block``).
Called the usual way, Numba links a copy of the block's whole code into every parallel
variant and optimizes and emits it again: ~0.9 s of a rows_parallel variant's 1.2 s of
compiling, ~1.6 s of backward_rows' 2 s (measured: a parallel kernel around a trivial
block compiles in 0.3 s), for the same machine code the block has on its own.

Here the parallel kernel calls the block's own compiled code, whose address the front
passes in (``block_address``: the block compiled, or loaded from the cache, for the
argument types of the call, as a serial call would).  An address is a fact of this
process, so it is an argument, never part of the cached kernel (a cached kernel that
referred to another kernel's code crashed a later process: numba#8578).  To make a wrong
address impossible, each call also passes the key of the block's argument types
(``block_key``: a hash of their names, computed while the parallel kernel compiles); a
parallel kernel whose key differs runs nothing and returns its own key, and the front
finds the address for that key and calls again (``run_blocks``).  The serial path and
the parallel one now run the very same machine code, so their bits are the same by
construction.
"""
import hashlib

from numba import types
from numba.core import cgutils
from numba.core.typing.typeof import Purpose, typeof
from numba.extending import intrinsic

from .. import _threading


def _key_of(argtypes):
    """A positive nonzero int64 naming a tuple of Numba types (their names are their
    identity: dtype, rank, layout, read-only and alignment of every array)."""
    digest = hashlib.blake2b(repr(tuple(argtypes)).encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "little") >> 2) | 1


@intrinsic
def block_key(typingctx, args):
    """The key of the types of the tuple args (a constant of the compiled kernel)."""
    key = _key_of(args.types)

    def codegen(context, builder, sig, llargs):
        return context.get_constant(types.int64, key)
    return types.int64(args), codegen


@intrinsic
def call_block(typingctx, address, args):
    """Call the compiled block at address with the elements of the tuple args (Numba's
    calling convention; the block returns None).  An exception the block raises is
    passed on, as from a direct call."""
    def codegen(context, builder, sig, llargs):
        argtypes = sig.args[1].types
        values = cgutils.unpack_tuple(builder, llargs[1], len(argtypes))
        fnty = context.call_conv.get_function_type(types.none, argtypes)
        block = builder.inttoptr(llargs[0], fnty.as_pointer())
        status, _ = context.call_conv.call_function(builder, block, types.none, argtypes,
                                                    values)
        with builder.if_then(status.is_error, likely=False):
            context.call_conv.return_status_propagate(builder, status)
        return context.get_dummy_value()
    return types.none(address, args), codegen


_ADDRESSES = {}  # key -> address of the compiled block for the types of that key
_LAST = {}  # parallel kernel -> (address, key) of its last call: the likely next one


def block_address(block, key, args):
    """The address of block's code compiled for the types of args, which must have the
    given key (else RuntimeError: a wrong address is never returned)."""
    found = _ADDRESSES.get(key)
    if found is None:
        argtypes = tuple(typeof(a, Purpose.argument) for a in args)
        if _key_of(argtypes) != key:
            raise RuntimeError(f"numba_ln: internal error: {block.__name__} called with "
                               f"{argtypes}, which the parallel kernel did not expect")
        block.compile(argtypes)
        compiled = block.overloads[argtypes]
        if compiled.signature.return_type != types.none:
            raise RuntimeError(f"numba_ln: internal error: {block.__name__} returns a value")
        found = compiled.library.get_pointer_to_function(compiled.fndesc.llvm_func_name)
        _ADDRESSES[key] = found
    return found


def run_blocks(parallel, block, block_args, *args):
    """parallel(address, key, *args): the parallel kernel, whose tasks call block.
    block_args() gives Python values of the types the kernel passes block (called only
    for a key this process has not met).  Tries the block of the kernel's last call
    first: a kernel that expected another block's types runs nothing and returns their
    key, and is called again with that block."""
    address, key = _LAST.get(parallel, (0, 0))
    expected = _threading.launch(parallel, address, key, *args)
    if expected:
        address = block_address(block, expected, block_args())
        _LAST[parallel] = (address, expected)
        if _threading.launch(parallel, address, expected, *args):
            raise RuntimeError(f"numba_ln: internal error: {parallel.__name__} refused "
                               "the block of its own key")
