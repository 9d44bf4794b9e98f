"""layer_norm against NumPy, torch, onnxruntime and the speed line.

Cases and contenders come from ``numba_ln.bench.cases`` and ``numba_ln.bench.contenders``
(shared with ``python -m numba_ln.bench``).  ``pytest benchmarks -n 0 --benchmark-enable``
to measure; groups are ``layer_norm|<case>``, the ``library`` parameter names the contender
(``onnxruntime`` runs through an IOBinding, ``onnxruntime-run`` through ``session.run``).
"""
import pytest

from numba_ln.bench.contenders import benchmark_params


@pytest.mark.parametrize("case, library", benchmark_params("layer_norm"))
def test_layer_norm(run_contender, case, library):
    run_contender("layer_norm", case, library)
