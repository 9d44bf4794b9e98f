"""The kernel cache as a file system gives it: a save the disk refuses, and an index entry
that names another signature's code, each in a fresh process with a cache folder of its
own, on the smallest kernel there is (convert.widen_serial: a second to compile, where a
row kernel takes ten cold); and the files the cache's stamp covers.  (Damaged and
unreadable files: test_concurrency.py.)"""
import os
import subprocess
import sys
import textwrap

import pytest

import numba_ln

# 16-bit bits widened to float32: int16 bits are float16 (1.0 is 0x3c00), uint16 bits
# bfloat16 (1.0 is 0x3f80).  Prints the cache hits and misses.
_WIDEN = """
    import sys
    import numpy as np
    from numba_ln.cpu import convert
    k = convert.widen_serial
    for kind in sys.argv[1].split(","):
        out = np.zeros(2, np.float32)
        if kind == "float16":
            k(np.array([1.0, -2.5], np.float16).view(np.int16), out)
        else:
            k(np.array([0x3F80, 0xC020], np.uint16), out)
        assert list(out) == [1.0, -2.5], (kind, out)
    print(sum(k._cache_hits.values()), sum(k._cache_misses.values()))
"""


def _run(tmp_path, kinds, limit_bytes=None):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("NUMBA_LN_QUIET", None)

    def limited():  # (the file-size limit a full disk or a quota puts on a write)
        import resource
        import signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # (EFBIG instead of a kill)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    result = subprocess.run([sys.executable, "-c", textwrap.dedent(_WIDEN), kinds],
                            capture_output=True, text=True, timeout=300, env=env,
                            cwd=str(tmp_path), preexec_fn=limited if limit_bytes else None)
    assert result.returncode == 0, result.stderr
    return tuple(map(int, result.stdout.split())), result.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_a_save_the_disk_refuses_leaves_the_call_working(tmp_path):
    """A full disk (here a file-size limit: EFBIG, as ENOSPC) made every first call raise
    Numba's OSError from the cache save, in every process, though the kernel had
    compiled: now the call returns, the save is skipped and said once, and a later
    process with room compiles and saves."""
    counts, said = _run(tmp_path, "float16,bfloat16", limit_bytes=64)
    assert counts == (0, 2)
    assert said.count("could not be saved in the cache folder") == 1, said
    assert "numba_ln.cpu.convert.widen_serial" in said
    assert _run(tmp_path, "float16")[0] == (0, 1)  # (nothing was cached)
    assert _run(tmp_path, "float16")[0] == (1, 0)


@pytest.mark.skipif(sys.platform == "win32", reason="the cache's file locks are POSIX")
def test_an_entry_holding_another_signatures_code_is_a_miss(tmp_path):
    """An index naming another kernel's data file (numba/numba#4807's race where saves go
    unlocked, a cache copied over an older one and cut short) ran that code: bfloat16
    bits widened as float16, silently wrong, in every process.  Now such an entry is a
    miss, said once, and compiled and saved anew."""
    assert _run(tmp_path, "float16,bfloat16")[0] == (0, 2)
    [one] = (tmp_path / "cache").rglob("convert.widen_serial-*.1.nbc")
    two = one.with_name(one.name.replace(".1.nbc", ".2.nbc"))
    one_bytes = one.read_bytes()
    one.write_bytes(two.read_bytes())
    two.write_bytes(one_bytes)
    counts, said = _run(tmp_path, "bfloat16")
    assert counts == (0, 1), said
    assert "the cached code of numba_ln.cpu.convert.widen_serial could not be read" in said
    assert "held the code of" in said
    assert f"from the cache folder {tmp_path / 'cache'}" in said  # (where to look)
    assert _run(tmp_path, "float16,bfloat16")[0] == (1, 1)  # (its partner's turn)
    assert _run(tmp_path, "float16,bfloat16")[0] == (2, 0)


def test_every_module_compiled_into_the_kernels_is_in_their_cache_stamp():
    """The kernels' cache stamp is the contents of the files their code comes from
    (cpu/_jit.py): _threading.even_tasks, compiled into the small backward kernels, was
    left out, so an edit to it kept the old task split in cached kernels while Python
    calls took the new one.  Every package module outside cpu/ that defines compiled
    functions must be stamped (_njit's overloads compile into users' functions, whose
    caches Numba stamps with the user's file: README, "Compilation and caching")."""
    import re
    from pathlib import Path

    from numba_ln.cpu import _jit

    package = Path(numba_ln.__file__).parent
    compiled = re.compile(r"^@(register_jitable|overload|intrinsic|kernel)\b", re.M)
    defining = {path for path in package.glob("*.py") if compiled.search(path.read_text())}
    assert package / "_threading.py" in defining
    assert defining <= set(_jit._DEPENDENCIES)


def test_a_cache_folder_check_the_file_system_refuses_leaves_the_call_working(tmp_path):
    """Numba checks the cache folder (a temporary file made in it) before each save; a disk
    out of inodes, a quota or a read-only remount fails that check, which raised out of
    the call as the refused save itself did (here the check is made to fail so)."""
    code = """
        import errno
        import numpy as np
        from numba_ln.cpu import convert

        def refused():
            raise OSError(errno.EDQUOT, "Disk quota exceeded")

        convert.widen_serial._cache._impl.locator.ensure_cache_path = refused
        out = np.zeros(2, np.float32)
        convert.widen_serial(np.array([1.0, -2.5], np.float16).view(np.int16), out)
        print(*out.tolist())
    """
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("NUMBA_LN_QUIET", None)
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=300, env=env, cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["1.0", "-2.5"]
    assert "could not be saved in the cache folder" in done.stderr
    assert "Disk quota exceeded" in done.stderr


_TIMED_OUT_WHILE_LOADING = """
    import signal, sys
    import numpy as np
    from numba_ln.cpu import convert
    import functools
    class Timeout(RuntimeError):  # (as interruptingcow's: the class of a reader's error)
        pass
    def on_alarm(signum, frame, why="the user's time limit"):
        raise Timeout(why)
    class Alarm:
        def __call__(self, signum, frame):
            on_alarm(signum, frame)
    handler = {"function": on_alarm, "partial": functools.partial(on_alarm, why="partial"),
               "instance": Alarm()}[sys.argv[1]]
    signal.signal(signal.SIGALRM, handler)
    def timer_expires_in_the_load(frame, event, arg):
        if event == "call" and frame.f_code.co_name == "_load_overload":
            sys.setprofile(None)
            signal.raise_signal(signal.SIGALRM)
    sys.setprofile(timer_expires_in_the_load)
    try:
        convert.widen_serial(np.zeros(2, np.int16), np.zeros(2, np.float32))
        print("returned")
    except Timeout:
        print("timed out")
"""


@pytest.mark.skipif(not hasattr(__import__("signal"), "SIGALRM"), reason="SIGALRM is POSIX")
@pytest.mark.parametrize("handler", ["function", "partial", "instance"])
def test_a_signal_handlers_exception_while_an_entry_loads_is_not_damage(tmp_path, handler):
    """A SIGALRM timeout (alarm + raise, pytest-timeout's signal method) that fired while a
    cached kernel loaded was taken for a damaged entry: logged, compiled again, and the
    call returned, so the user's timeout never fired (a handler of any callable form)."""
    assert _run(tmp_path, "float16")[0] == (0, 1)  # (cached)
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("NUMBA_LN_QUIET", None)
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(_TIMED_OUT_WHILE_LOADING),
                           handler], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["timed", "out"]
    assert "could not be read" not in done.stderr


def test_damage_that_makes_pickle_raise_anything_is_a_miss(tmp_path):
    """One flipped bit in an index's frame length makes pickle raise OverflowError (a
    frame past sys.maxsize): a miss, logged, as any damage is, never the user's error
    (the class of the exception does not tell damage from a signal handler's timeout)."""
    import glob

    assert _run(tmp_path, "float16")[0] == (0, 1)
    [index] = glob.glob(str(tmp_path / "cache" / "*" / "convert.widen_serial-*.nbi"))
    damaged = bytearray(open(index, "rb").read())
    damaged[10] ^= 1 << 7  # (the high byte of the first pickle frame's length)
    open(index, "wb").write(damaged)
    counts, said = _run(tmp_path, "float16")
    assert counts == (0, 1)
    assert "could not be read (OverflowError" in said


def test_an_index_the_process_cannot_read_now_is_not_removed(tmp_path):
    """A save that cannot read the kernel's index (too many open files, another user's
    file, an I/O error) removed it as damaged, losing every cached signature of the
    kernel for every process sharing the cache: the save is refused instead."""
    import errno

    from numba_ln.cpu._damaged_cache import repairing_save

    index = tmp_path / "kernel.nbi"
    index.write_bytes(b"a valid index, as far as this test goes")

    class CacheFile:
        _index_path, _cache_path = str(index), str(tmp_path)

        def _load_index(self):
            raise OSError(errno.EMFILE, "Too many open files")

    def save(key, data):
        CacheFile()._load_index()

    with pytest.raises(OSError, match="Too many open files"):
        repairing_save(save, CacheFile(), "numba_ln.cpu.rows.rows_block")("key", "data")
    assert index.read_bytes() == b"a valid index, as far as this test goes"
