"""numba_ln/bench/compile_profile.py: own times of nested compilations, and the report."""
import json

import pytest

from numba_ln.bench import compile_profile


def test_own_times_leave_out_nested_compilations():
    # a kernel (2.0 s) compiling two helpers (0.5 s, and 0.3 s with one of its own)
    records = [{"depth": 1, "seconds": 0.5}, {"depth": 2, "seconds": 0.1},
               {"depth": 1, "seconds": 0.3}, {"depth": 0, "seconds": 2.0},
               {"depth": 0, "seconds": 1.0}]
    own = [r["own"] for r in compile_profile.own_times(records)]
    assert own == pytest.approx([0.5, 0.1, 0.2, 1.2, 1.0])
    assert sum(own) == pytest.approx(3.0)


def test_report_adds_up_processes(tmp_path):
    for pid, rows in ((1, [("a.k", "t.py::x", 0, 2.0)]),
                      (2, [("a.h", "t.py::y", 1, 0.5), ("a.k", "u.py::z", 0, 1.5)])):
        with open(tmp_path / f"{pid}.jsonl", "w") as f:
            for kernel, test, depth, seconds in rows:
                f.write(json.dumps({"kernel": kernel, "test": test, "depth": depth,
                                    "seconds": seconds}) + "\n")
    lines = compile_profile.report(str(tmp_path))
    assert lines[0] == "3 compilations, 3.5 s (own times, all processes)"
    kernels = lines[lines.index("--- by kernel: seconds, compilations") + 1:][:2]
    assert kernels[0].split() == ["3.0", "2", "a.k"] and kernels[1].split() == ["0.5", "1", "a.h"]
    # (a.h nested in pid 2's a.k: 0.5 s its own, 1.0 s a.k's)
    assert "     2.5     2  t.py" in lines and "     1.0     1  u.py" in lines


def test_the_report_command_checks_its_folder(tmp_path, capsys):
    """`python -m numba_ln.bench.compile_profile --help` (or a folder without records)
    printed an empty report."""
    with pytest.raises(SystemExit) as stop:
        compile_profile.main(["--help"])
    assert stop.value.code == 0 and "the folder of the run's records" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stop:
        compile_profile.main([str(tmp_path)])
    assert stop.value.code == 2 and "no records in" in capsys.readouterr().err
    test_report_adds_up_processes(tmp_path)
    assert compile_profile.main([str(tmp_path), "--top", "1"]) == 0
    assert capsys.readouterr().out.startswith("3 compilations, 3.5 s")


def test_records_name_the_argument_types_and_list_by_kernel(tmp_path, capsys):
    from numba import njit
    from numba.core import event

    recorder = compile_profile._Recorder(str(tmp_path))
    recorder.test = "t.py::x"

    class Listener(event.Listener):
        def on_start(self, ev):
            recorder.on_start(ev)

        def on_end(self, ev):
            recorder.on_end(ev)

    @njit
    def twice(a):
        return a * 2

    with event.install_listener("numba:compile", Listener()):
        twice(1.5)
        twice(2)
    recorder.out.close()
    listed = compile_profile.variants(str(tmp_path), "twice")
    assert len(listed) == 2 and all("t.py::x" in line for line in listed)
    assert "(float64,)" in listed[0] and "(int64,)" in listed[1]
    assert compile_profile.main([str(tmp_path), "--variants", "twice"]) == 0
    assert "(float64,)" in capsys.readouterr().out


def _write_run(folder, rows):
    folder.mkdir()
    with open(folder / "1.jsonl", "w") as f:
        for kernel, types, test, seconds in rows:
            f.write(json.dumps({"kernel": kernel, "types": types, "test": test, "depth": 0,
                                "seconds": seconds}) + "\n")


def test_sole_lists_what_the_same_test_compiled_first_both_ways(tmp_path, capsys):
    # k(int) needs only t.py::x; k(float) is compiled first by x one way, by y the other
    _write_run(tmp_path / "usual", [("a.k", "(int64,)", "t.py::x", 2.0),
                                    ("a.k", "(float64,)", "t.py::x", 1.0),
                                    ("a.h", "(int64,)", "t.py::y", 0.5)])
    _write_run(tmp_path / "reversed", [("a.h", "(int64,)", "t.py::y", 0.7),
                                       ("a.k", "(float64,)", "t.py::y", 1.0),
                                       ("a.k", "(int64,)", "t.py::x", 3.0)])
    lines = compile_profile.sole(str(tmp_path / "usual"), str(tmp_path / "reversed"))
    assert lines[0] == "2 compilations, 3.1 s made first by the same test in both runs"
    assert lines[2:] == ["     2.5     1  t.py::x", "     0.6     1  t.py::y"]
    assert compile_profile.main([str(tmp_path / "usual"), "--sole",
                                 str(tmp_path / "reversed"), "--top", "1"]) == 0
    assert capsys.readouterr().out.splitlines()[2:] == ["     2.5     1  t.py::x"]
    with pytest.raises(SystemExit) as stop:
        compile_profile.main([str(tmp_path / "usual"), "--sole", str(tmp_path)])
    assert stop.value.code == 2 and f"no records in {tmp_path}:" in capsys.readouterr().err


def test_reverse_order_is_an_option_of_the_plugin():
    class Parser:
        def addoption(self, name, **kwargs):
            self.added = (name, kwargs)

    parser = Parser()
    compile_profile.pytest_addoption(parser)
    assert parser.added[0] == "--reverse-order"
    assert parser.added[1]["action"] == "store_true"

    class Config:
        def __init__(self, reverse):
            self.reverse = reverse

        def getoption(self, name):
            assert name == "--reverse-order"
            return self.reverse

    for reverse, expected in ((False, [1, 2, 3]), (True, [3, 2, 1])):
        items = [1, 2, 3]
        compile_profile.pytest_collection_modifyitems(Config(reverse), items)
        assert items == expected
