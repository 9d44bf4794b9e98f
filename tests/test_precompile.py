"""``python -m numba_ln.precompile`` / ``numba_ln.precompile()``: the kernels of the chosen
calls are in the cache afterwards (a new process compiles none of them), with progress
and a summary; bad arguments are refused before anything compiles."""
import inspect
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import numba_ln
from numba_ln import _precompile, _precompile_calls


def _python(args, env, cwd):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=600, env=env, cwd=cwd)


def test_precompiled_kernels_load_in_a_new_process(tmp_path):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    done = _python(["-m", "numba_ln.precompile", "--dtypes", "float64", "--functions",
                    "moments", "--processes", "1"], env, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "[1/1] float64 moments:" in done.stderr
    assert "kernels compiled for 1 tasks" in done.stdout
    assert str(tmp_path / "cache") in done.stdout
    check = textwrap.dedent("""
        import numpy as np, numba_ln
        from numba_ln.cpu import rows
        for shape in ((2, 768), (512, 1024)):
            mean, var = numba_ln.moments(np.ones(shape))
            assert (mean == 1).all() and (var == 0).all()
        print(sum(sum(k._cache_misses.values()) for k in (rows.rows_block,
                                                           rows.rows_parallel)))
    """)
    done = _python(["-c", check], env, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["0"]
    # numba_ln.precompile() from a script without an `if __name__ == "__main__":` guard
    # (multiprocessing's workers imported the script again, and failed)
    script = tmp_path / "build_image.py"
    script.write_text("import numba_ln\n"
                      "summary = numba_ln.precompile(dtypes='float64', functions='moments')\n"
                      "print('tasks', summary['tasks'])\n")
    done = _python([str(script)], env, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["tasks", "1"]


def test_bad_arguments_are_refused_first(tmp_path):
    for args in (["--dtypes", "int8"], ["--functions", "softmax"], ["--processes", "0"]):
        done = _python(["-m", "numba_ln.precompile", *args], dict(os.environ), tmp_path)
        assert done.returncode == 2 and "unknown or invalid" in done.stderr
        assert "Traceback" not in done.stderr


def test_bad_arguments_to_the_function_are_refused_before_any_work(monkeypatch):
    """numba_ln.precompile() checks what the command line checks, naming the argument,
    before a worker starts (a string was read letter by letter; unknown names failed
    inside the workers)."""
    started = []
    monkeypatch.setattr(_precompile, "_start_worker",
                        lambda: started.append(1) or pytest.fail("a worker started"))
    for kwargs, error, message in [
            (dict(dtypes=("float8",)), ValueError, "dtypes: unknown 'float8'"),
            (dict(dtypes=("int32",)), ValueError, "dtypes: unknown 'int32'"),
            (dict(functions="moments,foo"), ValueError, "functions: unknown 'foo'"),
            (dict(functions=3), TypeError, "functions must be a sequence"),
            (dict(dtypes=[np.float32]), TypeError, "dtypes must be names"),
            (dict(processes=0), ValueError, "processes must be an int >= 1 or None"),
            (dict(processes="2"), TypeError, "processes must be an int >= 1 or None"),
            (dict(progress="print"), TypeError, "progress must be None or a callable"),
            (dict(everything="yes"), TypeError, "everything must be True or False"),
            (dict(dtypes=","), ValueError, "dtypes: no name given"),
            (dict(functions=()), ValueError, "functions: no name given")]:
        with pytest.raises(error, match=message):
            numba_ln.precompile(**kwargs)
    assert not started
    assert _precompile._names("float32,float16", "dtypes", _precompile.COMMON_DTYPES) == (
        "float32", "float16")  # (one string as the command line takes it)
    assert _precompile._names(["moments", "rms_norm", "moments"], "functions",
                              _precompile.FUNCTIONS) == ("moments", "rms_norm")  # (each once)


def test_tasks_and_the_callable_module():
    assert ("layer_norm_backward", "float16") in _precompile.tasks()
    assert ("layer_norm", "bfloat16") in _precompile.tasks()
    assert len(_precompile.tasks(everything=True)) == len(_precompile.tasks()) + 4
    assert _precompile.tasks()[0][0] == "layer_norm_backward"  # (the longest first)
    # the large shape is one the backward's gate checks and then runs in threads
    # (small_backward_fits), the small one one it runs serially
    from numba_ln import _config
    serial_max = _config.SERIAL_MAX_ELEMENTS // _config.BACKWARD_COST
    assert (_precompile_calls._SMALL[0] * _precompile_calls._SMALL[1] <= serial_max
            < _precompile_calls._LARGE[0] * _precompile_calls._LARGE[1])
    import numba_ln.precompile as module  # the module is what numba_ln.precompile calls

    assert callable(numba_ln.precompile) and callable(module)
    # help() and IDEs see the parameters (they saw (*args, **kwargs))
    for f in (numba_ln.precompile, module, module.precompile):
        assert list(inspect.signature(f).parameters) == [
            "dtypes", "functions", "everything", "processes", "progress"]


def test_all_forms_make_the_small_calls_of_the_other_forms(small_ran):
    """--all's other forms (weight without bias, a 1-D token, plain and fused, strided
    rows, fused statistics, parameters of another dtype or read-only, several trailing
    axes, a residual stream in place, grad_residual, param_grads=False and a given RMS
    rstd) are small calls: what they compile is what those calls need."""
    x = np.linspace(-1.0, 1.0, 32, dtype=np.float32).reshape(2, 16)
    _precompile_calls._other_forms(numba_ln, x, np.ones(16, np.float32))
    assert small_ran.count("small_norm") == 9 and small_ran.count("small_add_norm") == 6
    assert small_ran.count("small_backward") == 11  # (2 + 2 x 4 + 1)


def test_bfloat16_without_ml_dtypes_is_dropped_or_refused(monkeypatch, capsys):
    """--dtypes bfloat16 without ml_dtypes ran no task and said nothing ("0 kernels
    compiled for 0 tasks")."""
    monkeypatch.setitem(sys.modules, "ml_dtypes", None)  # (its import fails)
    assert _precompile.available(("float32", "bfloat16")) == ("float32",)
    with pytest.raises(ValueError, match="bfloat16 needs ml_dtypes"):
        numba_ln.precompile(dtypes="bfloat16")
    with pytest.raises(SystemExit) as stop:
        _precompile.main(["--dtypes", "bfloat16"])
    assert stop.value.code == 2 and "bfloat16 needs ml_dtypes" in capsys.readouterr().err


def test_workers_start_quiet(monkeypatch):
    """numba_ln.precompile() from Python: each worker logged the first-use notice, which
    tells the user to precompile."""
    monkeypatch.delenv("NUMBA_LN_QUIET", raising=False)
    started = []
    monkeypatch.setattr(_precompile.subprocess, "Popen",
                        lambda args, **kw: started.append(kw["env"]))
    _precompile._start_worker()
    assert started[0]["NUMBA_LN_QUIET"] == "1"


def test_a_cache_lock_file_that_cannot_be_opened_does_not_fail_the_save(tmp_path):
    """A shared cache folder whose numba_ln.lock another user owns: the save raised
    PermissionError out of the user's call; plain Numba saves there (unlocked)."""
    from numba_ln.cpu import _jit

    (tmp_path / "numba_ln.lock").mkdir()  # (opening it to append fails, as unwritable)
    saved = []
    assert _jit._locked(lambda key, data: saved.append((key, data)) or "ok",
                        str(tmp_path))("k", b"d") == "ok"
    assert saved == [("k", b"d")]


def test_a_file_system_without_locks_does_not_fail_the_save(tmp_path, monkeypatch):
    from numba_ln.cpu import _jit

    def no_locks(fd, operation):
        raise OSError(37, "No locks available")

    monkeypatch.setattr(_jit.fcntl, "flock", no_locks)
    assert _jit._locked(lambda key, data: "saved", str(tmp_path))("k", b"d") == "saved"
