"""Compile-only checks of the GPU kernels: PTX for compute capability 9.0 (H100/H200), no
GPU needed, only NVVM (numba-cuda's CUDA 12 toolkit wheels).  They assert what the design
(numba_ln/cuda/_kernels.py) promises:

- the row stays in registers: no ``__local_depot`` (local memory) in PTX, and where ptxas
  is installed, no spill stores/loads and registers within the block's budget;
- float16/float32 kernels compute in float32: no float64 instruction at all;
- IEEE division and square root (``div.rn``, ``sqrt.rn``): no ``.approx`` forms;
- 16-byte vector loads and stores of the row where the front picks them; the only scalar
  ``ld.global`` is the row's shift element;
- warp-per-row kernels reduce with ``shfl.sync.bfly`` and no block barrier; the
  simulator's shared-memory path compiles too.

The kernels are those the shipped settings (numba_ln/cuda/_config.py) choose for the
benchmark shapes.
"""
import functools
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    pytest.skip("compile-only tests need the real numba.cuda, not the simulator",
                allow_module_level=True)
try:
    from numba_ln._variants import STATS_MEAN_RSTD, STATS_MEAN_VAR, STATS_RSTD
    from numba_ln.cuda import _front
    from numba_ln.cuda._compat import NUMBA_CUDA, cuda, types
    from numba_ln.cuda._compile import KernelConfig
    from numba_ln.cuda._copy import make_copy_kernel
    from numba_ln.cuda._kernels import make_row_kernel
except Exception as exc:  # pragma: no cover - depends on the environment
    pytest.skip(f"numba.cuda cannot be imported: {exc!r}", allow_module_level=True)

CC = (9, 0)


def _nvvm_problem():
    def probe(a):  # Numba's built-in numba.cuda compiles shuffles only with a GPU present
        a[0] = cuda.shfl_xor_sync(0xFFFFFFFF, a[0], 1)

    try:
        cuda.compile_ptx(probe, (types.float32[::1],), cc=CC)
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


_PROBLEM = _nvvm_problem()
pytestmark = pytest.mark.skipif(
    _PROBLEM is not None,
    reason=f"cannot compile PTX without a GPU here (compile-only tests need numba-cuda with "
           f"its CUDA 12 wheels: pip install 'numba-cuda[cu12]'): {_PROBLEM}")

MODES = {
    "layer_norm": dict(centered=True, has_r=False, has_w=True, has_b=True, want_y=True,
                       stats=STATS_MEAN_RSTD),
    "rms_norm": dict(centered=False, has_r=False, has_w=True, has_b=False, want_y=True,
                     stats=STATS_RSTD),
    "add_layer_norm": dict(centered=True, has_r=True, has_w=True, has_b=True, want_y=True,
                           stats=STATS_MEAN_RSTD),
    "add_rms_norm": dict(centered=False, has_r=True, has_w=True, has_b=False, want_y=True,
                         stats=STATS_RSTD),
    "moments": dict(centered=True, has_r=False, has_w=False, has_b=False, want_y=False,
                    stats=STATS_MEAN_VAR),
}
# (rows, cols) that reach each path with the shipped settings
PATHS = {"narrow": (4096, 1024), "wide": (4096, 16384), "stream": (64, 65536)}
VEC = {np.dtype(np.float16): 8, np.dtype(np.float32): 4, np.dtype(np.float64): 2}


def _kernel_config(mode, path, dtype=np.float32, vec=None, shuffle=True):
    dtype = np.dtype(dtype)
    from numba_ln._dtypes import work_dtype
    work = work_dtype(dtype)
    vec = VEC[dtype] if vec is None else vec
    rows, cols = PATHS[path]
    held, threads, groups, chunks, _ = _front._shape_kernel(rows, cols, vec, work)
    return KernelConfig(held=held, threads=threads, groups=groups, chunks=chunks, vec=vec,
                        acc=work, out=dtype, shuffle=shuffle, **MODES[mode])


def _signature(v):
    """Kernels take addresses and byte row strides (numba_ln/cuda/_vector.py)."""
    acc = types.float32 if v.acc == np.float32 else types.float64
    return (types.int64,) * 14 + (acc,)


def _launch_options(block):
    return {"launch_bounds": block} if NUMBA_CUDA else {}


@functools.lru_cache(maxsize=None)
def _ptx(mode, path, dtype=np.float32, vec=None, shuffle=True):
    v = _kernel_config(mode, path, dtype, vec, shuffle)
    ptx, _ = cuda.compile_ptx(make_row_kernel(v), _signature(v), cc=CC,
                              **_launch_options(v.block))
    return v, ptx


def _ptxas():
    found = shutil.which("ptxas")
    if found:
        return found
    try:
        import nvidia.cuda_nvcc as nvcc
    except ImportError:
        return None
    for root in getattr(nvcc, "__path__", []):
        candidate = os.path.join(root, "bin", "ptxas")
        if os.path.exists(candidate):
            return candidate
    return None


def _float64_instructions(ptx):
    return re.findall(r"^\s*[a-z.]*\.f64\b.*$", ptx, flags=re.M)


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("mode", list(MODES))
def test_float32_kernel_ptx(mode, path):
    v, ptx = _ptx(mode, path)
    assert v.held == (path != "stream")
    assert "__local_depot" not in ptx, "the row spilled to local memory"
    assert not _float64_instructions(ptx), _float64_instructions(ptx)[:3]
    assert ".approx" not in ptx and "rsqrt" not in ptx
    assert "div.rn.f32" in ptx
    if mode != "moments":  # moments needs no rstd
        assert "sqrt.rn.f32" in ptx
    assert "ld.global.v4.f32" in ptx
    # scalar loads: only the shift k = x[row, 0] (and r[row, 0]) of LayerNorm kernels
    shifts = (1 + v.has_r) if v.centered else 0
    assert len(re.findall(r"ld\.global\.f32", ptx)) <= shifts, "scalar loads of row data"
    if v.want_y:
        assert "st.global.v4.f32" in ptx
    assert "shfl.sync.bfly.b32" in ptx
    if path == "narrow":
        assert "bar.sync" not in ptx and "barrier" not in ptx, "warp-per-row needs no barrier"
    # the fused LayerNorm: every thread of a row reads the shift before s (which may lie
    # over x or r) is written -- a warp barrier for a row in one warp, else a block one
    if v.centered and v.has_r:
        assert ("bar.warp.sync" if path == "narrow" else "bar.sync") in ptx


@pytest.mark.parametrize("path", ["narrow", "wide"])
def test_float16_kernel_ptx(path):
    v, ptx = _ptx("add_layer_norm", path, np.float16)
    assert "__local_depot" not in ptx
    assert not _float64_instructions(ptx)
    assert re.search(r"ld\.global\.v4\.(u32|b32)", ptx), "16-byte loads of 8 halves"
    assert re.search(r"st\.global\.v4\.(u32|b32)", ptx)
    assert "cvt.f32.f16" in ptx and "cvt.rn.f16.f32" in ptx


def test_float64_kernel_ptx():
    v, ptx = _ptx("layer_norm", "narrow", np.float64)
    assert "__local_depot" not in ptx
    assert "ld.global.v2.f64" in ptx and "st.global.v2.f64" in ptx
    assert "sqrt.rn.f64" in ptx


@pytest.mark.parametrize("path", list(PATHS))
def test_scalar_io_kernels(path):
    """Unaligned or odd-width rows take one element per load."""
    v, ptx = _ptx("add_layer_norm", path, np.float32, vec=1)
    assert "__local_depot" not in ptx
    assert not _float64_instructions(ptx)
    assert "ld.global.f32" in ptx and "ld.global.v4" not in ptx


@pytest.mark.parametrize("dtype", [np.bool_, np.uint8, np.int32, np.int64])
def test_integer_and_bool_inputs_compile(dtype):
    """Integers and bools are read one element at a time and normalized in float64."""
    v = KernelConfig(held=True, threads=32, groups=4, chunks=8, vec=1, acc=np.float64,
                     out=np.float64, x=dtype, r=np.float32, shuffle=True,
                     **MODES["add_layer_norm"])
    ptx, _ = cuda.compile_ptx(make_row_kernel(v), _signature(v), cc=CC,
                              **_launch_options(v.block))
    assert "__local_depot" not in ptx


@pytest.mark.parametrize("path", list(PATHS))
def test_shared_memory_reduction_compiles(path):
    """The simulator's path (no shuffles), also used on a GPU when USE_SHUFFLE is False."""
    v, ptx = _ptx("layer_norm", path, np.float32, shuffle=False)
    assert "shfl" not in ptx and "bar.sync" in ptx
    assert "__local_depot" not in ptx


@pytest.mark.parametrize("path", list(PATHS))
def test_launch_settings_as_numpy_integers_compile(monkeypatch, path):
    """Launch settings of NumPy integers passed the power-of-two check, then sized the
    shared and local arrays as np.int64, which cuda.shared.array does not type (the
    simulator never types kernels)."""
    from numba_ln.cuda import _config

    for name in ("NARROW_THREADS", "MAX_ROW_THREADS", "STREAM_THREADS", "ROWS_PER_BLOCK"):
        monkeypatch.setattr(_config, name, np.int64(getattr(_config, name)))
    v = _kernel_config("layer_norm", path)
    assert all(type(n) is int for n in (v.threads, v.groups, v.chunks))
    ptx, _ = cuda.compile_ptx(make_row_kernel(v), _signature(v), cc=CC,
                              **_launch_options(v.block))
    assert "__local_depot" not in ptx


@pytest.mark.parametrize("ndim", [1, 3])
@pytest.mark.parametrize("scatter", [False, True])
def test_copy_kernels(ndim, scatter):
    idx = types.UniTuple(types.int64, ndim)
    sig = (types.Array(types.float32, 1, "A"), types.Array(types.float32, 1, "C"), idx, idx,
           types.int64)
    ptx, _ = cuda.compile_ptx(make_copy_kernel(ndim, scatter), sig, cc=CC)
    assert "__local_depot" not in ptx


def test_ptxas_no_spills_and_registers_fit_the_block(tmp_path):
    ptxas = _ptxas()
    if ptxas is None:
        pytest.skip("ptxas not found (nvidia-cuda-nvcc-cu12 ships it)")
    for mode, path, dtype in [("add_layer_norm", "narrow", np.float32),
                              ("add_layer_norm", "wide", np.float32),
                              ("layer_norm", "wide", np.float16),
                              ("layer_norm", "stream", np.float32),
                              ("layer_norm", "narrow", np.float64)]:
        v, ptx = _ptx(mode, path, dtype)
        src = tmp_path / f"{mode}_{path}.ptx"
        src.write_text(ptx)
        done = subprocess.run([ptxas, f"-arch=sm_{CC[0]}{CC[1]}", "-v", str(src), "-o",
                               str(tmp_path / "k.cubin")], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        info = done.stderr + done.stdout
        assert re.search(r"\b0 bytes spill stores, 0 bytes spill loads", info), info
        registers = int(re.search(r"Used (\d+) registers", info).group(1))
        assert registers * v.block <= 65536, (mode, path, registers, v.block)
