"""Compiled callers reach the row kernels' own code by a symbol name (cpu/_named_calls):
no copy of rows_block/backward_block in a caller's code, a reload step that binds the name
in a process that loads the caller from the cache, and a clear error for a user's cached
function compiled with other numba_ln sources."""
import os
import pickle
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from numba import njit

import numba_ln
from numba_ln.cpu import _named_calls
from numba_ln.cpu._named_calls import Rebind


@njit
def _user_forward(x, g, b):
    return numba_ln.layer_norm(x, g, b)


@njit
def _user_backward(dy, x, g):
    return numba_ln.layer_norm_backward(dy, x, g)


@pytest.mark.parametrize("function, block", [(_user_forward, "rows_block"),
                                             (_user_backward, "backward_block")])
def test_a_users_function_calls_the_block_by_name(function, block):
    x = np.linspace(-2, 3, 4 * 64, dtype=np.float32).reshape(4, 64)
    g = np.linspace(0.5, 1.5, 64, dtype=np.float32)
    args = (x, g, g) if block == "rows_block" else (x[::-1].copy(), x, g)
    function(*args)
    compiled = function.overloads[function.signatures[-1]]
    steps = [s for s in compiled.reload_init if isinstance(s, Rebind)]
    assert [s.qualname for s in steps] == [block]
    # the block's code is not in the function's module: only declared, by its symbol
    kernel = getattr(__import__(steps[0].module, fromlist=["_"]), block)
    symbol = _named_calls._symbol(kernel, steps[0].argtypes)
    ir = compiled.library.get_llvm_str()
    assert re.search(rf'declare i32 @"?{re.escape(symbol)}"?\(', ir)
    assert not any(line.startswith("define") and block in line for line in ir.splitlines())


def test_the_reload_step_pickles_and_binds():
    x = np.ones((2, 8), np.float32)
    _user_forward(x, x[0], x[0])
    compiled = _user_forward.overloads[_user_forward.signatures[0]]
    step = next(s for s in compiled.reload_init if isinstance(s, Rebind))
    again = pickle.loads(pickle.dumps(step))
    assert again == step and hash(again) == hash(step)
    again()  # (binds the same code again in this process)
    block = getattr(__import__(step.module, fromlist=["_"]), step.qualname)
    assert _named_calls._symbol(block, step.argtypes) in _named_calls._BOUND


def test_a_step_from_other_sources_says_to_delete_the_cache():
    stale = Rebind("numba_ln.cpu.rows", "rows_block", (), sources="0" * 64)
    with pytest.raises(RuntimeError, match=r"another version of numba_ln; delete its cache"):
        stale()


_USER_MODULE = """
from numba import njit
import numba_ln


@njit(cache=True)
def norm(x, g, b):
    return numba_ln.layer_norm(x, g, b)
"""

_RUN = """
import sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import numba_ln
from numba_ln.cpu import _named_calls
if sys.argv[2] == "upgraded":  # (as if numba_ln's sources had changed since)
    _named_calls.SOURCES_DIGEST = "0" * 64
import user_norm
x = np.linspace(-1, 1, 3 * 64, dtype=np.float32).reshape(3, 64)
g = np.full(64, 0.5, np.float32)
try:
    y = user_norm.norm(x, g, g)
except RuntimeError as exc:
    print("error:", exc)
else:
    assert np.array_equal(y, numba_ln.layer_norm(x, g, g))
    print("hits", sum(user_norm.norm.stats.cache_hits.values()))
"""


def test_a_cached_user_function_reloads_or_says_it_is_stale(tmp_path):
    """A fresh process loads the user's cached function (the block bound by its reload
    step, the same bits); with other numba_ln sources the call raises the clear error,
    not a crash or another block's code."""
    (tmp_path / "user_norm.py").write_text(textwrap.dedent(_USER_MODULE))
    root = os.path.dirname(os.path.dirname(os.path.abspath(numba_ln.__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))

    def run(mode):
        done = subprocess.run([sys.executable, "-c", _RUN, str(tmp_path), mode], env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().splitlines()[-1]

    assert run("fresh") == "hits 0"
    assert run("fresh") == "hits 1"
    assert run("upgraded").startswith("error: numba_ln: a cached function that calls "
                                      "numba_ln was compiled with another version")
