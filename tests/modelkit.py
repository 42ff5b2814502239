"""A tiny quality model the test suite builds itself (an ONNX graph with a facequal contract).

It stands in for a trained LightQNet wherever a test needs *a* model with the bundled model's
contract: sigmoid of a fixed linear function of the mean colour and local contrast.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facequal.contract import ARCFACE_112, METADATA_KEY, Contract, scaled_template

TINY_CONTRACT = Contract(
    name="tiny-test", task="quality", input_name="input", output_name="quality", layout="NCHW",
    color="RGB", mean=(127.5, 127.5, 127.5), std=(128.0, 128.0, 128.0), landmarks="five",
    template=scaled_template(ARCFACE_112, 96 / 112), warp_size=(96, 96), crop_size=(96, 96),
    resize="none", output="sigmoid")


def build_tiny_model(path: Path, contract: Contract = TINY_CONTRACT, *, with_contract: bool = True) -> Path:
    """Write a small deterministic ONNX quality model to ``path``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    k = rng.normal(0, 0.2, size=(4, 3, 3, 3)).astype(np.float32)
    w = rng.normal(0, 0.5, size=(4, 1)).astype(np.float32)
    b = np.array([0.3], dtype=np.float32)
    h, wd = contract.crop_size[1], contract.crop_size[0]
    shape = ["N", 3, h, wd] if contract.layout == "NCHW" else ["N", h, wd, 3]
    nodes = []
    x = contract.input_name
    if contract.layout == "NHWC":
        nodes.append(helper.make_node("Transpose", [x], ["xt"], perm=[0, 3, 1, 2]))
        x = "xt"
    nodes += [
        helper.make_node("Conv", [x, "k"], ["c"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Abs", ["c"], ["a"]),
        helper.make_node("GlobalAveragePool", ["a"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "w", "b"], ["z"]),
        helper.make_node("Sigmoid", ["z"], [contract.output_name]),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info(contract.input_name, TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(contract.output_name, TensorProto.FLOAT, ["N", 1])],
        [numpy_helper.from_array(k, "k"), numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    if with_contract:
        helper.set_model_props(m, {METADATA_KEY: contract.to_json()})
    onnx.checker.check_model(m)
    path.write_bytes(m.SerializeToString())
    return path
