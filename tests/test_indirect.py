"""The parallel kernels call their block kernel through its address (cpu/_indirect.py):
a kernel handed the key of other types runs nothing, a wrong address is never looked up,
and calls of several argument types in turn each run their own block."""
import numpy as np
import pytest

import numba_ln
from numba_ln import _config
from numba_ln import reference as ref
from numba_ln.cpu import _indirect
from numba_ln.cpu.rows import FIRST_ROW, rows_block, rows_parallel

ROWS, COLS = 2 * _config.SERIAL_MAX_ELEMENTS // 256, 256  # (parallel)


def _row_view(a):
    return a.reshape(-1), 0, a.shape[1]


def _args(y, x, w, b):
    stats = (np.empty(len(x)), np.empty(len(x)))
    arrays = (_row_view(y), None, _row_view(x), None)
    return arrays, (w, b, 1e-5, True), stats


def test_a_kernel_handed_another_key_runs_nothing_and_names_its_own(rng):
    x = rng.standard_normal((ROWS, COLS)).astype(np.float32)
    w, b = np.ones(COLS, np.float32), np.zeros(COLS, np.float32)
    y = np.full_like(x, 7.0)
    arrays, norm, stats = _args(y, x, w, b)
    own = rows_parallel(0, 12345, arrays, norm, stats, ROWS, COLS, 64, False)
    assert own != 0 and (y == 7.0).all()  # (nothing written, nothing called)
    block = _indirect.block_address(rows_block, own,
                                    (arrays, norm, stats, COLS, FIRST_ROW, FIRST_ROW, False))
    assert rows_parallel(block, own, arrays, norm, stats, ROWS, COLS, 64, False) == 0
    np.testing.assert_allclose(y, ref.layer_norm(x, w, b)[0], rtol=0, atol=1e-5)


def test_an_address_for_other_types_is_refused(rng):
    """A key this process has no address for is entered only with arguments of its types
    (the key, not the arguments, names an entry once it is made)."""
    x = rng.standard_normal((ROWS, COLS))
    args = (*_args(np.empty_like(x), x, np.ones(COLS), None), COLS, FIRST_ROW, FIRST_ROW,
            False)
    key = _indirect._key_of(("not", "these", "types"))
    with pytest.raises(RuntimeError, match="internal error"):
        _indirect.block_address(rows_block, key, args)
    assert key not in _indirect._ADDRESSES


@pytest.mark.parametrize("function", ["layer_norm", "layer_norm_backward"])
def test_calls_of_other_types_in_turn_run_their_own_blocks(rng, function):
    """float32 and float64 calls alternate: each finds the kernel's last block wrong, is
    refused and runs its own (the same results as each dtype alone)."""
    f = getattr(numba_ln, function)
    x64 = rng.standard_normal((ROWS, COLS)) + 100.0
    inputs = {dt: (x64.astype(dt), np.linspace(0.5, 2.0, COLS, dtype=dt)) for dt in
              (np.float32, np.float64)}
    once = {dt: f(x, x, w) if "backward" in function else f(x, w)
            for dt, (x, w) in inputs.items()}
    for _ in range(2):
        for dt, (x, w) in inputs.items():
            got = f(x, x, w) if "backward" in function else f(x, w)
            for a, e in zip(got if isinstance(got, tuple) else (got,),
                            once[dt] if isinstance(got, tuple) else (once[dt],)):
                assert a.dtype == e.dtype and np.array_equal(a, e)
