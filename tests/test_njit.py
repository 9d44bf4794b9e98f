"""numba_ln called from users' @njit code (numba_ln/_njit/).

Every compiled result is compared with the Python call on the same input (one
implementation: the same kernels, to the accuracy bar) and with the float64 oracle.  Each @njit function here
costs a compilation (~1-2 s), so the functions are few and each checks several things.
"""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from _oracle import assert_close
from numba import njit, prange
from numba.core.errors import TypingError

import numba_ln
import numba_ln._njit  # noqa: F401  (registers the overloads; `import numba_ln` does too)
from numba_ln import add_layer_norm, add_rms_norm, layer_norm, moments, rms_norm
from numba_ln import reference as ref


def assert_same(got, expected):
    """The same results: same types, shapes and dtypes, NaN where NaN, and values that agree
    to the accuracy bar.  (Not always to the last bit: Numba compiles the kernels again
    inside the user's function, and LLVM may vectorize a sum's remainder differently.)"""
    if isinstance(expected, tuple):
        assert isinstance(got, tuple) and len(got) == len(expected)
        for g, e in zip(got, expected):
            assert_same(g, e)
        return
    assert isinstance(got, np.ndarray)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert np.array_equal(np.isnan(got), np.isnan(expected))
    infinite = np.isinf(expected)  # (the mean of a row holding inf: NumPy's, +-inf)
    assert np.array_equal(got[infinite], expected[infinite])
    finite = np.isfinite(expected)
    assert_close(got[finite], expected[finite].astype(np.float64), scale=4)


# --- the functions compiled for these tests ---------------------------------------------------

@njit
def pre_ln_block(x, r, g, b):
    # The module attribute and the imported name are the same function object.
    s = x + r
    return numba_ln.layer_norm(s, g, b), layer_norm(s, g, b)


@njit
def norms_with_stats(x, g, b, w):
    return layer_norm(x, g, b, return_stats=True), rms_norm(x, w, eps=1e-5, return_stats=True)


@njit
def fused_adds(x, r, g, b, w, y_out):
    ln = add_layer_norm(x, r, g, b, return_stats=True)
    one_row = add_layer_norm(x, r[-1, -1], g, eps=1e-3)       # residual broadcast over rows
    rms = add_rms_norm(x, r, w, out=y_out, residual_out=r)     # residual stream in place
    return ln, one_row, rms


@njit
def odd_broadcasts(x, column, one):
    # a residual column with as many rows as x has columns; parameters of length 1
    return (add_layer_norm(x, column), add_rms_norm(x, column), layer_norm(x, one, one),
            rms_norm(x, one))


@njit
def mixed_add(x, r):
    return numba_ln.add_rms_norm(x, r)


@njit
def moment_calls(x, v):
    return moments(x), moments(x, -1, keepdims=True), moments(v)


@njit(parallel=True)
def rows_in_prange(x, g, b, w, y):
    z = np.empty_like(x)
    for i in prange(x.shape[0]):
        layer_norm(x[i], g, b, out=y[i])      # one row per iteration, written in place
        z[i] = rms_norm(x[i], w)              # or allocating
    return y, z


@njit(fastmath=True, error_model="numpy")
def with_fastmath(x, g, b):
    return layer_norm(x, g, b, return_stats=True)


@njit
def ln_any(x, weight, out, eps):
    return layer_norm(x, weight, eps=eps, out=out)


@njit
def add_into(x, r, out, residual_out):
    return add_layer_norm(x, r, out=out, residual_out=residual_out)


# --- tests -------------------------------------------------------------------------------------

def test_pre_ln_block(rng):
    # float32 here; float64 in the fastmath, layout and error tests.
    x = (3 + rng.standard_normal((7, 96))).astype(np.float32)
    r = rng.standard_normal((7, 96)).astype(np.float32)
    g, b = rng.standard_normal((2, 96)).astype(np.float32)
    y1, y2 = pre_ln_block(x, r, g, b)
    expected = numba_ln.layer_norm(x + r, g, b)
    assert_same(y1, expected)
    assert_same(y2, expected)
    assert_close(y1, ref.layer_norm(x + r, g, b)[0], scale=8)


def test_norms_with_stats(rng):
    x = (1e4 + rng.standard_normal((3, 5, 768))).astype(np.float32)
    g, b, w = (rng.standard_normal(768).astype(np.float32) for _ in range(3))
    ln, rms = norms_with_stats(x, g, b, w)
    assert_same(ln, numba_ln.layer_norm(x, g, b, return_stats=True))
    assert_same(rms, numba_ln.rms_norm(x, w, eps=1e-5, return_stats=True))
    y, mean, rstd = ln
    y_ref, mean_ref, rstd_ref = ref.layer_norm(x, g, b)
    assert mean.shape == rstd.shape == (3, 5, 1)
    assert_close(y, y_ref, scale=8)
    assert_close(mean, mean_ref, scale=1e4)
    assert np.abs(rstd / rstd_ref - 1).max() < 2e-6
    assert_close(rms[0], ref.rms_norm(x, w, eps=1e-5)[0], scale=8)


def test_fused_adds(rng):
    x = rng.standard_normal((4, 6, 128)).astype(np.float32)
    r = rng.standard_normal((4, 6, 128)).astype(np.float32)
    g, b, w = (rng.standard_normal(128).astype(np.float32) for _ in range(3))
    r0 = r.copy()
    y_out = np.empty_like(x)
    expected = (numba_ln.add_layer_norm(x, r0, g, b, return_stats=True),
                numba_ln.add_layer_norm(x, r0[-1, -1], g, eps=1e-3),
                numba_ln.add_rms_norm(x, r0, w))
    ln, one_row, (y, s) = fused_adds(x, r, g, b, w, y_out)
    assert_same(ln, expected[0])
    assert_same(one_row, expected[1])
    assert_same((y, s), expected[2])
    assert y is y_out and s is r                  # out= and residual_out= are the results
    assert_close(ln[0], ref.layer_norm(x + r0, g, b)[0], scale=8)
    assert_close(y, ref.rms_norm(x + r0, w)[0], scale=8)


def test_odd_broadcasts_read_as_numpy_broadcasts(rng):
    """A (rows, 1) residual with rows == cols is a column broadcast along the rows (it was
    read as a row: its size equals a row's), and C-contiguous length-1 weight and bias of
    the result dtype broadcast along the row (they raised)."""
    x = rng.standard_normal((5, 5)).astype(np.float32)
    column = (10.0 * np.arange(5.0)).astype(np.float32).reshape(5, 1)
    one = np.full(1, 2.0, np.float32)
    got = odd_broadcasts(x, column, one)
    expected = (numba_ln.add_layer_norm(x, column), numba_ln.add_rms_norm(x, column),
                numba_ln.layer_norm(x, one, one), numba_ln.rms_norm(x, one))
    assert_same(got, expected)
    assert np.array_equal(got[0][1], x + column)  # s = x + residual, broadcast as NumPy does
    assert_close(got[0][0], ref.layer_norm(x + column)[0], scale=8)
    assert_close(got[2], ref.layer_norm(x, np.full(5, 2.0), np.full(5, 2.0))[0], scale=8)


def test_moments_and_integer_input(rng):
    x = 100 + rng.standard_normal((3, 4, 33))
    v = rng.integers(-5, 5, 17)
    got = moment_calls(x, v)
    assert_same(got, (numba_ln.moments(x), numba_ln.moments(x, keepdims=True),
                      numba_ln.moments(v)))
    assert got[2][0].shape == () and got[2][0].dtype == np.float64  # 1-D in: 0-d out
    for a, e in zip(got[0], ref.moments(x)):
        assert_close(a, e, scale=100)


def test_integer_x_with_a_float32_residual_gives_pythons_dtype(rng):
    """int16 x + float32 residual is float32, np.result_type of the raw dtypes, as from
    Python; @njit code took x's result dtype (float64) first and returned float64."""
    xi = rng.integers(-50, 50, (3, 16)).astype(np.int16)
    r = rng.standard_normal((3, 16)).astype(np.float32)
    got = mixed_add(xi, r)
    assert_same(got, numba_ln.add_rms_norm(xi, r))
    assert got[0].dtype == np.float32 and np.array_equal(got[1], xi + r)


def test_prange_loop_over_rows(rng):
    # Below _config.SERIAL_MAX_ELEMENTS, so that Python's call compiles no parallel kernel
    # here; larger inputs run the same row function in rows_parallel.
    x = rng.standard_normal((37, 768)).astype(np.float32)
    g, b, w = (rng.standard_normal(768).astype(np.float32) for _ in range(3))
    y, z = rows_in_prange(x, g, b, w, np.empty_like(x))
    assert_same(y, numba_ln.layer_norm(x, g, b))
    assert_same(z, numba_ln.rms_norm(x, w))


def test_callers_fastmath_does_not_leak(rng):
    # The user's fastmath would otherwise reach the rstd arithmetic (and kernels compiled
    # from here); NaN and inf must propagate exactly as from Python.
    x = rng.standard_normal((5, 40))
    x[1, 3], x[2, :] = np.nan, 7.0
    x[3, 0] = np.inf
    g, b = rng.standard_normal(40), rng.standard_normal(40)
    assert_same(with_fastmath(x, g, b), numba_ln.layer_norm(x, g, b, return_stats=True))


def test_layouts_out_and_in_place(rng):
    wide = rng.standard_normal((6, 80))
    g = rng.standard_normal(50)
    out = np.zeros((6, 50), order="F")
    for x in wide[:, 10:60], wide[::-1, :50]:   # 'A' layout: copied once
        expected = numba_ln.layer_norm(np.ascontiguousarray(x), g)
        assert ln_any(x, g, out, 1e-5) is out     # an 'F' out: written through a copy
        assert_same(np.ascontiguousarray(out), expected)
    x = np.ascontiguousarray(wide[:, :50])
    expected = numba_ln.layer_norm(x, g, eps=0.5)
    assert ln_any(x, g.reshape(1, 50), x, 0.5) is x   # out=x in place, 2-D weight
    assert_same(x, expected)
    # out overlapping x by one row: x is read before anything is written, as from Python
    buf = rng.standard_normal(7 * 50)
    xs, outs = buf[:300].reshape(6, 50), buf[50:].reshape(6, 50)
    expected = numba_ln.layer_norm(xs.copy(), 2.0)
    ln_any(xs, 2.0, outs, 1e-5)
    assert_same(outs, expected)
    # a 0-d weight broadcasts as from Python (README: an array broadcastable to
    # (x.shape[-1],)); it was a TypingError
    y = np.empty_like(x)
    ln_any(x, np.array(2.0), y, 1e-5)
    assert_same(y, numba_ln.layer_norm(x, np.array(2.0)))


def strided(a):
    """a's values in an array of 'A' layout (every second element of a wider one)."""
    wide = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
    wide[..., ::2] = a
    return wide[..., ::2]


def test_outputs_written_through_a_copy_are_checked_as_from_python(rng):
    """Outputs of 'A' layout are written from a copy after the kernel: out and
    residual_out that share memory, or one with a zero stride (a broadcast view), raise
    the Python call's errors before anything is written (they returned one output's
    values in the other's place)."""
    x, r = rng.standard_normal((2, 2, 4))
    buf = strided(np.zeros((3, 4)))
    zero_stride = np.lib.stride_tricks.as_strided(buf[0], (2, 4), (0, buf.strides[1]),
                                                  writeable=True)
    cases = [(buf[0:2], buf[2:0:-1], "out and residual_out must not overlap"),  # row 1
             (buf[1::-1], buf[2:0:-1], "out and residual_out must not overlap"),
             (zero_stride, buf[1:3], "out has a zero stride"),
             (buf[1:3], zero_stride, "residual_out has a zero stride")]
    for out, residual_out, message in cases:
        with pytest.raises(ValueError, match=message):
            numba_ln.add_layer_norm(x, r, out=out, residual_out=residual_out)
        with pytest.raises(ValueError, match=message):
            add_into(x, r, out, residual_out)
        assert not buf.any()
    out, residual_out = strided(np.zeros((2, 4))), buf[2:0:-1]
    y, s = add_into(x, r, out, residual_out)
    assert y is out and s is residual_out
    assert_same((y, s), numba_ln.add_layer_norm(x, r))


def test_global_parameters_are_read_only_arrays(rng):
    g, b = rng.standard_normal(32), rng.standard_normal(32)

    @njit
    def with_globals(x):
        return layer_norm(x, g, b)   # g, b are frozen into the function: read-only arrays

    x = rng.standard_normal((3, 32))
    assert_same(with_globals(x), numba_ln.layer_norm(x, g, b))


@pytest.mark.parametrize("shape, weight, out, eps, message", [
    ((6, 50), (1, 49), (6, 50), 1e-5, "weight/bias does not broadcast"),
    ((6, 50), (2, 50), (6, 50), 1e-5, "weight/bias does not broadcast"),
    ((6, 50), (1, 50), (6, 49), 1e-5, "must have x's shape"),
    ((6, 50), (1, 50), (6, 50), -1.0, "eps must be a finite number >= 0"),
    ((6, 50), (1, 50), (6, 50), np.nan, "eps must be a finite number >= 0"),
    ((6, 0), (1, 0), (6, 0), 1e-5, "the normalized axis .* has no elements"),
])
def test_runtime_errors(shape, weight, out, eps, message):
    # One set of argument types for all: one compilation.
    with pytest.raises(ValueError, match=message):
        ln_any(np.ones(shape), np.ones(weight), np.empty(out), eps)


def test_no_rows():
    y = ln_any(np.ones((0, 50)), np.ones((1, 50)), np.empty((0, 50)), 1e-5)
    assert y.shape == (0, 50)


@pytest.mark.parametrize("call, message", [
    ("layer_norm(x, axis=0)", "only the last axis is supported.*got axis=0"),
    ("moments(x, (0, 1))", "only the last axis is supported"),
    ("rms_norm(x, axis=n)", "only the last axis is supported, as a constant"),
    ("layer_norm(x, return_stats=flag)", "return_stats must be a constant True or False"),
    ("moments(x, keepdims=flag)", "keepdims must be a constant True or False"),
    ("layer_norm(x, return_stats=2)", "return_stats must be a constant True or False"),
    ("layer_norm(x.astype(np.complex64))", "dtype complex64.*supported: float32, float64"),
    ("layer_norm(x[0, 0, 0])", "x must be a NumPy array of 1 or more dimensions"),
    ("layer_norm(x, out=np.empty((2, 3, 4)))", "out must be a writeable float32 array"),
    ("add_rms_norm(x, 1.0)", "residual must be a real"),
    ("layer_norm(x, 'a')", "weight must be None, a real number or a real"),
    ("layer_norm(x, eps=True)", "eps must be a real number"),
    # (a float16 scalar: Numba's traceback about float(float16), a NotImplementedError)
    ("layer_norm(x, eps=np.float16(1e-3))", "eps is a float16 scalar"),
    ("rms_norm(x, np.float16(2.0))", "weight is a float16 scalar"),
])
def test_typing_errors_say_what_is_supported(call, message):
    namespace = {"np": np, "njit": njit, "layer_norm": layer_norm, "rms_norm": rms_norm,
                 "add_rms_norm": add_rms_norm, "moments": moments}
    exec(f"@njit\ndef f(x, flag, n):\n    return {call}\n", namespace)
    with pytest.raises(TypingError, match=message):
        namespace["f"](np.ones((2, 3, 4), np.float32), True, -1)


def test_flags_may_be_the_integers_0_and_1_as_from_python(rng):
    """README: flags are True or False, NumPy's bools, and 0 and 1; @njit refused 1."""
    @njit
    def both(x):
        return moments(x, keepdims=1), layer_norm(x, return_stats=1)

    x = rng.standard_normal((3, 8)).astype(np.float32)
    got_moments, got_norm = both(x)
    assert_same(got_moments, numba_ln.moments(x, keepdims=True))
    assert_same(got_norm, numba_ln.layer_norm(x, return_stats=True))


_CACHED_MODULE = """
import numpy as np
from numba import njit
import numba_ln
import numba_ln._njit


@njit(cache=True)
def block(x, r, g, b):
    return numba_ln.layer_norm(x + r, g, b)
"""

_RUN = """
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import numba_ln
import user_block
x = np.linspace(-1, 1, 3 * 64, dtype=np.float32).reshape(3, 64)
g = np.full(64, 0.5, np.float32)
r = x[::-1].copy()
assert np.allclose(user_block.block(x, r, g, g), numba_ln.layer_norm(x + r, g, g), rtol=2e-6, atol=2e-6)
stats = user_block.block.stats
print(json.dumps({"hits": sum(stats.cache_hits.values()),
                  "misses": sum(stats.cache_misses.values())}))
"""


def test_cache_true_user_function_reloads(tmp_path):
    (tmp_path / "user_block.py").write_text(textwrap.dedent(_CACHED_MODULE))
    root = os.path.dirname(os.path.dirname(os.path.abspath(numba_ln.__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))

    def run():
        done = subprocess.run([sys.executable, "-c", _RUN, str(tmp_path)], env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])

    first, second = run(), run()
    assert first == {"hits": 0, "misses": 1}
    assert second == {"hits": 1, "misses": 0}


def test_zero_rows_write_nothing(rng):
    """x with no rows (the empty last block of a prange loop over blocks): empty results,
    as from Python, and nothing written.  rows_block sums its first row before its loop:
    compiled code read one row past x, and the fused forms wrote x + r one row past s
    (into the caller's buffer, or past a fresh one: glibc aborted)."""
    x, r = rng.standard_normal((2, 4, 8))
    y_buf, s_buf = np.zeros((4, 8)), np.zeros((4, 8))
    y, s = add_into(x[2:2], r[2:2], y_buf[2:2], s_buf[2:2])
    assert y.shape == s.shape == (0, 8) and not y_buf.any() and not s_buf.any()
    g, b, w = (rng.standard_normal(768).astype(np.float32) for _ in range(3))
    for x in np.zeros((0, 5, 768), np.float32), np.zeros((3, 0, 768), np.float32):
        got = norms_with_stats(x, g, b, w)
        assert_same(got, (numba_ln.layer_norm(x, g, b, return_stats=True),
                          numba_ln.rms_norm(x, w, eps=1e-5, return_stats=True)))
    x = np.zeros((0, 4, 33))
    assert_same(moment_calls(x, np.arange(17)),
                (numba_ln.moments(x), numba_ln.moments(x, keepdims=True),
                 numba_ln.moments(np.arange(17))))
