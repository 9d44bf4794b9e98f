"""The onnxruntime contenders: one-node models (three for channels-first) built in memory
with ``onnx.helper`` -- LayerNormalization (opset 17), SimplifiedLayerNormalization, and
com.microsoft SkipLayerNormalization / SkipSimplifiedLayerNormalization -- on the CPU
execution provider, intra-op threads = threads, inter-op 1.

``onnxruntime``      run through an IOBinding into preallocated outputs (its fastest way:
                     no per-call feed conversion, no output allocation); compared with
                     ``numba_ln-out``.
``onnxruntime-run``  the same session run with ``session.run(None, feeds)``: onnxruntime
                     allocates its outputs, as ordinary use does; compared with
                     ``numba_ln-alloc``.

onnx and onnxruntime are imported only when one of these is built; without them the
contenders are skipped with a reason.
"""
from functools import partial

import numpy as np

from .base import Contender, Skip

# function -> (domain, op type)
OPS = {
    "layer_norm": ("", "LayerNormalization"),
    "rms_norm": ("", "SimplifiedLayerNormalization"),
    "add_layer_norm": ("com.microsoft", "SkipLayerNormalization"),
    "add_rms_norm": ("com.microsoft", "SkipSimplifiedLayerNormalization"),
}
CHANNELS_FIRST = ("layer_norm",)
# NumPy dtype name -> onnx.TensorProto element type name (onnxruntime's Python binding
# takes no ml_dtypes arrays: bfloat16 would need OrtValues)
ELEMENT_TYPES = {"float64": "DOUBLE", "float32": "FLOAT", "float16": "FLOAT16"}


def _import():
    try:
        import onnx  # noqa: F401  (the model builder needs it)
        import onnxruntime as ort
    except ImportError as exc:
        raise Skip(f"{exc.name or 'onnx/onnxruntime'} is not installed "
                   "(pip install 'numba_ln[bench]')") from None
    return ort


def model(inp):
    """The ONNX model of ``inp``'s function: (model, input names, feeds, op type)."""
    from onnx import TensorProto, helper

    if inp.func not in OPS:
        raise Skip(f"no onnxruntime contender for {inp.func}")
    if inp.x.dtype.name not in ELEMENT_TYPES:
        raise Skip(f"no ONNX element type for {inp.x.dtype.name}")
    elem = getattr(TensorProto, ELEMENT_TYPES[inp.x.dtype.name])
    shape = list(inp.x.shape)
    channels_first = inp.case.axis != -1
    domain, op = OPS[inp.func]
    names = ["x"] + (["r"] if inp.spec.residual else []) + ["g"] + (
        ["b"] if inp.bias is not None else [])
    feeds = {"x": inp.x, "r": inp.r, "g": inp.weight, "b": inp.bias}
    feeds = {n: feeds[n] for n in names}
    value_info = [helper.make_tensor_value_info(n, elem, list(feeds[n].shape)) for n in names]
    nodes = []
    src, dst = "x", "y"
    if channels_first:
        if inp.func not in CHANNELS_FIRST:
            raise Skip("channels-first only benchmarked for layer_norm")
        # LayerNormalization normalizes trailing axes: transpose NCHW -> NHWC and back, as
        # exporters emit for a channels-first LayerNorm.
        nodes.append(helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 2, 3, 1]))
        src, dst = "xt", "yt"
    attrs = {"epsilon": inp.eps}
    if not inp.spec.residual:
        attrs["axis"] = -1
        node_inputs, node_outputs = [src] + names[1:], [dst]
    else:
        node_inputs = names
        node_outputs = ["y", "", "", "s"]  # output, (mean), (inv_std_var), input_skip_bias_sum
    nodes.append(helper.make_node(op, node_inputs, node_outputs, domain=domain, **attrs))
    if channels_first:
        nodes.append(helper.make_node("Transpose", ["yt"], ["y"], perm=[0, 3, 1, 2]))
    out_info = [helper.make_tensor_value_info(n, elem, shape) for n in inp.spec.writes]
    graph = helper.make_graph(nodes, f"numba_ln_bench_{inp.func}", value_info, out_info)
    opsets = [helper.make_opsetid("", 17)]
    if domain:
        opsets.append(helper.make_opsetid(domain, 1))
    m = helper.make_model(graph, opset_imports=opsets)
    m.ir_version = 8  # readable by every onnxruntime >= 1.14
    return m, names, feeds, op


def _session(inp, threads):
    """(onnxruntime module, session, input names, feeds, op type) for ``inp``."""
    ort = _import()
    m, names, feeds, op = model(inp)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(m.SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
    except Exception as exc:  # e.g. the op is not in this build's CPU provider
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise Skip(f"onnxruntime {ort.__version__} CPU cannot run {op}: {first}") from None
    return ort, session, names, feeds, op


def onnxruntime_iobinding(inp, threads):
    ort, session, names, feeds, op = _session(inp, threads)
    binding = session.io_binding()
    for n in names:
        binding.bind_cpu_input(n, feeds[n])
    outs = []
    for n in inp.spec.writes:
        a = np.empty_like(inp.x)
        binding.bind_output(n, "cpu", 0, a.dtype, list(a.shape), a.ctypes.data)
        outs.append(a)
    run = partial(session.run_with_iobinding, binding)
    result = outs[0] if len(outs) == 1 else tuple(outs)

    def call():
        run()
        return result
    return Contender("onnxruntime", call, f"onnxruntime {ort.__version__}: {op} (IOBinding)",
                     keep=(session, binding))


def onnxruntime_run(inp, threads):
    ort, session, names, feeds, op = _session(inp, threads)
    run = partial(session.run, None, feeds)
    if len(inp.spec.writes) == 1:
        def call():
            return run()[0]
    else:
        def call():
            return tuple(run())
    return Contender("onnxruntime-run", call,
                     f"onnxruntime {ort.__version__}: {op} (session.run(None, feeds))",
                     keep=session)
