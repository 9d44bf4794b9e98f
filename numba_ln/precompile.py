"""``python -m numba_ln.precompile`` and ``numba_ln.precompile()``: compile the kernels of
the common calls into Numba's on-disk cache ahead of their first use (numba_ln/
_precompile.py does the work; imported only when used).

The module itself is callable, so that ``numba_ln.precompile(...)`` works whether the name
was reached as the package's attribute or by ``import numba_ln.precompile``.
"""
import sys
import types


def precompile(*args, **kwargs):
    from ._precompile import precompile as run

    return run(*args, **kwargs)


precompile.__doc__ = """Compile the kernels of the common calls into the on-disk cache:
``numba_ln.precompile(dtypes=..., functions=..., everything=False, processes=None,
progress=None)`` (``progress=print`` prints a line per finished task); see
numba_ln/_precompile.py."""


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        return precompile(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    from ._precompile import main

    sys.exit(main())
