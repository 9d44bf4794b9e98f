"""The same machine code in the process that compiles a kernel and in every process that
loads it from the cache.

How a kernel was linked: Numba compiles each helper kernel (a dispatcher of its own, such
as ``_sweep.sweep``) into a library of its own, and links a *copy* of that library's
optimized IR into each caller, marked ``linkonce_odr``; the caller's module is then
optimized again as a whole, and LLVM may vectorize or unroll the copy of a summing loop
differently from the original (a loop's order of additions is the compiler's choice
under ``reassoc``).  In the process that compiled both, the JIT linker binds the caller's
calls of the copy, a weak symbol, to the original, which it already holds; a process that
loads the caller from the cache has only the caller's object file and runs the copy.  The
two orders of addition then gave different last bits: (64, 768) float32 ``layer_norm``
cold and cached differed in a few elements (README, "Same bits").

The fix: each kernel's library makes the copies linked into it ``internal`` once its
module is optimized (the optimization is unchanged, so the machine code is the cached
one), and the calls bind to them in both processes.  The originals keep their external
names, for their own callers from Python, and the IR a library gives its callers to link
keeps the copies weak, so that a caller still merges the copies its kernels bring.

Thin callers (_jit.link_after_optimizing: the small kernels and their bodies, which
call rows_block or backward_block once a call, now by name (_named_calls), and the few
helper overloads; the channels kernels' tile task and serial loop, which call their
helpers once a tile) link what they call after their own module is optimized: the
linked IR is optimized already, and LLVM's full module passes over it were most of such
a caller's compile (cold small-call forms 18% faster to compile, cold channels-first
calls 20%, the same bits and speed: README, First use and caching).

This touches Numba internals (a pass that creates the library, as NativeLowering would,
and wraps the library's last step); on a Numba whose internals differ the guards leave
the kernels as Numba links them.
"""
from llvmlite import binding as ll
from numba.core.compiler import CompilerBase, DefaultPassBuilder
from numba.core.compiler_machinery import LoweringPass, register_pass
from numba.core.typed_passes import AnnotateTypes

from ._vector_width import prefer_vector_width


def _bind_copies_locally(library):
    finalize = getattr(library, "_finalize_final_module", None)
    for_linking = getattr(library, "_get_module_for_linking", None)
    if finalize is None or for_linking is None or not hasattr(library, "_final_module"):
        return
    copies = []

    def finalize_with_local_copies():
        for fn in library._final_module.functions:
            if not fn.is_declaration and fn.linkage == ll.Linkage.linkonce_odr:
                fn.linkage = ll.Linkage.internal
                copies.append(fn.name)
        finalize()

    # The IR that callers link in (and that the cache keeps for them) has the copies weak
    # again: a caller linking several kernels then keeps one copy of each helper, as
    # before (internal ones would each bring their own: cold compiles took 14% longer).
    def module_for_linking():
        if library._shared_module is None and copies:
            module = for_linking()
            if module is library._final_module:
                module = module.clone()
            for name in copies:
                module.get_function(name).linkage = ll.Linkage.linkonce_odr
            library._shared_module = module
        return for_linking()

    library._finalize_final_module = finalize_with_local_copies
    library._get_module_for_linking = module_for_linking


# The attribute that marks a thin caller's Python function (_jit.link_after_optimizing)
LINK_LATE = "_numba_ln_link_late"


def _link_after_optimizing(library):
    """Link the libraries this one calls after optimizing its own module: their IR is
    optimized already, and LLVM's full module passes over the copies cost most of a thin
    caller's compile (a small-call wrapper: 0.44 s of module passes, 0.16 s emitting code).
    Nothing is inlined from them, which a caller that calls each once a call (the small
    kernels call rows_block or backward_block) does not need."""
    optimize = getattr(library, "_optimize_final_module", None)
    finalize = getattr(library, "finalize", None)
    if optimize is None or finalize is None or not all(
            hasattr(library, name) for name in ("_linking_libraries", "_reload_init")):
        return
    late = []

    def optimize_then_link():
        optimize()
        for dependency in late:
            library._reload_init.update(dependency._reload_init)
            library._final_module.link_in(dependency._get_module_for_linking(),
                                          preserve=True)

    def finalize_linking_late():
        late[:] = library._linking_libraries
        library._linking_libraries = []
        try:
            finalize()
        finally:
            library._linking_libraries = late[:]

    library._optimize_final_module = optimize_then_link
    library.finalize = finalize_linking_late


@register_pass(mutates_CFG=False, analysis_only=True)
class LocalCopies(LoweringPass):
    """Creates the kernel's library before lowering (as NativeLowering does when there is
    none), makes the copies linked into it bind locally (module docstring) and gives its
    functions the kernels' vector width (_vector_width)."""

    _name = "numba_ln_local_copies"

    def __init__(self):
        LoweringPass.__init__(self)

    def run_pass(self, state):
        if state.library is None:
            state.library = state.targetctx.codegen().create_library(
                state.func_id.func_qualname)
            state.library.enable_object_caching()
        _bind_copies_locally(state.library)
        prefer_vector_width(state.library)
        if getattr(state.func_id.func, LINK_LATE, False):
            _link_after_optimizing(state.library)
        return False


class Pipeline(CompilerBase):
    """Numba's nopython pipeline, with LocalCopies before lowering."""

    def define_pipelines(self):
        pm = DefaultPassBuilder.define_nopython_pipeline(self.state)
        try:
            pm.add_pass_after(LocalCopies, AnnotateTypes)
        except ValueError:  # (a Numba whose pipeline has no AnnotateTypes: Numba's linking)
            return [pm]
        pm.finalize()
        return [pm]
