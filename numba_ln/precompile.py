"""``python -m numba_ln.precompile`` and ``numba_ln.precompile()``: compile the kernels of
the common calls into Numba's on-disk cache ahead of their first use (numba_ln/
_precompile.py does the work; the package imports this module only when used).

The module itself is callable, so that ``numba_ln.precompile(...)`` works whether the name
was reached as the package's attribute or by ``import numba_ln.precompile``.
"""
import importlib
import inspect
import sys
import types

# (the function itself, so that help() and inspect.signature show its parameters;
# _precompile imports nothing of the kernels)
from ._precompile import precompile


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        return precompile(*args, **kwargs)

    def __reduce__(self):
        # (by reference, as functions pickle: modules do not pickle, and a process pool
        # or dask's client.run(numba_ln.precompile) sends the callable to its workers)
        return importlib.import_module, (self.__name__,)


sys.modules[__name__].__class__ = _CallableModule
__signature__ = inspect.signature(precompile)  # (the module's, as a callable's: help())

if __name__ == "__main__":
    from ._precompile import main

    sys.exit(main())
