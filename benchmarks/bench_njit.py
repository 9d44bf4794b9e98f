"""numba_ln called from @njit code against the same code calling it from Python.

* ``njit-block|<shape>``: a Transformer-style block -- residual add + LayerNorm, a
  position-wise stand-in for attention/MLP, residual add + RMSNorm -- repeated for
  ``LAYERS`` layers.  One Python function, run as it is (``library="python"``: each
  numba_ln call goes through the Python front) and compiled with ``numba.njit``
  (``library="njit"``: numba_ln's overloads, no interpreter between the calls).  Both give
  identical bits, which is checked.
* ``njit-call|(1, 768)``: ``layer_norm(x, w, b)`` on one float32 token, ``CALLS`` times in a
  loop, from Python and from an @njit loop; ``extra_info["per_call_us"]`` is the cost of
  one call.

``pytest benchmarks/bench_njit.py -n 0 --benchmark-enable`` to measure.  In the normal test run
(benchmarks disabled) each case runs once, on at most 4 rows and with 10 calls: the
compilation (a few seconds) is what it costs.
"""
import numpy as np
import pytest
from numba import njit

import numba_ln._njit  # noqa: F401  (registers the overloads; `import numba_ln` does too)
from numba_ln import add_layer_norm, add_rms_norm, layer_norm

LAYERS = 4
CALLS = 1000


def transformer_block(x, r, ln_w, ln_b, rms_w, mix, layers):
    for _ in range(layers):
        y, r = add_layer_norm(x, r, ln_w, ln_b)   # r <- x + r, y = LayerNorm(r)
        x = y * mix                                # stand-in for attention / the MLP
        y, r = add_rms_norm(x, r, rms_w)
        x = y * mix
    return x, r


transformer_block_njit = njit(transformer_block)


def layer_norm_calls(x, w, b, calls):
    total = 0.0
    for _ in range(calls):
        total += float(layer_norm(x, w, b)[0, 0])
    return total


layer_norm_calls_njit = njit(layer_norm_calls)

_RUNNERS = {"python": (transformer_block, layer_norm_calls),
            "njit": (transformer_block_njit, layer_norm_calls_njit)}


def _inputs(shape):
    rng = np.random.default_rng(0)
    x, r = (rng.standard_normal(shape).astype(np.float32) for _ in range(2))
    params = [rng.standard_normal(shape[-1]).astype(np.float32) for _ in range(4)]
    return x, r, params


@pytest.mark.parametrize("library", ["python", "njit"])
@pytest.mark.parametrize("shape", [(1, 768), (64, 768)])
def test_transformer_block(benchmark, shape, library):
    if benchmark.disabled:  # the normal test run: few rows, no parallel kernel to compile
        shape = (min(shape[0], 4), shape[1])
    x, r, (ln_w, ln_b, rms_w, mix) = _inputs(shape)
    block = _RUNNERS[library][0]
    args = (x, r, ln_w, ln_b, rms_w, mix, LAYERS)
    block(*args)  # compile (njit), load the kernels
    benchmark.group = f"njit-block|{shape}"
    benchmark.extra_info.update(library=library, shape=list(shape), layers=LAYERS,
                                dtype="float32")
    got = benchmark(block, *args)
    expected = transformer_block(*args)
    # One implementation, but compiled again inside the @njit function, where LLVM may
    # vectorize a sum's remainder differently (README, Same bits): equal to the bound.
    for g, e in zip(got, expected):
        assert g.dtype == e.dtype
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("library", ["python", "njit"])
def test_layer_norm_call_cost(benchmark, library):
    x, _, (w, b, _, _) = _inputs((1, 768))
    calls = 10 if benchmark.disabled else CALLS
    run = _RUNNERS[library][1]
    run(x, w, b, 1)
    benchmark.group = "njit-call|(1, 768)"
    benchmark.extra_info.update(library=library, calls=calls, dtype="float32")
    total = benchmark(run, x, w, b, calls)
    assert total == layer_norm_calls(x, w, b, calls)  # the same sum of the same bits
    if not benchmark.disabled:
        benchmark.extra_info["per_call_us"] = round(benchmark.stats.stats.median / calls * 1e6, 3)
