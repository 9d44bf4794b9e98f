"""The kernels' float32 -> bfloat16 rounding (cpu/_storage): the conversion instruction
path, where the CPU has AVX-512 BF16, gives the portable integer path's bits, and both
are ml_dtypes' rounding (nearest even, subnormals kept, NaN kept NaN).

Every float32 was checked once (all 2**32, ~30 s); here the inputs where the two could
differ: every subnormal high half, the rounding boundaries of every high half, NaNs,
infinities, zeros, the largest values and random floats."""
import numpy as np
import pytest
from numba import njit
from numba.core.registry import cpu_target

from numba_ln.cpu._storage import f32_to_bf16, f32_to_bf16_integer

ml_dtypes = pytest.importorskip("ml_dtypes")


@njit
def _round_each(values, out, out_integer):
    for i in range(values.size):
        out[i] = f32_to_bf16(values[i])
        out_integer[i] = f32_to_bf16_integer(values[i])


def _cases():
    high = np.arange(1 << 16, dtype=np.uint32) << 16  # every bfloat16 (incl. NaN, inf, 0)
    lows = np.array([0, 1, 0x7FFF, 0x8000, 0x8001, 0xFFFF], dtype=np.uint32)
    boundaries = (high[:, None] | lows[None, :]).ravel()
    subnormal = np.arange(1, 1 << 23, 7, dtype=np.uint32)  # below 2**-126
    rng = np.random.default_rng(0)
    random = rng.integers(0, 1 << 32, size=1 << 16, dtype=np.uint64).astype(np.uint32)
    bits = np.concatenate([boundaries, subnormal, subnormal | 0x80000000, random])
    return bits.view(np.float32)


def test_bfloat16_rounding_paths_agree_with_ml_dtypes():
    values = _cases()
    out = np.empty(values.size, np.uint16)
    out_integer = np.empty_like(out)
    _round_each(values, out, out_integer)
    np.testing.assert_array_equal(out, out_integer)
    nan = np.isnan(values)
    expected = values[~nan].astype(ml_dtypes.bfloat16).view(np.uint16)
    np.testing.assert_array_equal(out[~nan], expected)
    rounded = out.view(ml_dtypes.bfloat16).astype(np.float32)
    assert np.isnan(rounded[nan]).all()
    # sign and the high payload bits survive; the quiet bit is set
    np.testing.assert_array_equal(out[nan] & 0xFFBF, (values[nan].view(np.uint32) >> 16) & 0xFFBF)
    assert (out[nan] & 0x40).all()


def test_kernels_use_the_conversion_instruction_where_the_cpu_has_one():
    features = cpu_target.target_context.codegen().magic_tuple()[2].split(",")
    if "+avx512bf16" not in features:
        pytest.skip("the compile target has no AVX-512 BF16")
    values = np.linspace(-3, 3, 64, dtype=np.float32)
    out, out_integer = np.empty(64, np.uint16), np.empty(64, np.uint16)
    _round_each(values, out, out_integer)
    assembly = _round_each.inspect_asm(_round_each.signatures[0])
    assert "vcvtneps2bf16" in assembly
