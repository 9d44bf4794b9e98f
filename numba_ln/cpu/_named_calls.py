"""Calls of a block kernel by a symbol name, so that a caller's machine code holds no copy
of the block's.

Numba links a copy of a called kernel's code into every caller and emits it again: each
variant of a small kernel (``small.small_layer_norm`` for a read-only x, a 1-D x, float64
weights, returned statistics ...) spent 0.2-0.4 s of its compiling on another copy of
``rows.rows_block``, the same machine code each time.  A call made by ``named_call`` goes
to the block's own compiled code instead, through an external symbol that names the block
and its argument types:

- While the caller compiles, the block is compiled (or loaded from the cache) for the
  argument types of the call, as for a direct call, and the symbol is bound to its code
  in this process (``llvmlite.binding.add_symbol``).
- The caller's compiled library records a reload step (Numba's ``reload_init``, which
  is how a cached parallel kernel makes sure its threading layer is loaded): a process
  that loads the caller from the cache runs it first, binding the symbol to the block
  compiled or loaded in that process, before the caller's object code is linked.

The symbol is a name, not an address, so the cached caller stays valid in every process
(an address compiled into a cached kernel crashed a later process: numba#8578; the
parallel kernels pass addresses as arguments instead, _indirect).  The call is an ordinary
call of the block's code: nothing of the block is inlined into the caller, as with the
thin callers' late linking before (_local_copies).

Only numba_ln's own small kernels call by name: each is a top-level kernel that no other
compiled function links.  A linking caller inherits a library's reload steps only from a
library compiled in its own process (one loaded from the cache has none: Numba keeps them
on the loaded compile result), and a ``cfunc`` saves its steps before its library has
them: a user's cached function that called by name, linked into another cached function
or compiled as a cfunc, was saved without the step, and the process that loaded it
crashed on the unbound symbol.  So numba_ln's code inside a user's @njit function calls
the blocks directly, as Numba links any kernel (_njit/core.py, _njit/backward.py).  The
symbol and the step carry the digest of the kernels' sources, and a step from other
sources raises a RuntimeError (never for numba_ln's own cache entries, which the same
digest stamps: _jit) rather than bind a caller to a block whose arguments may differ.
"""
import hashlib
import importlib

from llvmlite import binding as ll
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ._jit import SOURCES_DIGEST

_BOUND = {}  # symbol -> address bound in this process


def _symbol(block, argtypes):
    """The symbol of block compiled for argtypes (their names are their identity: dtype,
    rank, layout, read-only and alignment of every array)."""
    function = block.py_func
    name = f"{function.__module__}.{function.__qualname__}"
    digest = hashlib.blake2b(f"{SOURCES_DIGEST}{name}{tuple(argtypes)!r}".encode(),
                             digest_size=16)
    return f"{name}.{digest.hexdigest()}"


def _bind(block, argtypes):
    """Compile (or load) block for argtypes and bind its symbol to the code: the symbol,
    and the compiled signature."""
    symbol = _symbol(block, argtypes)
    block.compile(argtypes)
    compiled = block.overloads[tuple(argtypes)]
    if symbol not in _BOUND:
        address = compiled.library.get_pointer_to_function(compiled.fndesc.llvm_func_name)
        if not address:
            raise RuntimeError(f"numba_ln: internal error: no code for {symbol}")
        ll.add_symbol(symbol, address)
        _BOUND[symbol] = address
    return symbol, compiled.signature


class Rebind:
    """A cached caller's reload step: binds the symbol of one block and argument types in
    the loading process (picklable by its block's module and name), if the caller was
    compiled from these sources."""

    __slots__ = ("module", "qualname", "argtypes", "sources")

    def __init__(self, module, qualname, argtypes, sources=SOURCES_DIGEST):
        self.module, self.qualname = module, qualname
        self.argtypes, self.sources = tuple(argtypes), sources

    def __call__(self):
        if self.sources != SOURCES_DIGEST:
            raise RuntimeError(
                "numba_ln: a cached kernel was compiled from other numba_ln sources; delete "
                "the cache files (the *.nbi and *.nbc files in numba_ln's __pycache__ "
                "folders, or in NUMBA_CACHE_DIR) and call it again")
        block = getattr(importlib.import_module(self.module), self.qualname)
        _bind(block, self.argtypes)

    def __reduce__(self):
        return Rebind, (self.module, self.qualname, self.argtypes, self.sources)

    def __eq__(self, other):
        return isinstance(other, Rebind) and self.__reduce__() == other.__reduce__()

    def __hash__(self):
        return hash(self.__reduce__())


def named_call(block):
    """An intrinsic calling block (a kernel) with the elements of a tuple by its symbol:
    ``call(args)`` is ``block(*args)``, its value and its exceptions too."""

    @intrinsic
    def call(typingctx, args):
        # (as a direct call types it: literal values as the dispatcher takes them)
        signature = typingctx.resolve_function_type(types.Dispatcher(block), args.types, {})
        if signature is None:
            return None
        argtypes = signature.args

        def codegen(context, builder, sig, llargs):
            symbol, compiled = _bind(block, argtypes)
            context.active_code_library._reload_init.add(
                Rebind(block.py_func.__module__, block.py_func.__qualname__, argtypes))
            values = [context.cast(builder, value, given, wanted) for value, given, wanted
                      in zip(cgutils.unpack_tuple(builder, llargs[0], len(argtypes)),
                             args.types, argtypes)]
            returns = compiled.return_type
            fnty = context.call_conv.get_function_type(returns, argtypes)
            function = cgutils.get_or_insert_function(builder.module, fnty, symbol)
            status, value = context.call_conv.call_function(builder, function, returns,
                                                            argtypes, values)
            with builder.if_then(status.is_error, likely=False):
                context.call_conv.return_status_propagate(builder, status)
            return context.cast(builder, value, returns, sig.return_type)
        return signature.return_type(args), codegen
    return call
