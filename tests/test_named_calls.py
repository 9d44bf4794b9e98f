"""The small kernels reach the row kernels' own code by a symbol name (cpu/_named_calls):
no copy of rows_block/backward_block in their code, a reload step that binds the name in
a process that loads them from the cache; a user's cached functions (nested, cfuncs) link
their own copy and reload in fresh processes."""
import os
import pickle
import re
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import numba_ln
from numba_ln import _small_backward_front, _small_front
from numba_ln.cpu import _named_calls
from numba_ln.cpu._named_calls import Rebind
from numba_ln.cpu.rows import rows_block


def _variant_used(monkeypatch, front, name, call):
    """The compiled variant of the kernel `front.name` that call() runs (not the kernel's
    last variant: an earlier test in this process may have compiled that one)."""
    kernel, used = getattr(front, name), []

    def recording(*args):
        used.append(tuple(kernel.typeof_pyval(a) for a in args))
        return kernel(*args)

    monkeypatch.setattr(front, name, recording)
    call()
    monkeypatch.undo()
    assert len(used) == 1, f"the call did not take {name}"
    return kernel.overloads[used[0]]


def _steps(compiled):
    """The reload steps of a compiled variant (compiled or loaded: the cache keeps them)."""
    return [s for s in compiled.reload_init if isinstance(s, Rebind)]


@pytest.mark.parametrize("form", ["forward", "backward"])
def test_the_small_kernels_carry_the_step_that_binds_the_block(monkeypatch, form):
    x = np.linspace(-2, 3, 4 * 64, dtype=np.float32).reshape(4, 64)
    g = np.linspace(0.5, 1.5, 64, dtype=np.float32)
    if form == "forward":
        compiled = _variant_used(monkeypatch, _small_front, "small_layer_norm",
                                 lambda: numba_ln.layer_norm(x, g, g))
        block = "rows_block"
    else:
        compiled = _variant_used(monkeypatch, _small_backward_front, "small_rms_norm_backward",
                                 lambda: numba_ln.rms_norm_backward(x[::-1].copy(), x, g))
        block = "backward_block"
    steps = _steps(compiled)
    assert [s.qualname for s in steps] == [block]
    again = pickle.loads(pickle.dumps(steps[0]))
    assert again == steps[0] and hash(again) == hash(steps[0])
    again()  # (binds the same code again in this process)
    code = getattr(__import__(again.module, fromlist=["_"]), block)
    assert _named_calls._symbol(code, again.argtypes) in _named_calls._BOUND


def test_a_small_kernel_declares_the_block_and_holds_no_copy(monkeypatch):
    # (a fresh compile of the body's variant, for its IR: a float64 x of 1 row, rows of 8)
    x = np.linspace(-1, 1, 3 * 8).reshape(3, 8)
    compiled = _variant_used(monkeypatch, _small_front, "small_layer_norm",
                             lambda: numba_ln.layer_norm(x, x[0], x[1]))
    library = compiled.library
    try:
        with warnings.catch_warnings():  # (Numba warns that cached code has no IR)
            warnings.simplefilter("ignore", UserWarning)
            ir = library.get_llvm_str()
    except Exception:  # noqa: BLE001  (loaded from the cache: object code only)
        pytest.skip("the kernel was loaded from the cache")
    if "define" not in ir:  # (loaded from the cache: the module's header only)
        pytest.skip("the kernel was loaded from the cache")
    step = _steps(compiled)[0]
    symbol = _named_calls._symbol(rows_block, step.argtypes)
    assert re.search(rf'declare i32 @"?{re.escape(symbol)}"?\(', ir)
    assert not any(line.startswith("define") and "rows_block" in line
                   for line in ir.splitlines())


def test_a_step_from_other_sources_says_to_delete_the_cache():
    stale = Rebind("numba_ln.cpu.rows", "rows_block", (), sources="0" * 64)
    with pytest.raises(RuntimeError, match=r"other numba_ln sources; delete the cache"):
        stale()


_USER_MODULE = """
from numba import carray, cfunc, njit, types
import numba_ln


@njit(cache=True)
def inner(x, g, b):
    return numba_ln.layer_norm(x, g, b)


@njit(cache=True)
def outer(x, g, b):
    return inner(x, g, b) * 1.0


@cfunc(types.void(types.CPointer(types.float32), types.CPointer(types.float32), types.intp),
       cache=True)
def as_cfunc(xp, yp, n):
    numba_ln.rms_norm_backward(carray(xp, (1, n)), carray(xp, (1, n)), None,
                               out=carray(yp, (1, n)), param_grads=False)
"""

_RUN = """
import ctypes, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import numba_ln
import user_fns
x = np.linspace(-1, 1, 3 * 64, dtype=np.float32).reshape(3, 64)
g = np.full(64, 0.5, np.float32)
for function in sys.argv[2].split(","):
    if function == "cfunc":
        out = np.empty(64, np.float32)
        p = ctypes.POINTER(ctypes.c_float)
        user_fns.as_cfunc.ctypes(x[0].ctypes.data_as(p), out.ctypes.data_as(p), 64)
        expected = numba_ln.rms_norm_backward(x[:1], x[:1], param_grads=False)[0][0]
        np.testing.assert_allclose(out, expected, rtol=2e-6, atol=2e-6)
    else:
        y = getattr(user_fns, function)(x, g, g)
        np.testing.assert_allclose(y, numba_ln.layer_norm(x, g, g), rtol=2e-6, atol=2e-6)
print("ok")
"""


def test_cached_user_functions_nested_or_cfuncs_reload(tmp_path):
    """A cached user function compiled while the function it calls was loaded from the
    cache, and a cached cfunc, each loaded by a fresh process: with the small kernels'
    named calls in numba_ln's code for @njit use, both crashed there (the reload step
    was not saved with them)."""
    (tmp_path / "user_fns.py").write_text(textwrap.dedent(_USER_MODULE))
    root = os.path.dirname(os.path.dirname(os.path.abspath(numba_ln.__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))

    def run(functions):
        done = subprocess.run([sys.executable, "-c", _RUN, str(tmp_path), functions],
                              env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
        assert done.stdout.strip().splitlines()[-1] == "ok"

    # (compile inner and the cfunc; compile outer with inner loaded, load the cfunc;
    # load outer)
    for functions in ("inner,cfunc", "outer,cfunc", "outer"):
        run(functions)
