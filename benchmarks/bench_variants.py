"""rms_norm, add_layer_norm and add_rms_norm against their peers and speed lines.

rms_norm: torch ``F.rms_norm``, NumPy, onnxruntime SimplifiedLayerNormalization.
add_*: torch ``x + r`` then the norm, NumPy unfused, onnxruntime com.microsoft
Skip(Simplified)LayerNormalization.  onnxruntime runs through an IOBinding (``onnxruntime``)
and through ``session.run`` (``onnxruntime-run``).  The residual variants' speed line
copies x -> y and r -> s (the bytes they move).  Groups are ``<function>|<case>``.
"""
import pytest

from numba_ln.bench.contenders import benchmark_params


@pytest.mark.parametrize("case, library", benchmark_params("rms_norm"))
def test_rms_norm(run_contender, case, library):
    run_contender("rms_norm", case, library)


@pytest.mark.parametrize("case, library", benchmark_params("add_layer_norm"))
def test_add_layer_norm(run_contender, case, library):
    run_contender("add_layer_norm", case, library)


@pytest.mark.parametrize("case, library", benchmark_params("add_rms_norm"))
def test_add_rms_norm(run_contender, case, library):
    run_contender("add_rms_norm", case, library)
