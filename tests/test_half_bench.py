"""The --half bench cases on their reduced shapes, numba_ln and the line only (one short
round): results, the table, the elements-per-second ratio and the targets' lines."""
from numba_ln.bench import half_cases
from numba_ln.bench.contenders import LINES
from numba_ln.bench.targets import HALF_TARGETS, evaluate_targets


def test_half_cases_run_and_report():
    settings = {"rounds": 1, "batch_ms": 0.5, "warmup_ms": 0.0}
    half, wide = half_cases.run(settings, 1, small=True, libraries=("numba_ln-out",) + LINES)
    assert [r["case"] for r in half] == [c.name for c in half_cases.HALF_CASES]
    assert {r["dtype"] for r in half} == {"bfloat16", "float16"}
    for r in half + wide:
        assert r["libraries"]["numba_ln-out"]["check_error"] < 2e-2
    ratios = half_cases.elements_per_second(half, wide)
    assert set(ratios) == set(half_cases.FLOAT32_CASES)
    table = half_cases.format_results(half, wide)
    assert all(c.name in table for c in half_cases.HALF_CASES) and "elements/s" in table
    extras = {"half_elements_per_second": ratios}
    verdicts = evaluate_targets(half, extras, HALF_TARGETS)
    statuses = {v["target"].split(" >=")[0]: v["status"] for v in verdicts}
    assert statuses["layer_norm 16-bit out="] in ("PASS", "MISS")  # measured, not SKIP
    assert statuses["layer_norm 16-bit out= in cache"] in ("PASS", "MISS")
    assert all(v["status"] != "SKIP" for v in verdicts if "torch" not in v["target"])
