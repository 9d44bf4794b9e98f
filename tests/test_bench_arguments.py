"""``python -m numba_ln.bench``'s arguments, in process: the help, every usage error
reported as argparse reports them before anything runs, and what each mode reads (split
from test_bench_cli.py, which runs the bench)."""
import pytest

from numba_ln.bench import arguments, cli, contenders
from numba_ln.bench.cases import CASES


def test_help_lists_cases():
    text = arguments.parser().format_help()
    for case in CASES:
        assert case.name in text
    for lib in contenders.NUMBA_LN + contenders.PEERS:
        assert lib in text


@pytest.fixture
def no_run(monkeypatch):
    """Makes any start of a benchmark run fail the test: every check below must stop the
    command before it."""
    def started(*args, **kwargs):
        raise AssertionError("a benchmark run started")

    for name in ("environment", "progress", "run_case", "thread_scaling", "startup_overhead"):
        monkeypatch.setattr(cli, name, started)


def _usage_error(capsys, args):
    """The error message of ``cli.main(args)``, which must fail as argparse does."""
    with pytest.raises(SystemExit) as exc:
        cli.main(args)
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert err.startswith("usage: python -m numba_ln.bench"), err
    return err.splitlines()[-1]


@pytest.mark.parametrize("args, message", [
    (["--cases", "no-such-case"], "--cases: unknown case(s) no-such-case; choose from 1x768"),
    (["--functions", "layer_nrom"], "--functions: unknown function(s) layer_nrom; choose from "
                                    "layer_norm, rms_norm"),
    (["--libraries", "tensorflow"], "--libraries: unknown librar(ies) tensorflow; choose from "
                                    "numba_ln-out"),
    (["--threads", "0"], "--threads must be between 1 and NUMBA_NUM_THREADS="),
    (["--rounds", "0"], "--rounds must be at least 1"),
    (["--batch-ms", "-5"], "--batch-ms must be a positive number of milliseconds (got -5)"),
    (["--batch-ms", "0"], "--batch-ms must be a positive number of milliseconds (got 0)"),
    (["--batch-ms", "nan"], "--batch-ms must be a positive number"),
    (["--warmup-ms", "-1"], "--warmup-ms must be 0 or more milliseconds (got -1)"),
    (["--cases", ""], "--cases: no name given"),
    (["--functions", " , "], "--functions: no name given"),
    (["--libraries", ""], "--libraries: no name given"),
    # the speed-line copies always run: naming one selects no library at all
    (["--libraries", "line-stream"], "--libraries: unknown librar(ies) line-stream; choose from "
                                     "numba_ln-out"),
    (["--functions", "rms_norm", "--cases", "65536x64"], "no (function, case) pair selected"),
])
def test_bad_values_are_usage_errors(capsys, no_run, args, message):
    assert message in _usage_error(capsys, args)


def test_backward_unknown_names_are_errors(capsys, no_run):
    message = _usage_error(capsys, ["--backward", "--functions", "no_such_function"])
    assert message.endswith("--functions: unknown backward function(s) no_such_function; "
                            "choose from layer_norm_backward, rms_norm_backward")
    message = _usage_error(capsys, ["--backward", "--cases", "4096x768,1x768"])
    assert "--cases: unknown backward case(s) 1x768; choose from 4096x768" in message


@pytest.mark.parametrize("args, message", [
    (["--half", "--cases", "no_such_case", "--functions", "no_such"],
     "--cases and --functions do not apply to --half, which honours --threads"),
    (["--dask", "--threads", "0"], "--threads does not apply to --dask"),
    (["--latency", "--small", "--no-targets"],
     "--small and --no-targets do not apply to --latency"),
    (["--half", "--plot", "b.png"], "--plot does not apply to --half"),
    (["--device", "cuda", "--libraries", "torch"], "--libraries does not apply to --device cuda"),
])
def test_options_a_mode_does_not_read_are_errors(capsys, no_run, args, message):
    assert message in _usage_error(capsys, args)


@pytest.mark.parametrize("args, message", [
    (["--dask", "--backward"], "--dask and --backward cannot be combined"),
    (["--half", "--latency"], "--half and --latency cannot be combined"),
    (["--device", "cuda", "--half"], "--device cuda and --half cannot be combined"),
])
def test_two_modes_are_an_error(capsys, no_run, args, message):
    assert message in _usage_error(capsys, args)


def test_every_mode_accepts_the_options_it_honours():
    p = arguments.parser()
    known = {s for action in p._actions for s in action.option_strings}
    assert set(arguments.OPTIONS) <= known
    values = {"--cases": "x", "--functions": "x", "--threads": "1", "--rounds": "1",
              "--batch-ms": "1", "--warmup-ms": "0", "--json": "x.json", "--plot": "x.png"}
    for mode, options in arguments.MODE_OPTIONS.items():
        assert set(options) <= known
        args = mode.split()
        for option in options:
            args += [option, values[option]] if option in values else [option]
        assert arguments.mode_of(p, p.parse_args(args)) == mode
        assert options[0] in p.format_help()


def test_output_files_are_checked_before_the_run(capsys, no_run, tmp_path):
    missing = tmp_path / "no_such_folder" / "b.json"
    assert f"--json {missing}: the folder {missing.parent} does not exist" in _usage_error(
        capsys, ["--json", str(missing)])
    assert "is a folder" in _usage_error(capsys, ["--json", str(tmp_path)])
    assert "does not exist" in _usage_error(capsys, ["--dask", "--json", str(missing)])
    assert "does not exist" in _usage_error(capsys, ["--plot", str(tmp_path / "no" / "b.png")])
    # a missing folder named with a trailing separator passed (its parent was checked),
    # and an empty name was skipped: the run ended in IsADirectoryError, or wrote nothing
    assert "is a folder" in _usage_error(capsys, ["--json", f"{tmp_path}/no_such_folder/"])
    assert "--json: no file name given" in _usage_error(capsys, ["--json", ""])
    assert "--plot: no file name given" in _usage_error(capsys, ["--plot", ""])


def test_plot_format_is_checked_before_the_run(capsys, no_run, monkeypatch, tmp_path):
    if not arguments.missing("matplotlib"):
        message = _usage_error(capsys, ["--plot", str(tmp_path / "b.txt")])
        assert "matplotlib cannot write .txt; end the name with one of" in message
        assert "png" in message and "svg" in message
        assert "has no extension" in _usage_error(capsys, ["--plot", str(tmp_path / "b")])
        p = arguments.parser()
        for name in ("b.png", "b.PDF", "b.svg"):  # accepted (the run is not started here)
            arguments.check_outputs(p, p.parse_args(["--plot", str(tmp_path / name)]))
        # pgf is written by running LaTeX: refused before the run where there is none
        monkeypatch.setattr(arguments.shutil, "which", lambda name: None)
        message = _usage_error(capsys, ["--plot", str(tmp_path / "b.pgf")])
        assert "matplotlib cannot write .pgf" in message
    monkeypatch.setattr(arguments, "missing", lambda module: module == "matplotlib")
    assert "--plot needs matplotlib" in _usage_error(capsys, ["--plot", str(tmp_path / "b.png")])


def test_repeated_names_run_once():
    p = arguments.parser()
    work, _ = arguments.selection(p, p.parse_args(["--cases", "4096x768,1x768,4096x768",
                                                   "--functions", "rms_norm,layer_norm,rms_norm"]))
    assert [(f, c.name) for f, c in work] == [  # in the order given
        ("rms_norm", "4096x768"), ("rms_norm", "1x768"), ("layer_norm", "4096x768"),
        ("layer_norm", "1x768")]
    cases, funcs = arguments.backward_selection(p, p.parse_args([
        "--backward", "--cases", "4096x768,4096x768", "--functions",
        "rms_norm_backward,rms_norm_backward"]))
    assert [c.name for c in cases] == ["4096x768"] and funcs == ("rms_norm_backward",)
