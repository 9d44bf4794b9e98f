"""What is measured: the benchmarked functions, the table of cases, and their inputs.

Two tables drive everything else in :mod:`numba_ln.bench`:

``FUNCTIONS``  one :class:`Function` per benchmarked function: its eps, whether it centers
               (has a bias), the data arrays it reads and writes.  Bytes moved, the inputs
               made, the speed-line copies and the output check all follow from
               ``reads``/``writes``: a backward function would be a row such as
               ``Function("layer_norm_backward", 1e-5, True, reads=("x", "dy"),
               writes=("dx",))``, whose line (3 arrays) is 1.5x the forward's (2 arrays).
``CASES``      one :class:`Case` per input shape, naming the functions that run at it.  A
               case with another dtype is a row with ``dtype="bfloat16"`` (or
               ``"float16"``); names NumPy does not know are looked up in ``ml_dtypes``.
               A case for another array backend (dask, say) would add a field here and
               contender builders in :mod:`numba_ln.bench.contenders`.

>>> bytes_moved("layer_norm", (4096, 1024), "float32") // 2**20
32
>>> [c.name for c in cases_for("add_rms_norm", ["1x768", "8x4096", "4096x1024"])]
['1x768', '4096x1024']
"""
import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Function:
    """A benchmarked function.  ``reads``/``writes`` name its data arrays (each the shape of
    x), in the order its contenders take and return them."""

    name: str
    eps: float
    centered: bool  # subtracts the mean and adds a bias (LayerNorm), else RMS
    reads: tuple = ("x",)
    writes: tuple = ("y",)

    @property
    def residual(self):
        return "r" in self.reads

    def bytes_moved(self, shape, dtype):
        """Bytes one call must move: every data array read once, every output written once
        (weight and bias are negligible)."""
        n = math.prod(shape) * resolve_dtype(dtype).itemsize
        return (len(self.reads) + len(self.writes)) * n


FUNCTION = {f.name: f for f in (
    Function("layer_norm", 1e-5, centered=True),
    Function("rms_norm", 1e-6, centered=False),
    Function("add_layer_norm", 1e-5, centered=True, reads=("x", "r"), writes=("y", "s")),
    Function("add_rms_norm", 1e-6, centered=False, reads=("x", "r"), writes=("y", "s")),
)}
FUNCTIONS = tuple(FUNCTION)
EPS = {name: f.eps for name, f in FUNCTION.items()}

_ALL = FUNCTIONS
_LN = ("layer_norm",)


def resolve_dtype(name):
    """``np.dtype(name)``, or the ``ml_dtypes`` type of that name (bfloat16, ...)."""
    try:
        return np.dtype(name)
    except TypeError:
        import ml_dtypes  # only cases with such a dtype need it

        return np.dtype(getattr(ml_dtypes, name))


@dataclass(frozen=True)
class Case:
    """One input shape.  ``small`` is the reduced shape used when benchmarking is disabled
    (the normal test run) and by the CLI's ``--small``; it keeps the same kernel path."""

    name: str
    shape: tuple
    small: tuple
    dtype: str = "float32"
    axis: int = -1
    functions: tuple = _LN
    note: str = ""

    def shape_for(self, small=False):
        return self.small if small else self.shape

    @property
    def rows(self):
        return math.prod(self.shape) // self.shape[self.axis]

    @property
    def cols(self):
        return self.shape[self.axis]

    def describe(self):
        axis = "" if self.axis == -1 else f", axis={self.axis}"
        return f"({', '.join(map(str, self.shape))}) {self.dtype}{axis}"


CASES = (
    Case("1x768", (1, 768), (1, 768), functions=_ALL, note="one token"),
    Case("8x4096", (8, 4096), (8, 4096)),
    Case("256x1024", (256, 1024), (64, 1024), functions=_ALL,
         note="a batch of 256 tokens: past the small calls, within the L2 caches"),
    Case("4096x768", (4096, 768), (64, 768), functions=_ALL),
    Case("4096x1024", (4096, 1024), (64, 1024), functions=_ALL),
    Case("4096x4096", (4096, 4096), (16, 4096), functions=_ALL),
    Case("16384x1024", (16384, 1024), (64, 1024), functions=_ALL),
    Case("65536x64", (65536, 64), (1024, 64), note="many short rows"),
    Case("1x4194304", (1, 4194304), (1, 131072), note="one huge row (split across threads)"),
    Case("4096x1024-f64", (4096, 1024), (64, 1024), dtype="float64"),
    Case("32x256x56x56-axis1", (32, 256, 56, 56), (2, 256, 8, 8), axis=1,
         note="channels-first (NCHW, normalized over C)"),
)
CASE_BY_NAME = {c.name: c for c in CASES}


def cases_for(func, names=None):
    """The cases that ``func`` is benchmarked at (optionally restricted to ``names``)."""
    chosen = CASES if names is None else [CASE_BY_NAME[n] for n in names]
    return [c for c in chosen if func in c.functions]


def is_residual(func):
    return FUNCTION[func].residual


def is_centered(func):
    return FUNCTION[func].centered


def bytes_moved(func, shape, dtype):
    """Bytes a call of ``func`` must move at ``shape`` (see :meth:`Function.bytes_moved`)."""
    return FUNCTION[func].bytes_moved(shape, dtype)


# --------------------------------------------------------------------------- inputs


@dataclass
class Inputs:
    """One case's inputs: ``arrays`` holds the data arrays the function reads (by the names
    of :attr:`Function.reads`), ``weight``/``bias`` its parameters."""

    func: str
    case: Case
    arrays: dict
    weight: np.ndarray = None
    bias: np.ndarray = None
    eps: float = 1e-5
    small: bool = False
    nbytes: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def spec(self):
        return FUNCTION[self.func]

    @property
    def x(self):
        return self.arrays["x"]

    @property
    def r(self):
        return self.arrays.get("r")

    @property
    def reads(self):
        """The data arrays read, in the function's order."""
        return [self.arrays[name] for name in self.spec.reads]

    @property
    def param_shape(self):
        """Shape that broadcasts weight/bias against x (NumPy expression)."""
        return tuple(n if a == self.case.axis % self.x.ndim else 1
                     for a, n in enumerate(self.x.shape))


def _normal(rng, shape, dtype):
    """Standard normal values of ``dtype`` (drawn in float64 for float64, else float32)."""
    if dtype == np.float64:
        return rng.standard_normal(shape, dtype=np.float64)
    a = rng.standard_normal(shape, dtype=np.float32)
    return a if dtype == np.float32 else a.astype(dtype)


def make_inputs(func, case, small=False, seed=0):
    """Random inputs: x offset by 1 (so that centering matters), the other data arrays
    standard normal; random weight, and bias for the centered functions."""
    spec = FUNCTION[func]
    rng = np.random.default_rng(seed)
    shape = case.shape_for(small)
    dtype = resolve_dtype(case.dtype)
    x = _normal(rng, shape, dtype)
    x += 1
    cols = shape[case.axis]
    weight = (1.0 + 0.1 * rng.standard_normal(cols)).astype(dtype)
    bias = (0.1 * rng.standard_normal(cols)).astype(dtype) if spec.centered else None
    arrays = {"x": x}
    for name in spec.reads[1:]:
        arrays[name] = _normal(rng, shape, dtype)
    return Inputs(func, case, arrays, weight, bias, spec.eps, small,
                  spec.bytes_moved(shape, dtype))
