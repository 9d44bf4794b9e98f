"""The PyTorch contender: ``torch.nn.functional.layer_norm`` / ``rms_norm`` (``x + r`` first
for the residual variants), with ``torch.set_num_threads(threads)``.

torch is imported only when this contender is built; without it the contender is skipped
with a reason.
"""
from functools import partial

from .base import Contender, Skip

INSTALL = "(pip install 'numba_ln[bench]')"


def _import():
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        raise Skip(f"torch is not installed {INSTALL}") from None
    return torch, F


def _layer_norm(F, t, cols, eps, channels_first):
    x, g, b = t["x"], t["weight"], t["bias"]
    if channels_first:
        # The usual idiom (ConvNeXt-style LayerNorm on NCHW): normalize the last axis of an
        # NHWC view; F.layer_norm copies the view to contiguous first.  The result is
        # returned as an NCHW view of NHWC memory, as torch code would use it.
        def call():
            return F.layer_norm(x.permute(0, 2, 3, 1), cols, g, b, eps).permute(0, 3, 1, 2)
        return call, "F.layer_norm(x.permute(0, 2, 3, 1), ...).permute(0, 3, 1, 2)"
    return partial(F.layer_norm, x, cols, g, b, eps), "F.layer_norm(x, ...)"


def _rms_norm(F, t, cols, eps, channels_first):
    return partial(F.rms_norm, t["x"], cols, t["weight"], eps), "F.rms_norm(x, ...)"


def _add_layer_norm(F, t, cols, eps, channels_first):
    x, r, g, b = t["x"], t["r"], t["weight"], t["bias"]

    def call():
        s = x + r
        return F.layer_norm(s, cols, g, b, eps), s
    return call, "s = x + r; F.layer_norm(s, ...)"


def _add_rms_norm(F, t, cols, eps, channels_first):
    x, r, g = t["x"], t["r"], t["weight"]

    def call():
        s = x + r
        return F.rms_norm(s, cols, g, eps), s
    return call, "s = x + r; F.rms_norm(s, ...)"


# function -> builder(F, tensors, normalized shape, eps, channels_first) -> (call, text)
CALLS = {
    "layer_norm": _layer_norm,
    "rms_norm": _rms_norm,
    "add_layer_norm": _add_layer_norm,
    "add_rms_norm": _add_rms_norm,
}
CHANNELS_FIRST = ("layer_norm",)


def torch_contender(inp, threads):
    if inp.func not in CALLS:
        raise Skip(f"no torch contender for {inp.func}")
    torch, F = _import()
    torch.set_num_threads(threads)
    if "rms_norm" in inp.func and not hasattr(F, "rms_norm"):
        raise Skip(f"torch {torch.__version__} has no F.rms_norm")
    channels_first = inp.case.axis != -1
    if channels_first and inp.func not in CHANNELS_FIRST:
        raise Skip("channels-first only benchmarked for layer_norm")
    arrays = {**inp.arrays, "weight": inp.weight, "bias": inp.bias}
    bf16 = inp.x.dtype.name == "bfloat16"
    try:
        tensors = {k: None if a is None else _tensor(torch, a) for k, a in arrays.items()}
    except TypeError:  # a dtype torch.from_numpy does not take
        raise Skip(f"torch.from_numpy does not take {inp.x.dtype.name} arrays") from None
    cols = (inp.x.shape[inp.case.axis],)
    call, text = CALLS[inp.func](F, tensors, cols, inp.eps, channels_first)
    if bf16:  # NumPy cannot read a bfloat16 tensor: its bits, viewed (no copy)
        call = partial(_bfloat16_numpy, torch, inp.x.dtype, call)
    return Contender("torch", call, f"torch {torch.__version__}: {text}")


def _tensor(torch, a):
    """A tensor sharing a's memory; bfloat16 (ml_dtypes) through its bits."""
    if a.dtype.name == "bfloat16":
        return torch.from_numpy(a.view("i2")).view(torch.bfloat16)
    return torch.from_numpy(a)


def _bfloat16_numpy(torch, dtype, call):
    got = call()
    as_numpy = (lambda t: t.view(torch.int16).numpy().view(dtype))
    return tuple(map(as_numpy, got)) if isinstance(got, tuple) else as_numpy(got)
