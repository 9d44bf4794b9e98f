"""numba_ln.reference, the float64 oracle the suite tests against: values worked out by hand,
and bad input refused as numba_ln refuses it (an oracle that guessed could hide a test's
mistake: axis=5 of a 2-D array was read as axis 1)."""
import numpy as np
import pytest

from numba_ln import reference as ref


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # (the constant row's rstd: 1 / 0)
def test_values_worked_by_hand():
    x = np.array([[1.0, 2.0, 3.0], [4.0, 4.0, 4.0]])
    y, mean, rstd = ref.layer_norm(x, eps=0.0)
    assert np.allclose(y[0], [-np.sqrt(1.5), 0.0, np.sqrt(1.5)], rtol=1e-15)
    assert mean.shape == rstd.shape == (2, 1) and np.isinf(rstd[1, 0])
    y, rstd = ref.rms_norm(x[:1], eps=0.0)
    assert np.allclose(y, x[:1] / np.sqrt(14 / 3), rtol=1e-15)
    mean, var = ref.moments(x, axis=(0, 1))
    assert mean == 3.0 and var == np.mean((x - 3.0) ** 2)
    # bfloat16 keeps 8 significant bits: 1 + 2**-8 lies halfway, and rounds to even
    import ml_dtypes

    halfway = ref.round_to([1 + 2.0**-8, 1 + 3 * 2.0**-8], ml_dtypes.bfloat16)
    assert halfway.astype(np.float64).tolist() == [1.0, 1 + 2**-6]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # (var 0 at eps=0: 0 x inf)
def test_a_constant_float64_row_has_an_exact_mean():
    """np.mean of three 0.1s is 0.1 + 2**-56: the oracle gave var 1.9e-34, y = -1, 1, ...
    at eps=0 (the formula: NaN), y = -0.014 at eps=1e-30; a test against it would fail the
    right kernel."""
    for row in ([0.1] * 3, [0.1] * 7, [1e6 + 0.1] * 100):
        x = np.array([row])
        y, mean, rstd = ref.layer_norm(x, eps=0.0)
        assert mean[0, 0] == row[0] and np.isinf(rstd[0, 0]) and np.isnan(y).all()
        assert (ref.layer_norm(x, eps=1e-30)[0] == 0).all()
        assert ref.moments(x)[1][0] == 0.0


def test_far_from_zero_the_mean_is_nearly_exact():
    """Against exact arithmetic (fractions) at 1e8 + N(0, 1e-3): the mean within an ulp of
    1e8, var within the error a float64 mean leaves ((ulp / spread)**2 ~ 2e-10)."""
    from fractions import Fraction

    x = 1e8 + 1e-3 * np.random.default_rng(5).standard_normal((4, 1000))
    mean, var = ref.moments(x)
    for row, m, v in zip(x, mean, var):
        exact = sum(Fraction(float(e)) for e in row) / row.size
        exact_var = sum((Fraction(float(e)) - exact) ** 2 for e in row) / row.size
        assert abs(Fraction(float(m)) - exact) <= np.spacing(1e8)
        assert abs(float((Fraction(float(v)) - exact_var) / exact_var)) < 1e-9


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_infinite_means_are_numpys():
    """The correction must not turn an inf mean into NaN (inf - inf), nor a finite one
    into inf where x - mean overflows (README: the mean is NumPy's, as numba_ln's)."""
    x = np.array([[1.0, np.inf, 2.0], [1.7e308, 1.7e308, 1.0], [1.7e308, -1.7e308, 1.7e308]])
    mean, _ = ref.moments(x)
    assert np.array_equal(mean, np.mean(x, axis=-1))
    assert isinstance(ref.moments(x, axis=(0, 1))[0], np.float64)  # (a scalar, as np.mean)


def test_eps_as_numba_ln_takes_it():
    """A Fraction eps (README: any real number) raised NumPy's TypeError in every oracle."""
    from fractions import Fraction

    x = np.array([[1.0, 2.0, 4.0]])
    for call in (ref.layer_norm, ref.rms_norm, lambda x, eps: ref.layer_norm_backward(
            x, x, eps=eps), lambda x, eps: ref.rms_norm_backward(x, x, eps=eps)):
        assert np.array_equal(call(x, eps=Fraction(1, 8))[0], call(x, eps=0.125)[0])


@pytest.mark.parametrize("call, error, message", [
    (lambda x: ref.layer_norm(x, axis=5), ValueError, "axis 5 is out of bounds"),
    (lambda x: ref.moments(x, axis=-3), ValueError, "axis -3 is out of bounds"),
    (lambda x: ref.rms_norm(x, axis=(1, -1)), ValueError, "repeated axis"),
    (lambda x: ref.layer_norm(x + 1j), TypeError, "real arrays, got dtype complex128"),
    (lambda x: ref.layer_norm(np.float64(3.0)), ValueError, "dimension 0"),
    (lambda x: ref.layer_norm(None), TypeError, "x must be an array, got None"),
    (lambda x: ref.layer_norm_backward(x, x, rstd=x[:, :1]), ValueError,
     "mean and rstd must be given together"),
    (lambda x: ref.round_to(x, np.int32), TypeError, "rounds to a float dtype"),
    (lambda x: ref.ulp_distance(x, x), TypeError, "one 16-bit float dtype"),
])
def test_bad_input_is_refused(call, error, message):
    with pytest.raises(error, match=message):
        call(np.ones((2, 3)))
