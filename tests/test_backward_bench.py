"""``python -m numba_ln.bench --backward`` in-process on the reduced shapes (one short
round), the backward contenders' checks, and the backward targets' judgement on made-up
results (no timing asserted)."""
import json

import numpy as np
import pytest

from numba_ln.bench import backward_cases as bc
from numba_ln.bench import arguments, cli, targets
from numba_ln.bench.lines import LINES


def test_backward_option_prints_and_saves_every_case(tmp_path, capsys):
    path = tmp_path / "backward.json"
    assert cli.main(["--backward", "--small", "--rounds", "1", "--batch-ms", "0.5",
                     "--warmup-ms", "0", "--cases", "4096x768,4096x4096",
                     "--json", str(path)]) == 0
    printed = capsys.readouterr().out
    saved = json.loads(path.read_text())
    assert [(r["function"], r["case"]) for r in saved["backward"]] == [
        (f, c) for f in bc.BACKWARD_FUNCTIONS for c in ("4096x768", "4096x4096")]
    for r in saved["backward"]:
        for name in ("numba_ln-out", "numba_ln-alloc", "numba_ln-recompute", "numpy"):
            entry = r["libraries"][name]
            assert entry["check_error"] < 1e-5 and len(entry["times_s"]) == 1
            assert entry["fraction_of_line"] > 0
        assert r["line"]["median_s"] == pytest.approx(bc.LINE_FACTOR * min(
            r["libraries"][k]["times_s"][0] for k in LINES))
        assert "streamed stores" in r["libraries"]["line-stream"]["description"]
        assert "streamed" not in r["libraries"]["line-prange"]["description"]
        assert f"{r['function']}  {r['case']}" in printed
    assert [t["target"].split()[0] for t in saved["targets"]] == [
        "layer_norm_backward", "layer_norm_backward", "rms_norm_backward",
        "layer_norm_backward"]  # (the last: bfloat16, not selected here: SKIP)
    assert saved["targets"][-1]["status"] == "SKIP"
    assert "--backward" in arguments.parser().format_help()


@pytest.mark.parametrize("func", list(bc.BACKWARD_FUNCTIONS))
def test_contenders_agree_and_a_wrong_one_fails(func):
    inp = bc.make_inputs(func, bc.BACKWARD_CASES[1], small=True)
    built, skipped = bc.build(inp, 1)
    assert set(built) | set(skipped) == set(bc.BACKWARD_CONTENDERS)
    assert set(skipped) <= {"torch"}
    for name, c in built.items():
        assert c.check(inp, c.call()) < 1e-4, name
    dx, *rest = built["numpy"].call()
    with pytest.raises(AssertionError, match="dx off by"):
        bc.check(inp, (dx + 1, *rest))


@pytest.mark.parametrize("case", [c for c in bc.BACKWARD_CASES if c.dtype == "bfloat16"],
                         ids=lambda c: c.name)
def test_16_bit_cases(case):  # (float16's case is built the same way)
    pytest.importorskip("ml_dtypes")
    inp = bc.make_inputs("layer_norm_backward", case, small=True)
    assert inp.x.dtype.name == case.dtype and inp.stats["rstd"].dtype == np.float32
    built, skipped = bc.build(inp, 1)
    assert "numpy" in skipped and set(skipped) <= {"numpy", "torch"}
    for name, c in built.items():  # numba_ln's dx: one 16-bit rounding of each element
        bound = (1e-2 if case.dtype == "bfloat16" else 2e-3) if name.startswith("numba_ln") \
            else bc.RTOL[case.dtype]  # (torch's 16-bit dweight: ~2% at this shape)
        assert c.check(inp, c.call()) < bound, name
    dx, *rest = built["numba_ln-alloc"].call()
    with pytest.raises(AssertionError, match="dx off by"):
        bc.check(inp, (dx.astype(np.float32) * 1.1, *rest))


def test_backward_targets_on_made_up_results():
    def result(func, case, out_fraction, alloc_s, torch_s):
        return {"function": func, "case": case, "libraries": {
            "numba_ln-out": {"fraction_of_line": out_fraction, "times_s": [1.0]},
            "numba_ln-alloc": {"times_s": [alloc_s]}, "torch": {"times_s": [torch_s]}}}
    fake = [result("layer_norm_backward", "4096x1024", 0.55, 1.0, 1.6),
            result("layer_norm_backward", "16384x1024", 0.65, 1.0, 1.4),
            result("rms_norm_backward", "4096x1024", 0.9, 1.0, 2.0),
            result("layer_norm_backward", "4096x1024-bf16", 0.1, 1.0, 3.5)]
    got = targets.evaluate_targets(fake, {}, targets.BACKWARD_TARGETS)
    assert [t["status"] for t in got] == ["PASS", "MISS", "MISS", "PASS"]
    # out= is judged at the 64 MB shapes only; the speedup at every float32 case
    assert got[0]["values"] == {"16384x1024": 0.65}
    assert np.isclose(got[1]["values"]["4096x1024"], 1.6)
    assert np.isclose(got[1]["values"]["16384x1024"], 1.4)
    assert got[3]["values"] == {"4096x1024-bf16": 3.5}  # (the float32 targets ignore it)
