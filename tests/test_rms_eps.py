"""RMSNorm's eps=None, as torch's ``rms_norm`` and ``RMSNorm`` take it: the machine epsilon
of the dtype the call computes in (float32's for float32 and 16-bit data, float64's for
float64 and integer data), on every path -- the small-call gates, the general path, the
backward, the modules and @njit code.  LayerNorm keeps refusing None, as torch's
``layer_norm`` does.

The data are tiny (mean square ~1e-8), where float32's epsilon (1.2e-7) and numba_ln's
default (1e-6) give very different results, so a wrong eps cannot pass.  Also: the other
eps forms the small-call gates take (a Python int, NumPy scalars).
"""
import numba
import numpy as np
import pytest
from _oracle import general_axes, same_bits

import numba_ln
from numba_ln import reference as ref

F32_EPS, F64_EPS = float(np.finfo(np.float32).eps), float(np.finfo(np.float64).eps)


def _tiny(rng, shape, dtype=np.float32):
    return (1e-4 * rng.standard_normal(shape)).astype(dtype)


@pytest.mark.parametrize("layout", ["rows", "strided"])  # the small-call gate; the general path
@pytest.mark.parametrize("dtype, eps", [(np.float32, F32_EPS), (np.float64, F64_EPS),
                                        (np.float16, F32_EPS)])
def test_forward_takes_the_machine_epsilon(rng, dtype, eps, layout):
    x = _tiny(rng, (6, 64) if layout == "rows" else (6, 128), dtype)
    if layout == "strided":
        x = x[:, ::2]
    w = (1 + 0.1 * rng.standard_normal(64)).astype(dtype)
    y, rstd = numba_ln.rms_norm(x, w, eps=None, return_stats=True)
    want_y, want_rstd = numba_ln.rms_norm(x, w, eps=eps, return_stats=True)
    assert y.tobytes() == want_y.tobytes() and rstd.tobytes() == want_rstd.tobytes()
    y64, rstd64 = ref.rms_norm(x, w, eps=eps)
    np.testing.assert_allclose(rstd, rstd64, rtol=2e-6)
    default = numba_ln.rms_norm(x, w)  # eps=1e-6: far from it
    assert np.abs(default.astype(float) - y64).max() > 0.1


def test_fused_backward_and_integers(rng):
    x, r, dy = _tiny(rng, (4, 32)), _tiny(rng, (4, 32)), rng.standard_normal((4, 32))
    w = (1 + 0.1 * rng.standard_normal(32)).astype(np.float32)
    for got, want in zip(numba_ln.add_rms_norm(x, r, w, eps=None),
                         numba_ln.add_rms_norm(x, r, w, eps=F32_EPS)):
        assert got.tobytes() == want.tobytes()
    dy = dy.astype(np.float32)
    for got, want in zip(numba_ln.rms_norm_backward(dy, x, w, eps=None),
                         numba_ln.rms_norm_backward(dy, x, w, eps=F32_EPS)):
        assert got.tobytes() == want.tobytes()
    dx = numba_ln.rms_norm_backward(dy, x[:, ::-1], w, eps=None)[0]  # (the general path)
    np.testing.assert_allclose(dx, ref.rms_norm_backward(dy, x[:, ::-1], w, eps=F32_EPS)[0],
                               rtol=1e-4, atol=1e-3 * np.abs(dx).max())
    xi = np.arange(-6, 6, dtype=np.int16).reshape(3, 4)  # integers: computed in float64
    assert numba_ln.rms_norm(xi, eps=None).tobytes() == numba_ln.rms_norm(
        xi, eps=F64_EPS).tobytes()


def test_module(rng):
    norm = numba_ln.RMSNorm(16, eps=None)
    assert norm.eps is None and "eps=None" in repr(norm)
    x = _tiny(rng, (3, 16))
    assert norm(x).tobytes() == numba_ln.rms_norm(x, norm.weight, eps=F32_EPS).tobytes()
    norm64 = numba_ln.RMSNorm(16, eps=None, dtype=np.float64)
    x64 = x.astype(np.float64)
    assert norm64(x64).tobytes() == numba_ln.rms_norm(x64, norm64.weight,
                                                      eps=F64_EPS).tobytes()


def test_in_njit_code(rng):
    @numba.njit
    def normalize(x):
        return numba_ln.rms_norm(x, eps=None)

    x = _tiny(rng, (5, 24))
    np.testing.assert_allclose(normalize(x), ref.rms_norm(x, eps=F32_EPS)[0], rtol=2e-6)


@pytest.mark.parametrize("eps, error", [(-1e-6, ValueError), (float("nan"), ValueError),
                                        ("1e-6", TypeError), ([None], TypeError)])
def test_rms_gates_still_refuse_bad_eps_and_write_nothing(rng, eps, error):
    """The small-call gates' new branch for None leaves every other eps to the general
    path's checks: the same errors, before anything is written."""
    x, dy = _tiny(rng, (3, 16)), rng.standard_normal((3, 16)).astype(np.float32)
    x_before, out = x.copy(), np.full_like(x, 7.0)
    with pytest.raises(error, match="eps"):
        numba_ln.rms_norm(x, eps=eps, out=out)
    with pytest.raises(error, match="eps"):
        numba_ln.add_rms_norm(x, x.copy(), eps=eps, out=out)
    with pytest.raises(error, match="eps"):
        numba_ln.rms_norm_backward(dy, x, eps=eps, out=out)
    assert (out == 7.0).all() and np.array_equal(x, x_before)


def test_layer_norm_refuses_none(rng):
    x = _tiny(rng, (2, 8))
    with pytest.raises(TypeError, match="eps must be a real number"):
        numba_ln.layer_norm(x, eps=None)
    with pytest.raises(TypeError, match="eps must be a real number"):
        numba_ln.add_layer_norm(x, x, eps=None)
    with pytest.raises(TypeError, match="eps must be a real number"):
        numba_ln.layer_norm_backward(x, x, eps=None)
    with pytest.raises(TypeError, match="eps"):
        numba_ln.LayerNorm(8, eps=None)


def test_against_torch(rng):
    torch = pytest.importorskip("torch")
    x = _tiny(rng, (4, 64))
    w = (1 + 0.1 * rng.standard_normal(64)).astype(np.float32)
    want = torch.nn.functional.rms_norm(torch.from_numpy(x), (64,), torch.from_numpy(w),
                                        eps=None).numpy()
    np.testing.assert_allclose(numba_ln.rms_norm(x, w, eps=None), want, rtol=1e-6, atol=1e-6)
    module = torch.nn.RMSNorm(64)
    assert module.eps is None  # (torch's default, which numba_ln.RMSNorm(64, eps=None) is)


def test_eps_as_users_write_it_takes_the_small_call(rng, small_ran):
    """A Python int, a NumPy float or int scalar: each gate (last axis, several axes as
    rows, backward) takes the call, with the bits of the same eps as a float."""
    x, dy = rng.standard_normal((2, 6, 40)).astype(np.float32)
    w = np.linspace(0.5, 1.5, 40, dtype=np.float32)
    x3, w3 = x.reshape(6, 4, 10), w.reshape(4, 10)
    forms = {
        "layer_norm": lambda eps: numba_ln.layer_norm(x, w, w, eps=eps),
        "rows": lambda eps: numba_ln.rms_norm(x3, w3, axis=(-2, -1), eps=eps),
        "backward": lambda eps: numba_ln.layer_norm_backward(dy, x, w, eps=eps),
    }
    for name, form in forms.items():
        want = form(1.0)
        for eps in (1, np.int64(1), np.float32(1.0)):
            small_ran.clear()
            assert same_bits(form(eps), want), (name, eps)
            assert len(small_ran) == 1, (name, eps)


@pytest.mark.filterwarnings("error")
def test_an_rstd_past_float32s_range_is_inf_silently_on_every_path():
    """A constant row with eps=1e-300 has rstd 1e150: inf in float32, which the small
    calls gave silently while the general path and dask warned (NumPy's cast)."""
    x = np.full((4, 300), 3.0, np.float32)
    calls = [lambda: numba_ln.layer_norm(x, eps=1e-300, return_stats=True)[2],
             lambda: numba_ln.layer_norm(x, axis=(0, 1), eps=1e-300, return_stats=True)[2],
             lambda: numba_ln.layer_norm(x.T, axis=0, eps=1e-300, return_stats=True)[2],
             lambda: numba_ln.rms_norm(x * 0, axis=general_axes(1), eps=1e-300,
                                       return_stats=True)[1]]
    try:
        import dask.array as da
    except ImportError:
        da = None
    if da is not None:
        dx = da.from_array(x, chunks=(2, 150))
        calls.append(lambda: numba_ln.layer_norm(dx, eps=1e-300, return_stats=True)[2]
                     .compute(scheduler="synchronous"))
    for call in calls:
        rstd = call()
        assert rstd.dtype == np.float32 and np.isposinf(rstd).all()
