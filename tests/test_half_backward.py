"""The backward functions on bfloat16 and float16 data (numba_ln/_half_backward.py: the
row kernels read and write 16-bit data themselves): dx is the float32 backward of the
widened data rounded once to the 16-bit dtype, dweight and dbias float32; against the
float64 formula, and torch's 16-bit backward where installed.  Errors name the argument
and write nothing."""
import numpy as np
import pytest

import numba_ln
from numba_ln import reference as ref

ml_dtypes = pytest.importorskip("ml_dtypes")
HALF = [np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16)]
IDS = ["float16", "bfloat16"]
F32 = np.dtype(np.float32)


def data(rng, dtype, shape=(6, 5, 32), offset=3.0):
    x = (rng.standard_normal(shape) * 2.0 + offset).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    w = (rng.standard_normal(shape[-1]) + 1.0).astype(dtype)
    return dy, x, w


def unit_roundoff(dtype):
    """Half the spacing at 1: the relative error of one rounding to the dtype."""
    return 2.0 ** (-8 if dtype.name == "bfloat16" else -11)


def wide(*arrays):
    return [None if a is None else a.astype(F32) for a in arrays]


@pytest.mark.parametrize("dtype", HALF, ids=IDS)
def test_the_float32_backward_rounded_once(rng, dtype):
    """The fused 16-bit kernels compute what the float32 backward of the widened data
    computes, and round dx once: the same formula and order, but another kernel variant,
    whose sums LLVM may split into lanes differently (the last float32 bit)."""
    dy, x, w = data(rng, dtype)
    gr = rng.standard_normal(x.shape).astype(dtype)
    _, mean, rstd = numba_ln.layer_norm(x, w, return_stats=True)
    assert mean.dtype == F32  # (the forward's statistics of 16-bit data)
    w02 = (rng.standard_normal((6, 32)) + 1.0).astype(dtype)  # (over axes 0 and 2)
    # The forms use a weight and compute the parameter gradients: the 16-bit kernels
    # differ from float32's only in their loads and stores, and each form without them
    # would be one more kernel variant to compile (tested in float32 and float64)
    cases = [
        (numba_ln.layer_norm_backward, w, {}),
        (numba_ln.layer_norm_backward, w, {"mean": mean, "rstd": rstd}),
        (numba_ln.layer_norm_backward, w02, {"axis": (0, 2), "grad_residual": gr}),
        (numba_ln.rms_norm_backward, w[:5], {"axis": 1}),
    ]
    if dtype.name == "float16":  # (the loads and stores of each dtype: the first form)
        cases = cases[:1]
    for func, weight, kw in cases:
        got = func(dy, x, weight, **kw)
        wide_kw = {**kw, "grad_residual": wide(kw.get("grad_residual"))[0]}
        want = func(*wide(dy, x), weight, **wide_kw)
        assert got[0].dtype == dtype and got[0].shape == x.shape
        # dx: the float32 result rounded once, or (a last-bit difference before the
        # rounding met a tie) its 16-bit neighbour; a double rounding or a float32 dx
        # would be off by more in many elements
        exact = want[0].astype(np.float64)
        spacing = 2 * unit_roundoff(dtype) * np.maximum(np.abs(exact), 2.0 ** -14)
        assert np.all(np.abs(got[0].astype(np.float64) - exact) <= spacing)
        rounded = np.mean(got[0].view(np.uint16) == want[0].astype(dtype).view(np.uint16))
        assert rounded >= 0.99
        for g, v in zip(got[1:], want[1:]):  # dweight, dbias: float32, as computed
            assert (g is None and v is None) or (
                g.dtype == F32 and np.abs(g - v).max() <= 1e-6 * max(1.0, np.abs(v).max()))


@pytest.mark.parametrize("dtype", HALF, ids=IDS)
def test_param_grads_off(rng, dtype):
    """dx without the parameter gradients: float16's has the full call's bits; bfloat16's
    can differ in the last bits (another kernel variant, whose float32 sums LLVM vectorizes
    in another lane order: a few elements in 10**5, docs/training.md), within the bound."""
    dy, x, w = data(rng, dtype, (64, 256))
    full, off = (numba_ln.layer_norm_backward(dy, x, w, param_grads=grads)[0]
                 for grads in (True, False))
    if dtype.name == "float16":
        assert np.array_equal(full.view(np.uint16), off.view(np.uint16))
    exact = ref.layer_norm_backward(*(a.astype(np.float64) for a in (dy, x, w)))[0]
    scale = np.abs(exact).max()
    for got in (full, off):  # (one 16-bit rounding plus float32's error of the largest term)
        err = np.abs(got.astype(np.float64) - exact)
        assert np.all(err <= unit_roundoff(dtype) * np.abs(exact) + 1e-6 * scale)


@pytest.mark.parametrize("dtype", HALF, ids=IDS)
def test_against_the_float64_formula(rng, dtype):
    dy, x, w = data(rng, dtype, (64, 256), offset=100.0)
    dx, dweight, dbias = numba_ln.layer_norm_backward(dy, x, w)
    want = ref.layer_norm_backward(*(a.astype(np.float64) for a in (dy, x, w)))
    scale = np.abs(want[0]).max()
    # one rounding of each element (at most u of it) plus float32's error
    assert np.all(np.abs(dx.astype(np.float64) - want[0])
                  <= np.abs(want[0]) * unit_roundoff(dtype) + 1e-5 * max(1.0, scale))
    for got, exact in zip((dweight, dbias), want[1:]):
        assert got.dtype == F32
        assert np.abs(got - exact).max() <= 1e-5 * max(1.0, np.abs(exact).max())


@pytest.mark.parametrize("dtype", HALF, ids=IDS)
def test_against_torch(rng, dtype):
    torch = pytest.importorskip("torch")
    dy, x, w = data(rng, dtype, (16, 128))
    tdtype = torch.bfloat16 if dtype.name == "bfloat16" else torch.float16
    t = [torch.from_numpy(a.astype(F32)).to(tdtype) for a in (dy, x, w)]
    bias = torch.zeros(128, dtype=tdtype)
    _, mean, rstd = torch.native_layer_norm(t[1], (128,), t[2], bias, 1e-5)
    tdx, tdw, tdb = torch.ops.aten.native_layer_norm_backward(
        t[0], t[1], (128,), mean, rstd, t[2], bias, [True, True, True])
    dx, dweight, dbias = numba_ln.layer_norm_backward(dy, x, w)
    u = unit_roundoff(dtype)  # (torch rounds dx once too)
    scale = np.abs(dx.astype(F32)).max()
    assert np.abs(dx.astype(F32) - tdx.float().numpy()).max() <= 2 * u * scale
    # torch's dweight/dbias are sums over the rows of 16-bit-rounded terms, rounded to 16
    # bits (off by ~1.5 u of the result in float16, more in bfloat16): each is compared
    # within a few u of the sum of its terms' magnitudes, which still catches a wrong
    # formula (off by the order of that sum)
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    xhat = (x64 - x64.mean(1, keepdims=True)) / x64.std(1, keepdims=True)
    for ours, theirs, terms in ((dweight, tdw, dy64 * xhat), (dbias, tdb, dy64)):
        bound = 4 * u * np.abs(terms).sum(0)
        assert np.all(np.abs(ours - theirs.float().numpy()) <= bound)


@pytest.mark.parametrize("dtype", HALF, ids=IDS)
def test_outputs_and_errors(rng, dtype):
    dy, x, w = data(rng, dtype, (4, 16))
    want = numba_ln.layer_norm_backward(dy, x, w)[0]
    out = np.zeros_like(x)
    assert numba_ln.layer_norm_backward(dy, x, w, out=out)[0] is out
    assert np.array_equal(out.view(np.uint16), want.view(np.uint16))
    in_place = dy.copy()
    assert numba_ln.layer_norm_backward(in_place, x, w, out=in_place)[0] is in_place
    assert np.array_equal(in_place.view(np.uint16), want.view(np.uint16))
    strided = np.zeros((4, 32), dtype)[:, ::2]
    numba_ln.layer_norm_backward(dy, x, w, out=strided)
    assert np.array_equal(strided.astype(F32), want.astype(F32))
    # 16-bit with float32: a float32 call
    assert numba_ln.layer_norm_backward(dy.astype(F32), x, w)[0].dtype == F32
    untouched = np.zeros_like(x)
    with pytest.raises(TypeError, match="out has dtype float32"):
        numba_ln.layer_norm_backward(dy, x, out=np.zeros(x.shape, F32))
    # (with the weight: the kernel variant of the calls above, which the small-call
    # kernel compiles before it declines bad values)
    with pytest.raises(ValueError, match="out has shape"):
        numba_ln.layer_norm_backward(dy, x, w, out=np.zeros((4, 8), dtype))
    with pytest.raises(ValueError, match="dy has shape"):
        numba_ln.layer_norm_backward(dy[:2], x, w, out=untouched)
    with pytest.raises(ValueError, match="weight"):
        numba_ln.layer_norm_backward(dy, x, np.ones(3, dtype), out=untouched)
    with pytest.raises(ValueError, match="eps"):
        numba_ln.layer_norm_backward(dy, x, w, eps=-1.0, out=untouched)
    with pytest.raises(TypeError, match="dy"):
        numba_ln.layer_norm_backward(dy.astype(np.complex64), x, out=untouched)
    assert not untouched.astype(F32).any()


@pytest.mark.parametrize("dtype", HALF, ids=IDS)
def test_single_element_rows(rng, dtype):
    """A size-1 normalized axis: y = bias does not depend on x, so dx is exactly
    grad_residual (exactly 0 without one) and dweight exactly 0, as torch gives them; a NaN
    in x stays NaN in dx, as in the kernels."""
    dy, x, w = data(rng, dtype, (7, 1))
    gr = rng.standard_normal(x.shape).astype(dtype)
    dx, dweight, dbias = numba_ln.layer_norm_backward(dy, x, w, grad_residual=gr)
    assert dx.dtype == dtype and np.array_equal(dx.view(np.uint16), gr.view(np.uint16))
    assert dweight.dtype == F32 and np.array_equal(dweight, [0.0])
    assert np.array_equal(dbias, [np.float32(dy.astype(np.float64).sum())])
    x[3, 0] = np.nan
    dx = numba_ln.layer_norm_backward(dy, x, w)[0]
    assert np.isnan(dx[3, 0].astype(F32)) and not dx[[0, 1, 2, 4, 5, 6]].astype(F32).any()
