"""layer_norm on bfloat16 and float16 data (``numba_ln.bench.half_cases``, shared with
``python -m numba_ln.bench --half``): numba_ln, torch in that dtype, NumPy through float32,
onnxruntime float16, and the 16-bit copy line.

Groups are ``layer_norm|<case>`` (``4096x1024-bf16``, ...); the ``library`` parameter names
the contender.  In the normal test run each runs once on the case's reduced shape and is
checked.
"""
import pytest

from numba_ln.bench.contenders import LIBRARIES
from numba_ln.bench.half_cases import HALF_CASES


@pytest.mark.parametrize("case, library", [
    pytest.param(case.name, lib, id=f"{case.name}-{lib}") for case in HALF_CASES
    for lib in LIBRARIES])
def test_layer_norm_half(run_contender, case, library):
    run_contender("layer_norm", case, library)
