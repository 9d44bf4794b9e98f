"""The ``numba_ln.bench`` package piece by piece: lazy imports of the optional peers, skips
with reasons, the onnxruntime contenders, the speed-line copies, the case table's
arithmetic, and the target table's judgement on made-up results (no timing asserted)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from numba_ln.bench import targets
from numba_ln.bench.cases import CASE_BY_NAME, FUNCTIONS, Case, Function, bytes_moved, \
    make_inputs
from numba_ln.bench.check import check_line
from numba_ln.bench.contenders import LIBRARIES, build
from numba_ln.bench.lines import LINES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPTIONAL = ("torch", "onnx", "onnxruntime", "matplotlib")


def test_importing_the_package_imports_no_optional_peer():
    code = ("import pkgutil, importlib, sys, numba_ln.bench as b\n"
            "for m in pkgutil.iter_modules(b.__path__):\n"
            "    if m.name != '__main__':\n"
            "        importlib.import_module('numba_ln.bench.' + m.name)\n"
            f"print(sorted(m for m in {OPTIONAL!r} if m in sys.modules))\n")
    env = dict(os.environ, PYTHONPATH=ROOT)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_missing_peers_are_skipped_with_a_reason(monkeypatch):
    for module in ("torch", "onnx", "onnxruntime"):
        monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
    inp = make_inputs("layer_norm", CASE_BY_NAME["8x4096"], small=True)
    built, skipped = build(inp, 1)
    assert set(skipped) == {"torch", "onnxruntime", "onnxruntime-run"}
    assert all("is not installed" in why for why in skipped.values())
    assert set(built) == set(LIBRARIES) - set(skipped)
    for lib, c in built.items():
        c.check(inp, c.call())


@pytest.mark.parametrize("func", ["layer_norm", "add_layer_norm"])
def test_onnxruntime_run_allocates_and_iobinding_does_not(func):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    inp = make_inputs(func, CASE_BY_NAME["4096x1024"], small=True)
    built, skipped = build(inp, 1, ("onnxruntime", "onnxruntime-run"))
    assert not skipped, skipped
    run, bound = built["onnxruntime-run"], built["onnxruntime"]
    assert "session.run" in run.description and "IOBinding" in bound.description
    first, second = run.call(), run.call()
    run.check(inp, first)
    firsts = first if isinstance(first, tuple) else (first,)
    seconds = second if isinstance(second, tuple) else (second,)
    assert len(firsts) == len(inp.spec.writes)
    assert all(a is not b and np.array_equal(a, b) for a, b in zip(firsts, seconds))
    assert bound.call() is bound.call()  # the same preallocated outputs
    bound.check(inp, bound.call())


def test_speed_line_copies_any_dtype_and_are_checked():
    # A float16 case is a table row; its line is a 16-bit copy.
    case = Case("64x256-f16", (64, 256), (64, 256), dtype="float16", functions=FUNCTIONS)
    for func in ("layer_norm", "add_rms_norm"):
        inp = make_inputs(func, case)
        assert inp.x.dtype == np.float16 and inp.nbytes == bytes_moved(func, (64, 256), "f2")
        built, skipped = build(inp, 2, LINES)
        assert not skipped
        for c in built.values():
            got = c.call()
            c.check(inp, got)
            wrong = tuple(np.zeros_like(a) for a in got) if isinstance(got, tuple) else got * 0
            with pytest.raises(AssertionError, match="speed-line copy"):
                check_line(inp, wrong)


def test_bytes_moved_follow_the_function_table():
    assert bytes_moved("layer_norm", (4, 8), "float32") == 2 * 4 * 8 * 4
    assert bytes_moved("add_rms_norm", (4, 8), "float64") == 4 * 4 * 8 * 8
    backward = Function("layer_norm_backward", 1e-5, True, reads=("x", "dy"), writes=("dx",))
    assert backward.bytes_moved((4, 8), "float32") == 1.5 * bytes_moved("layer_norm", (4, 8),
                                                                        "float32")


# --------------------------------------------------------------------------- targets


def _result(func, case, times=None, fractions=None):
    """A made-up run_case result: ``times`` {lib: [s per round]}, ``fractions`` {lib: x}."""
    libs = {}
    for lib, ts in (times or {}).items():
        libs[lib] = {"times_s": ts, "per_call_us": float(np.median(ts)) * 1e6}
    for lib, f in (fractions or {}).items():
        libs.setdefault(lib, {})["fraction_of_line"] = f
    return {"function": func, "case": case, "libraries": libs}


def _judge(results, start, extras=None):
    found = [t for t in targets.evaluate_targets(results, extras or {})
             if t["target"].startswith(start)]
    assert len(found) == 1, [t["target"] for t in targets.evaluate_targets([], {})]
    return found[0]


def test_target_table_is_the_issues():
    got = [(t.func, t.op, t.threshold, t.cases.text if t.cases else None)
           for t in targets.TARGETS]
    big = "at 4096x768, 4096x1024, 16384x1024, 4096x4096"
    rows = "at every case with >= 4096 rows"
    assert got == [
        ("layer_norm", ">=", 0.8, big),
        ("layer_norm", ">", 1.0, "at every case of the suite"),
        ("layer_norm", ">=", 1.2, rows),
        ("layer_norm", "<=", 1.15, "at 4096x4096, 16384x1024"),
        ("layer_norm", "<=", 0.6, "at 1x768"),
        ("layer_norm", ">=", 0.6, "at 65536x64"),
        ("layer_norm", ">=", 0.5, "at 32x256x56x56-axis1"),
        (None, ">=", 1.5, None),
        ("rms_norm", ">=", 0.8, rows),
        ("rms_norm", ">=", 2.0, rows),
        ("add_layer_norm", ">=", 0.75, rows),
        ("add_layer_norm", ">", 1.0, rows),
        ("add_layer_norm", ">", 1.0, rows),
        ("add_layer_norm", "<=", 0.6, "at 1x768"),
        (None, "<=", 1.0, None),
    ]
    texts = [targets.target_text(t) for t in targets.TARGETS]
    assert len(set(texts)) == len(texts) and not any("{" in t for t in texts)


def test_nothing_measured_is_all_skip():
    assert {t["status"] for t in targets.evaluate_targets([], {})} == {"SKIP"}


def test_line_target_quotes_the_worst_case():
    results = [_result("layer_norm", "4096x768", fractions={"numba_ln-out": 0.9}),
               _result("layer_norm", "4096x1024", fractions={"numba_ln-out": 0.79}),
               _result("layer_norm", "8x4096", fractions={"numba_ln-out": 0.1})]  # not judged
    t = _judge(results, "layer_norm out= >= 0.8x")
    assert t["status"] == "MISS" and t["measured"].startswith("worst 0.79 at 4096x1024")
    assert set(t["values"]) == {"4096x768", "4096x1024"}


def test_onnxruntime_run_target_compares_allocating_numba_ln():
    times = {"numba_ln-alloc": [1.0, 1.0], "numba_ln-out": [5.0, 5.0],
             "onnxruntime-run": [1.3, 1.3], "onnxruntime": [0.1, 0.1]}
    results = [_result("layer_norm", "65536x64", times),
               _result("layer_norm", "4096x1024-f64", times),
               _result("layer_norm", "8x4096", {**times, "onnxruntime-run": [0.5, 0.5]})]
    t = _judge(results, "layer_norm allocating >= 1.2x onnxruntime-run")
    assert t["status"] == "PASS"  # 8x4096 has 8 rows: not judged
    assert t["values"] == pytest.approx({"65536x64": 1.3, "4096x1024-f64": 1.3})


def test_alloc_within_out_target_is_a_time_ratio():
    results = [_result("layer_norm", "4096x4096", {"numba_ln-alloc": [1.1],
                                                   "numba_ln-out": [1.0]}),
               _result("layer_norm", "16384x1024", {"numba_ln-alloc": [1.2],
                                                    "numba_ln-out": [1.0]}),
               _result("layer_norm", "4096x1024", {"numba_ln-alloc": [3.0],
                                                   "numba_ln-out": [1.0]})]
    t = _judge(results, "layer_norm allocating time <= 1.15x the out= time")
    assert t["status"] == "MISS" and t["measured"].startswith("worst 1.20 at 16384x1024")


@pytest.mark.parametrize("func", ["layer_norm", "add_layer_norm"])
def test_single_token_targets(func):
    fast = [_result(func, "1x768", {"numba_ln-alloc": [1e-6], "torch": [2e-6]})]
    t = _judge(fast, f"{func} allocating per-call time <= 0.6x torch's")
    assert t["status"] == "PASS"
    assert t["measured"] == "0.50x (1.00 us vs torch 2.00 us; 1x768)"
    without_torch = [_result(func, "1x768", {"numba_ln-alloc": [1e-6]})]
    assert _judge(without_torch, f"{func} allocating per-call time")["status"] == "SKIP"


def test_add_layer_norm_onnxruntime_target_uses_out_and_iobinding():
    times = {"numba_ln-out": [1.0], "numba_ln-alloc": [9.0], "onnxruntime": [1.5],
             "onnxruntime-run": [0.5]}
    t = _judge([_result("add_layer_norm", "4096x1024", times)],
               "add_layer_norm out= faster than onnxruntime SkipLayerNormalization")
    assert t["status"] == "PASS" and t["values"] == pytest.approx({"4096x1024": 1.5})


def test_extra_measurement_targets():
    scaling = {"thread_scaling": {"threads": 2, "speedup": 1.4, "one_thread_us": 140.0,
                                  "n_threads_us": 100.0}}
    t = _judge([], "layer_norm 1x4194304", scaling)
    assert t["status"] == "MISS" and t["measured"].startswith("1.40x at 2 threads")
    one = {"thread_scaling": {**scaling["thread_scaling"], "threads": 1}}
    assert _judge([], "layer_norm 1x4194304", one)["status"] == "SKIP"
    startup = {"startup": {"overhead_s": 1.2, "numba_ln_first_calls_s": 1.5,
                           "import_numba_s": 0.3, "repeats": 3}}
    t = _judge([], "new process", startup)
    assert t["status"] == "MISS" and t["measured"].startswith("+1.20 s")


def test_benchmark_parameters_are_saved_as_names():
    """Every pytest-benchmark test's parameters are plain values, which pytest-benchmark's
    saved files (--benchmark-autosave/--benchmark-json) hold as they are: a Case object was
    saved as "UNSERIALIZABLE[Case(...)]".  Collected in a subprocess (dask's files import
    distributed)."""
    code = ("import json, pytest\n"
            "class Params:\n"
            "    def pytest_collection_modifyitems(self, items):\n"
            "        self.params = [item.callspec.params for item in items\n"
            "                       if hasattr(item, 'callspec')]\n"
            "p = Params()\n"
            "pytest.main(['--collect-only', '-q', '-p', 'no:cacheprovider', '-n', '0',\n"
            "             'benchmarks'], plugins=[p])\n"
            "print('PARAMS', json.dumps(p.params))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    line = [s for s in done.stdout.splitlines() if s.startswith("PARAMS ")]
    assert line, done.stdout + done.stderr
    params = json.loads(line[0][len("PARAMS "):])  # (json.dumps failed on a Case)
    cases = {p["case"] for p in params if "case" in p}
    assert "4096x1024" in cases and "4096x1024-bf16" in cases, cases


def test_case_table_columns_line_up_with_long_names():
    """Every row of a case's table has its numbers in the same columns, whatever the names'
    lengths ("numba_ln-recompute", 18 characters, pushed its row out)."""
    from numba_ln.bench.report import format_case

    entry = {"per_call_us": 12.5, "gbps": 3.25, "fraction_of_line": 0.5,
             "speedup_out": 1.0, "speedup_alloc": 1.1}
    r = {"function": "layer_norm_backward", "case": "4096x768", "shape": [4096, 768],
         "dtype": "float32", "axis": -1, "bytes": 1 << 20,
         "line": {"gbps": None, "median_s": None, "fastest": {}},
         "libraries": {"numba_ln-alloc": entry, "numba_ln-recompute": entry, "torch": entry},
         "skipped": {}}
    rows = format_case(r).splitlines()[2:]
    assert len({row.index("12.50") for row in rows}) == 1, rows



def test_plot_draws_only_measured_libraries(tmp_path, monkeypatch):
    """--plot's bars: the libraries measured (one not measured was drawn as bars at 0,
    which read as a measured value near 0)."""
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from matplotlib.axes import Axes

    from numba_ln.bench.plot import plot

    labels = []
    real_bar = Axes.bar
    monkeypatch.setattr(Axes, "bar", lambda self, *a, **k: labels.append(k.get("label"))
                        or real_bar(self, *a, **k))
    entry = {"fraction_of_line": 0.5}
    results = [{"function": "layer_norm", "case": c,
                "libraries": {"numba_ln-out": entry, "torch": entry}} for c in ("1x768", "8x4096")]
    meta = {"environment": {"numba_ln": "0", "cpu": "cpu", "threads": 2}}
    plot(results, tmp_path / "b.png", meta)
    assert set(labels) == {"numba_ln-out", "torch"} and (tmp_path / "b.png").stat().st_size
