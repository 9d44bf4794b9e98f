"""Float32 accuracy against the float64 oracle, numba_ln vs the peers installed.

    python benchmarks/accuracy_table.py

Rows ``offset + N(0, 1)`` (and ``offset + 0.01 N(0, 1)``), 256 x 1024, weight 1, bias 0;
prints the max absolute error of y per library.
"""
import numpy as np

import numba_ln
from numba_ln import reference as ref


def peers():
    found = {"numba_ln": lambda x: numba_ln.layer_norm(x)}
    try:
        import torch

        found["torch"] = lambda x: torch.nn.functional.layer_norm(
            torch.from_numpy(x), (x.shape[-1],), eps=1e-5).numpy()
    except ImportError:
        pass
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper

        cols = 1024
        node = helper.make_node("LayerNormalization", ["x", "w", "b"], ["y"], axis=-1,
                                epsilon=1e-5)
        graph = helper.make_graph(
            [node], "ln", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, cols])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, cols])],
            [helper.make_tensor("w", TensorProto.FLOAT, [cols], np.ones(cols)),
             helper.make_tensor("b", TensorProto.FLOAT, [cols], np.zeros(cols))])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        session = ort.InferenceSession(model.SerializeToString(),
                                       providers=["CPUExecutionProvider"])
        found["onnxruntime"] = lambda x: session.run(None, {"x": x})[0]
    except ImportError:
        pass
    return found


def main():
    rng = np.random.default_rng(0)
    contenders = peers()
    print("| data | " + " | ".join(contenders) + " |")
    print("|---|" + "---|" * len(contenders))
    for offset, scale in [(0, 1), (1e3, 1), (1e4, 1), (1e5, 1), (1e4, 1e-2)]:
        x = (offset + scale * rng.standard_normal((256, 1024))).astype(np.float32)
        expected = ref.layer_norm(x)[0]
        errors = [np.abs(f(x).astype(np.float64) - expected).max() for f in contenders.values()]
        label = f"{offset:g} + {scale:g} N(0,1)"
        print(f"| {label} | " + " | ".join(f"{e:.1e}" for e in errors) + " |")


if __name__ == "__main__":
    main()
