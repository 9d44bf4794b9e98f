"""Checks that need a real GPU (skipped elsewhere, including under the simulator): the
shipped launch settings at the benchmark shapes (warp-shuffle reductions), CuPy and torch
arrays, their streams, and that calls do not wait for the GPU."""
import sys
import time

import numpy as np
import pytest
from cuda_helpers import GPU, assert_close, dev, to_host

import numba_ln
from numba_ln import reference as ref

pytestmark = pytest.mark.skipif(not GPU, reason="needs a CUDA GPU (not the simulator)")


@pytest.mark.default_launch
@pytest.mark.parametrize("shape", [(1, 768), (4096, 1024), (1000, 3000), (257, 4096),
                                   (64, 16384), (5, 65536), (3, 100003)])
def test_shipped_settings_at_benchmark_shapes(rng, shape):
    x = (1e4 + rng.standard_normal(shape)).astype(np.float32)
    w, b = rng.standard_normal(shape[1]), rng.standard_normal(shape[1])
    y, mean, rstd = numba_ln.layer_norm(dev(x), dev(w.astype(np.float32)),
                                        dev(b.astype(np.float32)), return_stats=True)
    y_ref, mean_ref, rstd_ref = ref.layer_norm(x, w.astype(np.float32), b.astype(np.float32))
    assert_close(y, y_ref, scale=4)
    assert np.all(np.abs(to_host(rstd) / rstd_ref - 1) < 2e-6)
    r = rng.standard_normal(shape).astype(np.float32)
    y, s = numba_ln.add_rms_norm(dev(x), dev(r))
    assert np.array_equal(to_host(s), x + r)
    assert_close(y, ref.rms_norm(x + r)[0])


def _cupy():
    cupy = pytest.importorskip("cupy")
    if not cupy.cuda.is_available():
        pytest.skip("CuPy sees no GPU")
    return cupy


def _torch():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA")
    return torch


@pytest.mark.default_launch
def test_cupy_arrays_on_a_side_stream(rng):
    cupy = _cupy()
    x = (3 + rng.standard_normal((513, 1024))).astype(np.float32)
    with cupy.cuda.Stream(non_blocking=True) as stream:
        xc = cupy.asarray(x)
        xc *= 2  # queued on the side stream: numba_ln must run after it
        out = cupy.empty_like(xc)
        y = numba_ln.layer_norm(xc, out=out)
        assert y is out
        mean, var = numba_ln.moments(xc)
        stream.synchronize()
    assert_close(cupy.asnumpy(out), ref.layer_norm(2 * x)[0])
    assert_close(to_host(var), ref.moments(2 * x)[1])


@pytest.mark.default_launch
def test_cupy_float16(rng):
    cupy = _cupy()
    x = rng.standard_normal((64, 4096)).astype(np.float16)
    y, mean, rstd = numba_ln.layer_norm(cupy.asarray(x), return_stats=True)
    cupy.cuda.get_current_stream().synchronize()
    assert to_host(y).dtype == np.float16 and to_host(mean).dtype == np.float32
    assert_close(y, ref.layer_norm(x)[0], dtype=np.float16, scale=4)


@pytest.mark.default_launch
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_torch_matches_torch_and_orders_with_its_stream(rng, dtype):
    torch = _torch()
    import torch.nn.functional as F

    x = torch.randn(2048, 4096, device="cuda", dtype=getattr(torch, dtype))
    w = torch.randn(4096, device="cuda", dtype=getattr(torch, dtype))
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        numba_ln.layer_norm(x, w)  # compile and warm up
        torch.cuda._sleep(200_000_000)  # ~0.1 s of GPU work ahead of us on this stream
        x2 = x * 3  # written after the sleep
        t0 = time.perf_counter()
        y = numba_ln.layer_norm(x2, w)
        host_seconds = time.perf_counter() - t0
        expected = F.layer_norm(x2.float(), (4096,), w.float(), eps=1e-5)
    side.synchronize()
    assert host_seconds < 0.05, f"the call waited for the GPU ({host_seconds:.3f} s)"
    got = torch.as_tensor(y, device="cuda").float()
    tol = 2e-3 if dtype == "float16" else 1e-5
    assert torch.allclose(got, expected, atol=tol * 4, rtol=tol)


def test_torch_tensor_that_requires_grad_is_refused():
    torch = _torch()
    x = torch.randn(4, 8, device="cuda", requires_grad=True)
    with pytest.raises(TypeError, match="x"):
        numba_ln.layer_norm(x)


def test_cupy_is_not_imported_by_numba_ln():
    if "cupy" in sys.modules:
        pytest.skip("cupy already imported in this process")
    numba_ln.layer_norm(dev(np.ones((2, 8), np.float32)))
    assert "cupy" not in sys.modules
