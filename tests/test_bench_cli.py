"""``python -m numba_ln.bench`` end to end on one tiny case, and its target logic.

One subprocess run with a single round of ~1 ms batches (a few seconds, mostly importing
torch); no test here asserts a time.
"""
import json
import os
import subprocess
import sys

import pytest

from numba_ln import _bench_contenders as bc
from numba_ln import bench

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args, timeout=120):
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return subprocess.run([sys.executable, "-m", "numba_ln.bench", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "report.json"
    done = _run(["--cases", "1x768", "--functions", "layer_norm,add_rms_norm", "--rounds", "1",
                 "--batch-ms", "0.5", "--warmup-ms", "0.1", "--no-targets", "--json", str(path)])
    assert done.returncode == 0, done.stderr[-3000:]
    with open(path) as f:
        return json.load(f), done


def test_json_structure(report):
    data, _ = report
    assert set(data) == {"meta", "results", "extras", "targets"}
    env = data["meta"]["environment"]
    for key in ("numba_ln", "numba", "numpy", "torch", "onnxruntime", "cpu", "threads",
                "threading_layer"):
        assert key in env
    assert env["threads"] >= 1
    assert data["meta"]["settings"]["rounds"] == 1
    assert [(r["function"], r["case"]) for r in data["results"]] == [
        ("layer_norm", "1x768"), ("add_rms_norm", "1x768")]
    for r in data["results"]:
        assert r["shape"] == [1, 768] and r["dtype"] == "float32" and r["rounds"] == 1
        assert r["bytes"] == (4 if r["function"].startswith("add_") else 2) * 768 * 4
        assert r["line"]["median_s"] > 0 and r["line"]["gbps"] > 0
        libs = r["libraries"]
        for lib in ("numba_ln-out", "numba_ln-alloc", "numpy", "line-copyto", "line-prange"):
            assert lib in libs, (lib, r["skipped"])
        for lib in ("torch", "onnxruntime"):  # present, or skipped with a reason
            assert (lib in libs) != (lib in r["skipped"])
            if lib in r["skipped"]:
                assert r["skipped"][lib] and not r["skipped"][lib].startswith("broken")
        for lib, e in libs.items():
            assert len(e["times_s"]) == 1 and e["median_s"] > 0
            assert e["per_call_us"] == pytest.approx(e["median_s"] * 1e6)
            assert e["gbps"] == pytest.approx(r["bytes"] / e["median_s"] / 1e9)
            assert 0 < e["fraction_of_line"] <= 1.0 + 1e-12  # the line is the faster copy
            assert e["speedup_out"] > 0 and e["speedup_alloc"] > 0
            assert e["check_error"] < 1e-3
        assert max(libs["line-copyto"]["fraction_of_line"],
                   libs["line-prange"]["fraction_of_line"]) == pytest.approx(1.0)
    assert data["targets"] == [] and data["extras"] == {}


def test_printed_report(report):
    _, done = report
    out = done.stdout
    assert "layer_norm  1x768" in out and "add_rms_norm  1x768" in out
    assert "threading layer" in out and "versions:" in out
    assert "round 1/1" in done.stderr  # progress goes to stderr


def test_targets_from_results(report):
    data, _ = report
    results = data["results"]
    targets = bench.evaluate_targets(results, {"startup": {
        "overhead_s": 0.4, "numba_ln_first_calls_s": 0.7, "import_numba_s": 0.3, "repeats": 3}})
    assert len(targets) == 13
    assert all(t["status"] in ("PASS", "MISS", "SKIP") for t in targets)
    by_text = {t["target"]: t for t in targets}
    startup = next(t for text, t in by_text.items() if text.startswith("new process"))
    assert startup["status"] == "PASS" and "+0.40 s" in startup["measured"]
    single = next(t for text, t in by_text.items() if "(1, 768) per-call" in text)
    if "torch" in results[0]["libraries"]:
        assert single["status"] in ("PASS", "MISS") and "us vs torch" in single["measured"]
    else:
        assert single["status"] == "SKIP"
    # cases that were not run are not judged
    big = next(t for text, t in by_text.items() if text.startswith("layer_norm out= >= 0.8x"))
    assert big["status"] == "SKIP"


def test_target_verdicts():
    fake = [{"function": "layer_norm", "case": name, "libraries": {
        "numba_ln-out": {"fraction_of_line": frac, "per_call_us": 1.0},
        "torch": {"speedup_alloc": 1.1, "speedup_out": 1.2, "per_call_us": 2.0}}}
        for name, frac in (("4096x768", 0.9), ("4096x1024", 0.79))]
    t = {x["target"].split(" at ")[0]: x for x in bench.evaluate_targets(fake, {})}
    line = t["layer_norm out= >= 0.8x speed line"]
    assert line["status"] == "MISS" and line["measured"].startswith("worst 0.79 at 4096x1024")
    torch_t = next(v for k, v in t.items() if "faster than torch" in k)
    assert torch_t["status"] == "PASS"


def test_help_lists_cases():
    text = bench._parser().format_help()
    for case in bc.CASES:
        assert case.name in text


def test_unknown_case_is_an_error():
    done = _run(["--cases", "no-such-case"])
    assert done.returncode != 0 and "unknown case" in done.stderr


def _gpu_available():
    try:
        from numba import cuda

        return bool(cuda.is_available())
    except Exception:
        return False


@pytest.mark.skipif(_gpu_available(), reason="a GPU is present: --device cuda would run")
def test_cuda_without_gpu_says_so():
    done = _run(["--device", "cuda", "--cases", "1x768"])
    assert done.returncode != 0
    assert "python -m numba_ln.bench --device cuda:" in done.stderr
    assert "Traceback" not in done.stderr
