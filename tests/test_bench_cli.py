"""``python -m numba_ln.bench`` end to end: one subprocess run on one tiny case, and in-process
runs of ``numba_ln.bench.cli.main`` (start-up measurement replaced by a fixed figure, so
that no subprocess starts) for the target lines, a broken contender and ``--libraries``.

Single rounds of ~1 ms batches; no test here asserts a time.
"""
import json
import os
import subprocess
import sys

import pytest

from numba_ln import _config
from numba_ln.bench import cli, contenders, targets
from numba_ln.bench.base import Contender
from numba_ln.bench.lines import LINES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--rounds", "1", "--batch-ms", "0.5", "--warmup-ms", "0.1"]
PEERS = ("torch", "onnxruntime", "onnxruntime-run")
FAKE_STARTUP = {"import_numba_s": 0.3, "numba_ln_first_calls_s": 0.7, "overhead_s": 0.4,
                "in_process_import_s": 0.2, "in_process_first_calls_s": 0.1, "repeats": 2}


def _run(args, timeout=120, **settings):
    env = dict(os.environ, **settings)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return subprocess.run([sys.executable, "-m", "numba_ln.bench", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "report.json"
    done = _run(["--cases", "1x768", "--functions", "layer_norm,add_rms_norm", *TINY,
                 "--no-targets", "--json", str(path)], NUMBA_LN_STREAM_MIN_BYTES="48M")
    assert done.returncode == 0, done.stderr[-3000:]
    with open(path) as f:
        return json.load(f), done


def test_json_structure(report):
    data, _ = report
    assert set(data) == {"meta", "results", "extras", "targets"}
    env = data["meta"]["environment"]
    for key in ("numba_ln", "numba", "numpy", "torch", "onnxruntime", "cpu", "threads",
                "threading_layer", "vector_bits"):
        assert key in env
    assert env["vector_bits"] == _config.PREFERRED_VECTOR_BITS
    assert env["stream_min_bytes"] == 48 * 2**20  # (the run's NUMBA_LN_STREAM_MIN_BYTES)
    assert env["threads"] >= 1
    assert data["meta"]["settings"]["rounds"] == 1
    assert [(r["function"], r["case"]) for r in data["results"]] == [
        ("layer_norm", "1x768"), ("add_rms_norm", "1x768")]
    for r in data["results"]:
        assert r["shape"] == [1, 768] and r["dtype"] == "float32" and r["rounds"] == 1
        assert r["bytes"] == (4 if r["function"].startswith("add_") else 2) * 768 * 4
        assert r["line"]["median_s"] > 0 and r["line"]["gbps"] > 0
        libs = r["libraries"]
        for lib in ("numba_ln-out", "numba_ln-alloc", "numpy", *LINES):
            assert lib in libs, (lib, r["skipped"])
        for lib in PEERS:  # present, or skipped with a reason
            assert (lib in libs) != (lib in r["skipped"])
            if lib in r["skipped"]:
                assert r["skipped"][lib] and not r["skipped"][lib].startswith("broken")
        for lib, e in libs.items():
            assert len(e["times_s"]) == 1 and e["median_s"] > 0
            assert e["per_call_us"] == pytest.approx(e["median_s"] * 1e6)
            assert e["gbps"] == pytest.approx(r["bytes"] / e["median_s"] / 1e9)
            # one round: the line's time over this one (no bound: a loaded machine can slow
            # the line's batch more than another's)
            assert e["fraction_of_line"] == pytest.approx(r["line"]["median_s"] / e["median_s"])
            for ours, key in (("numba_ln-out", "speedup_out"), ("numba_ln-alloc",
                                                                 "speedup_alloc")):
                assert e[key] == pytest.approx(e["times_s"][0] / libs[ours]["times_s"][0])
            assert e["check_error"] < 1e-3
        assert max(libs[k]["fraction_of_line"] for k in LINES) == pytest.approx(1.0)
        assert sum(r["line"]["fastest"].values()) == 1
    assert data["targets"] == [] and data["extras"] == {}


def test_printed_report(report):
    data, done = report
    out = done.stdout
    assert "layer_norm  1x768" in out and "add_rms_norm  1x768" in out
    assert "threading layer" in out and "versions:" in out
    assert "calls that move at least 48 MiB (NUMBA_LN_STREAM_MIN_BYTES)" in out
    assert "numba_ln-out speedup" in out and "numba_ln-alloc speedup" in out
    for r in data["results"]:
        for lib in r["libraries"]:
            assert f"\n  {lib} " in out
        for lib, why in r["skipped"].items():
            assert f"{lib:<16} skipped: {why}" in out
    assert "targets:" not in out
    assert "round 1/1" in done.stderr  # progress goes to stderr


def test_targets_printed_and_saved(tmp_path, capsys, monkeypatch):
    """Every target of the table is printed with its status, and --json holds the same."""
    monkeypatch.setattr(cli, "startup_overhead", lambda repeats, progress: FAKE_STARTUP)
    path = tmp_path / "t.json"
    assert cli.main(["--small", "--cases", "1x768,65536x64", "--functions", "layer_norm",
                     "--libraries", "numba_ln-out,numba_ln-alloc", *TINY,
                     "--json", str(path)]) == 0
    out = capsys.readouterr().out
    data = json.loads(path.read_text())
    assert len(data["targets"]) == len(targets.TARGETS)
    for t, spec in zip(data["targets"], targets.TARGETS):
        assert t["target"] == targets.target_text(spec)
        assert f"  {t['status']:<4}  {t['target']}: {t['measured']}" in out
    by_text = {t["target"]: t for t in data["targets"]}
    startup = by_text[targets.target_text(targets.TARGETS[-1])]
    assert startup["status"] == "PASS" and startup["measured"].startswith("+0.40 s")
    assert data["extras"]["startup"] == FAKE_STARTUP
    short_rows = next(t for t in data["targets"] if "at 65536x64" in t["target"])
    assert short_rows["status"] in ("PASS", "MISS") and "65536x64" in short_rows["values"]
    # torch was not selected, the big cases were not run: those targets are not judged
    assert by_text["layer_norm allocating faster than torch F.layer_norm at every case of "
                   "the suite (speedup)"]["status"] == "SKIP"
    assert next(t for t in data["targets"] if "0.8x the speed line at 4096x768" in
                t["target"])["status"] == "SKIP"
    counts = {s: sum(t["status"] == s for t in data["targets"]) for s in ("PASS", "MISS", "SKIP")}
    assert f"{counts['PASS']} PASS, {counts['MISS']} MISS, {counts['SKIP']} SKIP" in out
    for r in data["results"]:  # --libraries: the chosen ones and the speed-line copies
        assert set(r["libraries"]) == {"numba_ln-out", "numba_ln-alloc", *LINES}


def test_broken_contender_is_reported(capsys, monkeypatch):
    def wrong(inp, threads):
        return Contender("numpy", lambda: inp.x * 2.0, "returns 2 x")

    monkeypatch.setitem(contenders.BUILDERS, "numpy", wrong)
    assert cli.main(["--small", "--cases", "8x4096", "--functions", "layer_norm",
                     "--libraries", "numba_ln-out,numpy", *TINY, "--no-targets"]) == 0
    out = capsys.readouterr().out
    assert (f"  {'numpy':<16} NOT TIMED, its result failed the check: AssertionError: "
            "layer_norm 8x4096: y off by") in out
    assert "\n  numba_ln-out " in out


def test_unknown_case_is_an_error_from_the_command_line():
    done = _run(["--cases", "no-such-case"])
    assert done.returncode == 2 and "unknown case" in done.stderr
    assert done.stderr.startswith("usage: ") and "Traceback" not in done.stderr


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
