"""The contenders: numba_ln's and NumPy's builders, and the ``BUILDERS`` registry that
:func:`build` draws from (peers in :mod:`.peers_torch` / :mod:`.peers_onnx`, the speed-line
copies in :mod:`.lines`).

A builder takes ``(inputs, threads)`` and returns a :class:`~.base.Contender`, or raises
:class:`~.base.Skip` with the reason it cannot run (library missing, function or layout not
supported).  Names:

``numba_ln-out``     numba_ln writing into preallocated ``out=`` (and ``residual_out=``)
``numba_ln-alloc``   numba_ln allocating its outputs
``numpy``            the plain NumPy expression (unfused for the residual variants)
``torch``            ``torch.nn.functional.layer_norm`` / ``rms_norm``
``onnxruntime``      onnxruntime through an IOBinding (preallocated outputs)
``onnxruntime-run``  onnxruntime ``session.run`` (allocates its outputs)
``line-copyto``, ``line-prange``, ``line-stream``  the copies whose fastest is the speed line

A new contender (a dask wrapper, say) is a builder plus a row of ``BUILDERS``; its group
(``NUMBA_LN`` / ``PEERS`` / ``LINES``) decides how the report and the CLI treat it.
"""
from functools import partial

import numpy as np

import numba_ln

from .base import Contender, Skip
from .cases import cases_for
from .lines import LINES, line_copyto, line_prange, line_stream
from .peers_onnx import onnxruntime_iobinding, onnxruntime_run
from .peers_torch import torch_contender

NUMBA_LN = ("numba_ln-out", "numba_ln-alloc")
PEERS = ("numpy", "torch", "onnxruntime", "onnxruntime-run")

# numba_ln keyword for each output name of a function's ``writes``
OUT_KEYWORDS = {"y": "out", "s": "residual_out"}


def _numba_ln_args(inp):
    params = (inp.weight,) + ((inp.bias,) if inp.bias is not None else ())
    return tuple(inp.reads) + params, {"axis": inp.case.axis, "eps": inp.eps}


def numba_ln_out(inp, threads):
    f = getattr(numba_ln, inp.func)
    args, kwargs = _numba_ln_args(inp)
    for name in inp.spec.writes:
        if name not in OUT_KEYWORDS:
            raise Skip(f"numba_ln.{inp.func} has no keyword for output {name}")
        kwargs[OUT_KEYWORDS[name]] = np.empty_like(inp.x)
    outs = ", ".join(OUT_KEYWORDS[n] + "=" for n in inp.spec.writes)
    return Contender("numba_ln-out", partial(f, *args, **kwargs),
                     f"numba_ln.{inp.func}(..., {outs})")


def numba_ln_alloc(inp, threads):
    f = getattr(numba_ln, inp.func)
    args, kwargs = _numba_ln_args(inp)
    return Contender("numba_ln-alloc", partial(f, *args, **kwargs), f"numba_ln.{inp.func}(...)")


def _numpy_ln(x, g, b, eps, axis):
    mean = x.mean(axis, keepdims=True)
    return (x - mean) / np.sqrt(x.var(axis, keepdims=True) + eps) * g + b


def _numpy_rms(x, g, b, eps, axis):
    return x / np.sqrt(np.mean(x * x, axis, keepdims=True) + eps) * g


def _unfused(norm):
    def call(x, r, g, b, eps, axis):
        s = x + r
        return norm(s, g, b, eps, axis), s
    return call


# function -> (callable(*reads, g, b, eps, axis), its text)
NUMPY = {
    "layer_norm": (_numpy_ln, "(x - x.mean(-1, keepdims=True)) / "
                              "np.sqrt(x.var(-1, keepdims=True) + eps) * g + b"),
    "rms_norm": (_numpy_rms, "x / np.sqrt(np.mean(x * x, -1, keepdims=True) + eps) * g"),
    "add_layer_norm": (_unfused(_numpy_ln), "s = x + r, then the layer_norm expression"),
    "add_rms_norm": (_unfused(_numpy_rms), "s = x + r, then the rms_norm expression"),
}


def _through_float32(f, dtype, reads, *args):
    """f on float32 copies of 16-bit data, its outputs rounded back to the data's dtype."""
    got = f(*(a.astype(np.float32) for a in reads), *args)
    return tuple(a.astype(dtype) for a in got) if isinstance(got, tuple) else got.astype(dtype)


def numpy_expression(inp, threads):
    if inp.func not in NUMPY:
        raise Skip(f"no NumPy expression for {inp.func}")
    shape = inp.param_shape
    g = inp.weight.reshape(shape)
    b = None if inp.bias is None else inp.bias.reshape(shape)
    f, text = NUMPY[inp.func]
    if inp.x.itemsize == 2:  # 16-bit data: computed in float32 (as the kernels are)
        g, b = (None if p is None else p.astype(np.float32) for p in (g, b))
        return Contender("numpy", partial(_through_float32, f, inp.x.dtype, inp.reads, g, b,
                                          inp.eps, inp.case.axis),
                         f"float32 copies, then {text}, rounded back")
    return Contender("numpy", partial(f, *inp.reads, g, b, inp.eps, inp.case.axis), text)


BUILDERS = {
    "numba_ln-out": numba_ln_out,
    "numba_ln-alloc": numba_ln_alloc,
    "numpy": numpy_expression,
    "torch": torch_contender,
    "onnxruntime": onnxruntime_iobinding,
    "onnxruntime-run": onnxruntime_run,
    "line-copyto": line_copyto,
    "line-prange": line_prange,
    "line-stream": line_stream,
}
LIBRARIES = NUMBA_LN + PEERS + LINES
assert set(LIBRARIES) == set(BUILDERS)


def build(inputs, threads, libraries=LIBRARIES):
    """Contenders for ``inputs``: ``({library: Contender}, {library: skip reason})``."""
    built, skipped = {}, {}
    for lib in libraries:
        try:
            built[lib] = BUILDERS[lib](inputs, threads)
        except Skip as exc:
            skipped[lib] = str(exc)
    return built, skipped


def benchmark_params(func):
    """``pytest.param(case name, library)`` for ``func``'s pytest-benchmark tests, a case's
    contenders next to each other (they share one set of inputs)."""
    import pytest

    return [pytest.param(case.name, lib, id=f"{case.name}-{lib}")
            for case in cases_for(func) for lib in LIBRARIES]
