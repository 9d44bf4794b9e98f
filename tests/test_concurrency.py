"""Threads at once, fork after use, and caching: the default install, no env variables."""
import multiprocessing
import os
import shutil
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numba
import numpy as np
import pytest
from _oracle import assert_close

import numba_ln
from numba_ln import reference as ref

PACKAGE = Path(numba_ln.__file__).parent


def test_eight_python_threads_at_once(rng):
    inputs = [(rng.standard_normal((256, 512)) + i).astype(np.float32) for i in range(8)]
    expected = [ref.layer_norm(x)[0] for x in inputs]

    def work(i):
        for _ in range(5):
            y = numba_ln.layer_norm(inputs[i])  # parallel kernel: 131072 elements
            small = numba_ln.layer_norm(inputs[i][:1])  # serial fast path
        return y, small

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(work, range(8)))
    for (y, small), e in zip(results, expected):
        assert_close(y, e)
        assert_close(small, e[:1])


def _child(queue):
    x = np.arange(4096 * 64, dtype=np.float32).reshape(64, 4096) % 7
    queue.put(float(numba_ln.layer_norm(x).sum()))


@pytest.mark.parametrize("shape,axis", [
    ((300, 1000), -1),        # rows in tasks
    ((3, 70000), -1),         # split rows
    ((9, 70000), -1),         # rows longer than PIECE in parallel, one a task
    ((1, 300000), -1),        # one row split into 5 pieces, the last not whole chunks
    ((4, 64, 32, 32), 1),     # channels-first: channels_serial on 1 thread, parallel on 2
])
def test_results_do_not_depend_on_the_thread_count(rng, shape, axis):
    """The kernel and its tasks depend on the shape alone: 1 and 2 threads give the same
    bits, for every function and its statistics.  Every other row (batch, for channels)
    has a poor head shift, so that the second summing pass is covered too.  (Channels
    layouts: layer_norm and moments only.)"""
    x = (1e3 + rng.standard_normal(shape)).astype(np.float32)
    head = [slice(None)] * x.ndim
    head[axis] = slice(0, 16)
    x[tuple(head)][::2] += 100  # the first 16 elements of rows 0, 2, ...: outliers
    r = rng.standard_normal(shape).astype(np.float32)
    w, b = rng.standard_normal((2, shape[axis])).astype(np.float32)

    def calls():
        if axis != -1:  # channels: the other functions share its tiles (and each variant
            # costs ~3 s of compiling in a cold CI run)
            return (numba_ln.layer_norm(x, w, b, axis=axis, return_stats=True),
                    numba_ln.moments(x, axis=axis))
        return (numba_ln.layer_norm(x, w, b, axis=axis, return_stats=True),
                numba_ln.rms_norm(x, w, axis=axis, return_stats=True),
                numba_ln.add_layer_norm(x, r, w, b, axis=axis, return_stats=True),
                numba_ln.moments(x, axis=axis))

    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = calls()
        numba.set_num_threads(2)
        two = calls()
    finally:
        numba.set_num_threads(before)
    flat = lambda res: np.concatenate([np.ravel(v).astype(np.float64) for t in res for v in t])
    assert flat(one).tobytes() == flat(two).tobytes()


def test_fork_after_parallel_call():
    numba_ln.layer_norm(np.ones((64, 4096), np.float32))  # the parent uses the thread pool
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue,))
    proc.start()
    proc.join(120)
    assert proc.exitcode == 0
    assert abs(queue.get(timeout=5)) < 1.0  # rows sum to ~0


def _run_python(code, env=None, **kw):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=300, env=env, **kw)


def test_cached_kernels_load_in_a_new_process():
    """Second process: every kernel it needs comes from the on-disk cache, none compiles."""
    code = """
        import numpy as np, numba_ln
        from numba.core.registry import CPUDispatcher
        from numba_ln.cpu import channels, rows, small
        numba_ln.layer_norm(np.ones((2, 8)))
        numba_ln.layer_norm(np.ones((300, 300), np.float32), return_stats=True)
        numba_ln.layer_norm(np.ones((30, 30, 30)), axis=1)
        kernels = [k for m in (rows, channels, small) for k in vars(m).values()
                   if isinstance(k, CPUDispatcher)]
        print(sum(sum(k._cache_hits.values()) for k in kernels),
              sum(sum(k._cache_misses.values()) for k in kernels))
    """
    _run_python(code)  # make sure the cache is populated
    result = _run_python(code)
    assert result.returncode == 0, result.stderr
    hits, misses = map(int, result.stdout.split())
    assert hits >= 3 and misses == 0


# A small kernel's call (a second to compile, where a row kernel takes ten cold), printing
# its cache hits and misses
_WIDEN_ONE_KERNEL = """
    import numpy as np
    from numba_ln.cpu import convert
    k = convert.widen_serial
    out = np.zeros(3, np.float32)
    k(np.array([1.0, -2.0, 0.5], np.float16).view(np.int16), out)
    assert list(out) == [1.0, -2.0, 0.5]
    print(sum(k._cache_hits.values()), sum(k._cache_misses.values()))
"""


def test_cached_kernels_follow_the_sources_contents(tmp_path):
    """Kernels inline their sibling modules' code (rows.py inlines _moments.py): editing
    only a sibling must not leave the old machine code in use (Numba itself checks only
    the defining file).  And the stamp is the sources' contents, not their mtimes: a cache
    copied elsewhere (an image, another machine: every mtime new) is still used.  Every
    kernel carries the same stamp, so a small one shows it (widen_serial, in convert.py:
    a second to compile, where a row kernel takes ten cold)."""
    site = tmp_path / "site"
    shutil.copytree(PACKAGE, site / "numba_ln", ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("NUMBA_CACHE_DIR", None)
    code = _WIDEN_ONE_KERNEL

    def hits_and_misses():
        result = _run_python(code, env=env, cwd=str(tmp_path))
        assert result.returncode == 0, result.stderr
        return tuple(map(int, result.stdout.split()))

    hits_and_misses()  # compile and cache
    assert hits_and_misses() == (1, 0)
    copy = tmp_path / "copy"  # the package and its cache, every file with a new mtime
    shutil.copytree(site, copy, copy_function=shutil.copyfile)
    env["PYTHONPATH"] = str(copy)
    assert hits_and_misses() == (1, 0)
    helper = copy / "numba_ln" / "cpu" / "_moments.py"
    helper.write_text(helper.read_text() + "\n# edited\n")
    assert hits_and_misses() == (0, 1)


def test_damaged_cache_files_are_compiled_again(tmp_path):
    """A cache file cut short (a full disk, a copy killed half way) made every call that
    needs it raise Numba's reading error (EOFError, UnpicklingError), in every new
    process: now it is a miss, said once, and its entry is written anew.  A damaged data
    file (.nbc) fails the load; a damaged index (.nbi) the load and the save, which reads
    the index first."""
    code = _WIDEN_ONE_KERNEL
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("NUMBA_LN_QUIET", None)

    def run():
        result = _run_python(code, env=env, cwd=str(tmp_path))
        assert result.returncode == 0, result.stderr
        return tuple(map(int, result.stdout.split())), result.stderr

    assert run()[0] == (0, 1)  # compiled and cached
    for pattern in ("convert.widen_serial-*.nbc", "convert.widen_serial-*.nbi"):
        [damaged] = (tmp_path / "cache").rglob(pattern)
        damaged.write_bytes(damaged.read_bytes()[:20])
        counts, said = run()
        assert counts == (0, 1), said
        assert "the cached code of numba_ln.cpu.convert.widen_serial could not be read" in said
        assert run()[0] == (1, 0)  # (written anew)


def test_the_first_compile_in_a_process_says_so_once(tmp_path):
    # (two small kernels of two dtypes: any kernel's first compile speaks, once)
    code = """
        import numpy as np
        from numba_ln.cpu import convert
        convert.widen_serial(np.ones(4, np.int16), np.empty(4, np.float32))
        convert.widen_serial(np.ones(4, np.uint16), np.empty(4, np.float32))
    """
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("NUMBA_LN_QUIET", None)
    result = _run_python(code, env=env, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    lines = [s for s in result.stderr.splitlines() if "numba_ln: compiling" in s]
    assert len(lines) == 1 and "float32" in lines[0] and "cached afterwards" in lines[0]
    result = _run_python(code, env=env, cwd=str(tmp_path))  # all cached: nothing to say
    assert result.returncode == 0 and "numba_ln: compiling" not in result.stderr


def test_numba_ln_quiet_silences_the_compile_notice(monkeypatch, caplog):
    from numba.core import event

    from numba_ln.cpu import _jit, rows

    compiling = event.Event("numba:compile", event.EventStatus.START,
                            {"dispatcher": rows.rows_block, "args": ()})
    monkeypatch.setenv("NUMBA_LN_QUIET", "1")
    _jit._FirstCompileNotice().on_start(compiling)
    monkeypatch.setenv("NUMBA_LN_QUIET", "0")
    notice = _jit._FirstCompileNotice()
    notice.on_start(compiling)
    notice.on_start(compiling)
    said = [r.getMessage() for r in caplog.records if r.name == "numba_ln"]
    assert len(said) == 1 and "rows_block for scalars" in said[0]


def test_the_compile_notice_ignores_functions_without_a_module(caplog):
    # A user's @njit function made by exec() has __module__ None; its compile event, the
    # first of a process, once raised inside Numba's compile and failed the user's call.
    from numba import njit
    from numba.core import event

    from numba_ln.cpu import _jit

    namespace = {"njit": njit}
    exec("@njit\ndef f(x):\n    return x + 1\n", namespace)
    assert namespace["f"].py_func.__module__ is None
    notice = _jit._FirstCompileNotice()
    notice.on_start(event.Event("numba:compile", event.EventStatus.START,
                                {"dispatcher": namespace["f"], "args": ()}))
    assert not notice.said and not [r for r in caplog.records if r.name == "numba_ln"]


def _run_with_read_only(folder, code, env):
    """Run code with `folder` truly read-only: chmod for a normal user; for root (who
    writes anywhere) a read-only bind mount in a private mount namespace."""
    for p in [folder, *folder.rglob("*")]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    if os.getuid() != 0:
        return _run_python(code, env=env, cwd=env["HOME"])
    if shutil.which("unshare") is None:
        pytest.skip("running as root without unshare: cannot make a folder read-only")
    script = f"mount --bind {folder} {folder} && mount -o remount,ro,bind {folder} && " \
             f"exec {sys.executable} -c \"$0\""
    result = subprocess.run(["unshare", "-m", "sh", "-c", script, textwrap.dedent(code)],
                            capture_output=True, text=True, timeout=300, env=env,
                            cwd=env["HOME"])
    if "mount" in result.stderr and result.returncode != 0 and "numba_ln" not in result.stderr:
        pytest.skip(f"cannot make a read-only mount here: {result.stderr.strip()}")
    return result


READ_ONLY_CODE = """
    import warnings
    warnings.simplefilter("always")
    import numpy as np, numba_ln
    assert numba_ln.__file__.startswith(%r)
    x = np.arange(12.0).reshape(3, 4)
    print(numba_ln.layer_norm(x)[0, 0])
"""


@pytest.mark.parametrize("cache_home_writable", [True, False])
def test_works_from_a_read_only_package_folder(tmp_path, cache_home_writable):
    """A copy of the package in a read-only folder imports and runs: kernels cache in the
    user's cache folder, or (none writable either) compile without a cache and warn."""
    site = tmp_path / "site"
    shutil.copytree(PACKAGE, site / "numba_ln", ignore=shutil.ignore_patterns("__pycache__"))
    cache_home = tmp_path / "cache" if cache_home_writable else site / "cache"
    cache_home.mkdir()
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(site),
           "HOME": str(tmp_path), "XDG_CACHE_HOME": str(cache_home)}
    result = _run_with_read_only(site, READ_ONLY_CODE % str(site), env)
    assert result.returncode == 0, result.stderr
    assert abs(float(result.stdout.strip().splitlines()[-1]) + 1.3416407) < 1e-5
    assert not list(site.rglob("*.nbi"))  # nothing was written into the package
    if cache_home_writable:
        assert list(cache_home.rglob("*.nbi"))  # cached in the user's folder instead
    else:
        assert "no writable cache folder" in result.stderr


RACE_CODE = """
    import sys, numpy as np, numba_ln
    from numba_ln import reference as ref
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 768)) + 100
    w = rng.standard_normal(768)
    calls = [
        lambda: (numba_ln.layer_norm(x.astype(np.float32), w), ref.layer_norm(x, w)[0], 1e-5),
        lambda: (numba_ln.rms_norm(x, w), ref.rms_norm(x, w)[0], 1e-12),
        lambda: (numba_ln.moments(x.astype(np.float32))[1], x.var(-1), 1e-4),
        lambda: (numba_ln.layer_norm(x[:2], w), ref.layer_norm(x[:2], w)[0], 1e-12),
    ]
    start = int(sys.argv[1])  # the order of the calls
    for i in range(len(calls)):
        got, want, tol = calls[(start + i) % len(calls)]()
        err = np.max(np.abs(got - want)) / max(1.0, np.max(np.abs(want)))
        assert err < tol, (start, i, err)
    print("ok")
    from numba.core.registry import CPUDispatcher
    from numba_ln.cpu import backward, channels, rows, small
    kernels = {k for m in (backward, channels, rows, small) for k in vars(m).values()
               if isinstance(k, CPUDispatcher)}  # (a module's own and those it imports)
    name = lambda k, sig: f"{k.py_func.__module__}.{k.py_func.__qualname__}{list(sig)}"
    print(" ".join(name(k, sig).replace(" ", "")
                   for k in kernels for sig, n in k._cache_misses.items() if n))
"""


def test_cold_processes_started_at_once_share_one_cache(tmp_path):
    """Four processes on one empty cache at once, two making the same calls in the same
    order and two in others: none crashes, each one's results are right, no kernel is
    compiled twice (a process waits for one another is compiling, and loads it), and a
    fifth process loads everything they cached (a kernel saved under another's index
    entry would give wrong results or crash it).  The locks of cpu/_jit.py."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache"), "NUMBA_LN_QUIET": "1"}
    code = textwrap.dedent(RACE_CODE)
    racers = [subprocess.Popen([sys.executable, "-c", code, str(start)], env=env,
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
              for start in (0, 0, 1, 2)]
    compiled = []
    for p in racers:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0 and out.splitlines()[0] == "ok", err[-3000:]
        compiled += out.splitlines()[1].split()
    assert compiled and len(compiled) == len(set(compiled)), sorted(compiled)
    loader = _run_python(RACE_CODE.replace("int(sys.argv[1])", "0") + """
    from numba_ln.cpu import rows, small
    print(sum(sum(k._cache_misses.values()) for k in (rows.rows_block, rows.rows_parallel,
                                                       small.small_layer_norm)))
    """, env=env, cwd=str(tmp_path))
    assert loader.returncode == 0 and loader.stdout.split()[-2:] == ["ok", "0"], loader.stderr
