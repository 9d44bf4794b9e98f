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
