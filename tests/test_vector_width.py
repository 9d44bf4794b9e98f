"""The kernels ask LLVM for full-width vectors (cpu/_vector_width.py): the preference is on
their functions, NUMBA_LN_VECTOR_BITS chooses it (and keeps kernels cached under another
setting out), a user's own @njit code is left as Numba compiles it, and on a CPU with
AVX-512 the float32 loops run in 512-bit registers by default and in 256-bit ones with 256.

Kernels are compiled in new processes with an empty cache: a kernel loaded from the cache
has no IR or assembly to inspect."""
import json
import os
import re
import subprocess
import sys
import textwrap

import llvmlite.binding as llvm
import numpy as np
from numba import njit

import numba_ln

_INSPECT = textwrap.dedent("""
    import json, re
    import numpy as np
    from numba_ln.cpu import _jit
    from numba_ln.cpu.small import small_moments
    x = np.linspace(-1, 1, 3 * 768, dtype=np.float32).reshape(3, 768)
    stats = np.empty((2, 3), np.float32)
    status = small_moments(x, stats)
    (sig,) = small_moments.signatures
    ir = small_moments.inspect_llvm(sig)
    groups = dict(re.findall(r"^attributes (#\\d+) = \\{(.*)\\}$", ir, flags=re.M))
    kernel = [line for line in ir.splitlines()
              if line.startswith("define") and "small_moments" in line]
    print(json.dumps({
        "status": int(status), "stats": stats.tolist(), "stamp": _jit._DEPENDENCIES_STAMP,
        "kernel_attributes": [line + " " + " ".join(groups.get(g, "")
                                                    for g in re.findall(r"#\\d+", line))
                              for line in kernel],
        "asm": small_moments.inspect_asm(sig),
    }))
""")


def _start(tmp_path, setting, **env_vars):
    """A new process that compiles small_moments under the setting (None: unset) with an
    empty cache and prints what it saw (_INSPECT), started, not waited for."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache"), **env_vars}
    env.pop("NUMBA_LN_VECTOR_BITS", None)
    if setting is not None:
        env["NUMBA_LN_VECTOR_BITS"] = setting
    return subprocess.Popen([sys.executable, "-c", _INSPECT], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _seen(processes):
    """{setting: what its process printed}, once all have finished (they run at once)."""
    outputs = {setting: p.communicate(timeout=300) for setting, p in processes.items()}
    for setting, (_, err) in outputs.items():
        assert processes[setting].returncode == 0, err[-3000:]
    return {setting: json.loads(out.splitlines()[-1]) for setting, (out, _) in outputs.items()}


def _host_has_avx512():
    llvm.initialize_native_target()
    return "+avx512f" in llvm.get_host_cpu_features().flatten().split(",")


def test_each_setting_compiles_as_chosen(tmp_path):
    """The default (512) and 256 put their preference on the kernel's functions, llvm none;
    each setting has its own cache stamp; the results are right under each; on a CPU with
    AVX-512 the default's loops run in zmm registers and 256's in ymm ones.  (One test, so
    that the three compilations run once, at once, on any number of xdist workers.)"""
    seen = _seen({setting: _start(tmp_path / str(setting), setting)
                  for setting in (None, "256", "llvm")})
    x = np.linspace(-1, 1, 3 * 768, dtype=np.float32).reshape(3, 768).astype(np.float64)
    for setting, bits in ((None, 512), ("256", 256), ("llvm", None)):
        assert seen[setting]["status"] == 0
        np.testing.assert_allclose(seen[setting]["stats"][0], x.mean(axis=1), atol=1e-6)
        np.testing.assert_allclose(seen[setting]["stats"][1], x.var(axis=1), rtol=1e-6)
        attributes = seen[setting]["kernel_attributes"]
        assert attributes, setting
        if bits is None:
            assert not any("prefer-vector-width" in line for line in attributes)
        else:
            assert all(f'"prefer-vector-width"="{bits}"' in line for line in attributes)
    assert len({seen[setting]["stamp"] for setting in seen}) == len(seen)
    if _host_has_avx512():
        assert "%zmm" in seen[None]["asm"]
        assert "%zmm" not in seen["256"]["asm"] and "%ymm" in seen["256"]["asm"]


def test_a_bad_setting_is_refused_by_name(tmp_path):
    process = _start(tmp_path, "1024")
    _, err = process.communicate(timeout=300)
    assert process.returncode != 0
    assert "ValueError: NUMBA_LN_VECTOR_BITS must be one of 512, 256, llvm, not '1024'" in err


def test_user_njit_code_is_left_alone():
    """A user's function that calls the kernels keeps Numba's choice itself."""
    @njit
    def user_step(x, g, b):
        return numba_ln.layer_norm(x, g, b) * 2.0

    x = np.linspace(-1, 1, 2 * 64, dtype=np.float32).reshape(2, 64)
    g, b = np.ones(64, np.float32), np.zeros(64, np.float32)
    np.testing.assert_allclose(user_step(x, g, b), 2.0 * numba_ln.layer_norm(x, g, b),
                               rtol=1e-6)
    ir = user_step.inspect_llvm(user_step.signatures[0])
    groups = dict(re.findall(r"^attributes (#\d+) = \{(.*)\}$", ir, flags=re.M))
    own = [line for line in ir.splitlines() if line.startswith("define") and "user_step" in line]
    assert own
    for line in own:
        assert "prefer-vector-width" not in line + " ".join(
            groups.get(g, "") for g in re.findall(r"#\d+", line))


def test_a_cpu_without_avx512_compiles_as_before(tmp_path):
    """Compiled for an AVX2 CPU (Haswell), the preference changes no instruction."""
    haswell = {"NUMBA_CPU_NAME": "haswell",
               "NUMBA_CPU_FEATURES": "+avx,+avx2,+fma,+f16c,+bmi,+bmi2,+popcnt,+sse4.2,+lzcnt"}
    seen = _seen({setting: _start(tmp_path / setting, setting, **haswell)
                  for setting in ("512", "llvm")})
    asm = {setting: seen[setting]["asm"] for setting in seen}
    assert "zmm" not in asm["512"] and "ymm" in asm["512"]
    # (the same instructions; symbol names carry Numba's per-process function ids)
    unnamed = {k: re.sub(r"[\w.$]*_ZN[\w.$]*", "SYMBOL", a) for k, a in asm.items()}
    assert unnamed["512"] == unnamed["llvm"]
