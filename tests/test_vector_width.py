"""The kernels ask LLVM for full-width vectors (cpu/_vector_width.py): the preference is on
their functions, a user's own @njit code is left as Numba compiles it, and on a CPU with
AVX-512 the float32 loops run in 512-bit registers.

The kernel is compiled in a new process with an empty cache: a kernel loaded from the
cache has no IR or assembly to inspect."""
import json
import os
import subprocess
import sys
import textwrap

import llvmlite.binding as llvm
import numpy as np
import pytest
from numba import njit

from numba_ln import _config

_INSPECT = textwrap.dedent("""
    import json, re
    import numpy as np
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
        "status": int(status), "stats": stats.tolist(),
        "kernel_attributes": [line + " " + " ".join(groups.get(g, "")
                                                    for g in re.findall(r"#\\d+", line))
                              for line in kernel],
        "registers": sorted(set(re.findall(r"%(zmm|ymm)\\d+",
                                           small_moments.inspect_asm(sig)))),
    }))
""")


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path_factory.mktemp("cache"))}
    done = subprocess.run([sys.executable, "-c", _INSPECT], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_kernel_functions_carry_the_width_preference(compiled):
    x = np.linspace(-1, 1, 3 * 768, dtype=np.float32).reshape(3, 768).astype(np.float64)
    assert compiled["status"] == 0
    np.testing.assert_allclose(compiled["stats"][0], x.mean(axis=1), atol=1e-6)
    np.testing.assert_allclose(compiled["stats"][1], x.var(axis=1), rtol=1e-6)
    preference = f'"prefer-vector-width"="{_config.PREFERRED_VECTOR_BITS}"'
    assert compiled["kernel_attributes"]
    assert all(preference in line for line in compiled["kernel_attributes"])


def test_user_njit_code_is_left_alone():
    @njit
    def user_sum(a):
        total = 0.0
        for v in a:
            total += v
        return total

    assert user_sum(np.ones(8)) == 8.0
    assert "prefer-vector-width" not in user_sum.inspect_llvm(user_sum.signatures[0])


def _host_has_avx512():
    llvm.initialize_native_target()
    return "+avx512f" in llvm.get_host_cpu_features().flatten().split(",")


@pytest.mark.skipif(not _host_has_avx512(), reason="the CPU has no AVX-512")
def test_float32_loops_use_512_bit_registers(compiled):
    assert "zmm" in compiled["registers"]
