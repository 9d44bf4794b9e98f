"""Full-width vectors on Intel's AVX-512 cores.

LLVM compiles for the host CPU, and its tuning for Intel's AVX-512 cores (Skylake-SP
through Sapphire Rapids, and the Ice Lake and Rocket Lake clients) carries
``prefer-256-bit``: its loop vectorizer then uses 256-bit vectors, 8 float32 lanes,
although the CPU has 512-bit ones.  The tuning protects code that mixes a few vector
instructions into scalar work, where the 512-bit units' lower clock would cost more than
they give.  Our kernels are vector loops from end to end, written (and their error bounds
worked out: _config.CHUNK) for 16 float32 lanes, which LLVM gives AMD's Zen 4 and 5 by
default.

Each function of a kernel's library therefore asks for them: the LLVM function attribute
``"prefer-vector-width"`` set to _config.PREFERRED_VECTOR_BITS (NUMBA_LN_VECTOR_BITS: 512,
256, or llvm for none).  A preference only: LLVM takes the widest legal vector up to it,
so a CPU without AVX-512 compiles as before.  Numba compiles a user's own @njit code as
Numba does; the kernels it calls keep their preference.

Measured on a 2-core Sapphire Rapids-class Xeon (LLVM names it rocketlake), 2 threads,
``python -m numba_ln.bench`` (and ``--backward``, ``--half``, ``--latency``) with 256-bit
and then 512-bit kernels, back to back: faster where the kernels run out of instructions
before memory runs out of bandwidth -- 16-bit ``out=`` 1.06-1.20x (bfloat16 (4096, 4096)
0.54 -> 0.65 of its line), ``layer_norm_backward`` 1.06-1.19x at (4096, 1024) and up
(bfloat16 and float16 1.16-1.24x), (8, 4096) and channels-first 1.2x, (64, 1024) calls
1.1-1.3x; float32 at the L3 shapes 1.00-1.07x, and layer_norm and rms_norm at the 64 MB
ones within the run's noise.  Slower: a (1, 768) float32 call by 0.07-0.1 us (8-10%: the
kernel alone 520 -> 536-545 ns; its 16-bit calls unchanged), most of it the core's lower
clock after 512-bit arithmetic, which the Python code that follows a call pays (a ~5 us
pure-Python loop right after a (1, 768) call: 5.07-5.15 -> 5.45-5.51 us); add_layer_norm at
64 MB, which four streams of memory bound, 0.89-0.94x (rerun alone, 4 runs interleaved).
"""
from .. import _config

_ATTRIBUTE = f'"prefer-vector-width"="{_config.PREFERRED_VECTOR_BITS}"'


# Helpers compiled for size (LLVM's ``optsize``: loops neither vectorized nor unrolled), by
# the part of their mangled names that names them (optimize_for_size).
_FOR_SIZE = []


def optimize_for_size(qualified_name):
    """Compile the kernel "package.module.function" for size: for a helper whose loops run
    a few times a row, whose vectorized and unrolled copies only cost compile time in
    every kernel that links it (cpu/_stream.py)."""
    _FOR_SIZE.append("".join(f"{len(part)}{part}" for part in qualified_name.split(".")))


def prefer_vector_width(library):
    """Give every function a kernel's library compiles the vector width preference (the
    library is Numba's CPUCodeLibrary: its IR modules arrive through add_ir_module), and
    the helpers named by optimize_for_size ``optsize``."""
    add_ir_module = getattr(library, "add_ir_module", None)
    if add_ir_module is None:
        return

    def add_ir_module_with_preference(ir_module):
        for function in ir_module.functions:
            if function.is_declaration:
                continue
            # (string attributes: llvmlite's FunctionAttributes.add takes only the enum
            # attributes it lists, and prints the set's items as they are)
            if _config.PREFERRED_VECTOR_BITS:
                set.add(function.attributes, _ATTRIBUTE)
            if any(name in function.name for name in _FOR_SIZE):
                set.add(function.attributes, "optsize")
        add_ir_module(ir_module)

    library.add_ir_module = add_ir_module_with_preference
