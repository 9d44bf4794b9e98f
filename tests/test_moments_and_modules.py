"""moments, LayerNorm and RMSNorm objects."""
import numpy as np
import pytest
from _oracle import assert_close

import numba_ln
from numba_ln import reference as ref


@pytest.mark.parametrize("axis", [-1, 0, (0, 2), (1, 2)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_moments(rng, axis, keepdims):
    x = 1e4 + rng.standard_normal((5, 6, 7)).astype(np.float32)
    mean, var = numba_ln.moments(x, axis=axis, keepdims=keepdims)
    mean_ref, var_ref = ref.moments(x, axis=axis)
    if keepdims:
        mean_ref = np.expand_dims(mean_ref, axis)
        var_ref = np.expand_dims(var_ref, axis)
    assert mean.dtype == var.dtype == np.float32
    assert_close(mean, mean_ref, scale=1e4)
    assert np.abs(var / var_ref - 1).max() < 2e-6


def test_moments_dtypes_and_exactness():
    mean, var = numba_ln.moments(np.arange(10, dtype=np.int16))
    assert mean.dtype == np.float64 and mean == 4.5 and var == 8.25
    mean, var = numba_ln.moments(np.full((2, 1000), 0.1))
    assert (mean == 0.1).all() and (var == 0).all()
    with pytest.raises(ValueError, match="normalized"):
        numba_ln.moments(np.empty((3, 0)))


def test_moments_of_every_axis_are_numpy_scalars_on_every_path():
    """A full reduction returns NumPy scalars, as x.mean() does (README; the small calls
    gave them): the general path (a strided, integer or list x, keepdims=0) and the
    several-axis calls gave 0-d arrays."""
    x = np.arange(6, dtype=np.float32)
    for got, data in ((numba_ln.moments(x), x), (numba_ln.moments(x, keepdims=0), x),
                      (numba_ln.moments(x, keepdims=np.False_), x),
                      (numba_ln.moments(x[::2]), x[::2]),
                      (numba_ln.moments(x.astype(np.int64)), x.astype(np.float64)),
                      (numba_ln.moments(x.tolist()), x.astype(np.float64)),
                      (numba_ln.moments(x.reshape(2, 3), axis=(0, 1)), x),
                      (numba_ln.moments(x.reshape(3, 2), axis=(1, 0)), x),
                      (numba_ln.moments(x.reshape(2, 3)[::-1], axis=(0, 1)), x)):
        for value, want in zip(got, (data.mean(), data.var())):
            assert type(value) is type(want) and value == want
    kept = numba_ln.moments(x.reshape(2, 3), axis=(0, 1), keepdims=True)
    assert all(type(k) is np.ndarray and k.shape == (1, 1) for k in kept)


def test_layer_norm_module(rng):
    ln = numba_ln.LayerNorm((4, 5))
    assert ln.weight.shape == (4, 5) and ln.weight.dtype == np.float32 and (ln.weight == 1).all()
    assert (ln.bias == 0).all()
    ln.weight = rng.standard_normal((4, 5))
    ln.bias = rng.standard_normal((4, 5))
    assert ln.weight.dtype == np.float32
    x = rng.standard_normal((3, 4, 5)).astype(np.float32)
    assert_close(ln(x), ref.layer_norm(x, ln.weight, ln.bias, axis=(1, 2))[0], scale=4)
    with pytest.raises(ValueError, match="weight"):
        ln.weight = np.ones(5)
    with pytest.raises(ValueError, match="normalized_shape"):
        ln(np.ones((3, 5, 4), np.float32))
    assert repr(ln) == ("LayerNorm((4, 5), eps=1e-05, elementwise_affine=True, bias=True, "
                        "dtype=float32)")


def test_layer_norm_module_options(rng):
    x = rng.standard_normal((2, 8))
    plain = numba_ln.LayerNorm(8, elementwise_affine=False, dtype=np.float64)
    assert plain.weight is None and plain.bias is None
    assert_close(plain(x), ref.layer_norm(x)[0])
    no_bias = numba_ln.LayerNorm(8, bias=False, eps=1e-3)
    assert no_bias.bias is None
    y, mean, rstd = no_bias(x.astype(np.float32), return_stats=True)
    assert_close(rstd, ref.layer_norm(x.astype(np.float32), eps=1e-3)[2])
    with pytest.raises(TypeError, match="dtype"):
        numba_ln.LayerNorm(8, dtype=np.int32)
    with pytest.raises(ValueError, match="normalized_shape"):
        numba_ln.LayerNorm(0)


@pytest.mark.parametrize("module", [numba_ln.LayerNorm, numba_ln.RMSNorm])
@pytest.mark.parametrize("eps, error", [(-1e-5, ValueError), (float("nan"), ValueError),
                                        ([1e-5], TypeError), ("1e-5", TypeError)])
def test_a_module_refuses_a_bad_eps_when_built(module, eps, error):
    with pytest.raises(error, match="eps"):
        module(8, eps=eps)
    # (None: RMSNorm's machine epsilon, as torch's: tests/test_rms_eps.py)


@pytest.mark.parametrize("module", [numba_ln.LayerNorm, numba_ln.RMSNorm])
def test_a_module_checks_x_whatever_its_parameters(rng, module):
    """x's last axis is checked against normalized_shape by the kernels (through the
    parameters' lengths) while the module has a weight or a bias, and by the module once
    they are assigned None: a wrong x raises either way, and nothing is written."""
    norm = module(8)
    x = rng.standard_normal((3, 8)).astype(np.float32)
    out = np.zeros((3, 7), np.float32)
    for _ in range(2):
        with pytest.raises(ValueError, match="normalized_shape"):
            norm(x[:, :7].copy())
        with pytest.raises(ValueError, match="normalized_shape"):
            norm(x[:, :7].copy(), out=out)
        assert not out.any()
        want = ref.layer_norm(x)[0] if module is numba_ln.LayerNorm else ref.rms_norm(x)[0]
        assert_close(norm(x), want, scale=4)
        norm.weight = None
        if module is numba_ln.LayerNorm:
            norm.bias = None


def test_rms_norm_module(rng):
    norm = numba_ln.RMSNorm(16)
    norm.weight = np.arange(16)
    x = rng.standard_normal((3, 16)).astype(np.float32)
    assert_close(norm(x), ref.rms_norm(x, np.arange(16.0))[0], scale=16)
    assert repr(norm) == "RMSNorm((16,), eps=1e-06, elementwise_affine=True, dtype=float32)"


def test_matches_torch_when_installed(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((6, 32)).astype(np.float32)
    w, b = rng.standard_normal(32).astype(np.float32), rng.standard_normal(32).astype(np.float32)
    expected = torch.nn.functional.layer_norm(torch.from_numpy(x), (32,), torch.from_numpy(w),
                                              torch.from_numpy(b)).numpy()
    assert np.abs(numba_ln.layer_norm(x, w, b) - expected).max() < 1e-5
    y, mean, rstd = numba_ln.layer_norm(x, w, b, return_stats=True)
    _, t_mean, t_rstd = torch.native_layer_norm(torch.from_numpy(x), (32,), None, None, 1e-5)
    assert np.abs(mean - t_mean.numpy()).max() < 1e-5
    assert np.abs(rstd / t_rstd.numpy() - 1).max() < 1e-5
    rms = torch.nn.functional.rms_norm(torch.from_numpy(x), (32,), torch.from_numpy(w), eps=1e-6)
    assert np.abs(numba_ln.rms_norm(x, w) - rms.numpy()).max() < 1e-5


@pytest.mark.parametrize("make", [lambda: numba_ln.LayerNorm((3, 4), dtype=np.float64),
                                  lambda: numba_ln.RMSNorm((3, 4), dtype=np.float64)])
def test_parameters_assigned_in_any_order_are_updated_in_place(rng, make):
    """A Fortran-ordered weight was copied in Fortran order, and a module of several axes
    read a stale copy of it after an update in place; and ``m.weight -= d`` (NumPy updates
    the array in place, then assigns it) replaced the array, so that a reference an
    optimizer or a shallow copy held got one step and then fell behind, as torch's
    parameters do not."""
    import copy

    x = rng.standard_normal((5, 3, 4))
    module = make()
    module.weight = np.ones((4, 3)).T  # (Fortran order)
    module.weight[...] = 2.0
    centered = isinstance(module, numba_ln.LayerNorm)
    plain = (ref.layer_norm(x, axis=(1, 2))[0] if centered
             else ref.rms_norm(x, axis=(1, 2))[0])
    assert_close(module(x), 2.0 * plain)
    held, twin = module.weight, copy.copy(module)
    for _ in range(2):
        module.weight -= 0.5
    assert module.weight is held and twin.weight is held and (held == 1.0).all()
    assert_close(module(x), plain)
    module.weight = np.asfortranarray(held)  # (the same values, a new array)
    assert module.weight is not held and module.weight.flags.c_contiguous


def test_module_parameters_refuse_what_the_functions_refuse():
    module = numba_ln.LayerNorm(4)
    with pytest.raises(TypeError, match="weight is a masked array"):
        module.weight = np.ma.masked_array(np.ones(4), mask=[0, 1, 0, 0])
    with pytest.raises(TypeError, match="bias could not be read as a NumPy array"):
        module.bias = _Unreadable()
    assert (module.weight == 1).all() and (module.bias == 0).all()
    assert numba_ln.LayerNorm(4, dtype=None).dtype == np.float32  # (torch's default)


class _Unreadable:
    """An array-like that refuses NumPy, as a torch tensor that requires grad does."""

    def __array__(self, dtype=None, copy=None):
        raise RuntimeError("Can't call numpy() on Tensor that requires grad")


def test_an_array_like_that_refuses_numpy_is_a_type_error_naming_it():
    with pytest.raises(TypeError, match="x could not be read as a NumPy array"):
        numba_ln.layer_norm(_Unreadable())
    with pytest.raises(TypeError, match="weight could not be read as a NumPy array"):
        numba_ln.layer_norm(np.ones((2, 4)), _Unreadable())


@pytest.mark.parametrize("make", [lambda: numba_ln.LayerNorm((8, 12)),
                                  lambda: numba_ln.RMSNorm((8, 12))])
def test_a_parameter_reshaped_in_place_is_refused_in_every_layout(rng, make):
    """A several-axis module reads its parameters through row views made when they were
    set: one reshaped in place since (``m.weight.shape = ...``) was read through them for
    a C-contiguous x and refused for any other; now refused for every x, naming it."""
    m = make()
    m.weight[...] = rng.standard_normal((8, 12))
    x = rng.standard_normal((3, 8, 12)).astype(np.float32)
    m.weight.shape = (12, 8)
    for data in x, np.asfortranarray(x):
        for stats in False, True:
            with pytest.raises(ValueError, match=r"^weight of shape \(12, 8\)"):
                m(data, return_stats=stats)


def test_a_parameter_retyped_in_place_is_read_as_it_is_now():
    """As above, for ``m.weight.dtype = ...`` in place (a helper's review): the module read
    the stale float32 row views where the function reads the weight as it now is."""
    x = np.linspace(-1, 1, 24, dtype=np.float32).reshape(3, 2, 4)
    m = numba_ln.RMSNorm((2, 4))
    m.weight.dtype = np.int32  # (the int32 bits of 1.0f)
    want = numba_ln.rms_norm(x, m.weight, axis=(-2, -1), eps=m.eps)
    assert np.array_equal(m(x), want) and np.array_equal(m(x, return_stats=True)[0], want)
