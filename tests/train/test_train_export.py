"""ONNX export: parity with torch, dynamic batch, the contract and training metadata."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'facequal[train]')")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from facequal.contract import ARCFACE_112, contract_from_onnx_metadata, scaled_template  # noqa: E402
from facequal.train.export import TRAINING_KEY, VERSION_KEY, export_onnx, onnx_parity, read_metadata  # noqa: E402
from facequal.train.framing import student_contract  # noqa: E402
from facequal.train.nets import LightQNet  # noqa: E402


def _trained_like(width: float = 0.25) -> torch.nn.Module:
    torch.manual_seed(0)
    net = LightQNet(width)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.8, 1.2)
            m.bias.data.uniform_(-0.1, 0.1)
    torch.nn.init.normal_(net.fc.weight, std=0.5)
    return net


def test_export_parity_dynamic_batch_and_metadata(tmp_path: Path) -> None:
    net = _trained_like()
    calib = {"x": [0.1, 0.5, 0.9], "y": [0.0, 0.4, 1.0]}
    contract = student_contract(0.25, calibration=calib)
    path = export_onnx(net, tmp_path / "m.onnx", contract, {"m": 0.93, "s": 88.0, "lambda": 20, "steps": 5})
    assert onnx_parity(net, path, n=8) <= 1e-5

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,), (out,) = sess.get_inputs(), sess.get_outputs()
    assert inp.name == "input" and out.name == "quality"
    assert inp.shape[1:] == [3, 96, 96] and not isinstance(inp.shape[0], int)
    for n in (1, 5):
        x = np.random.default_rng(n).uniform(-1, 1, (n, 3, 96, 96)).astype(np.float32)
        y = sess.run(None, {"input": x})[0]
        assert y.shape == (n, 1) and np.all((y > 0) & (y < 1))

    meta = read_metadata(path)
    c = contract_from_onnx_metadata(meta)
    assert c == contract
    assert c.output == "sigmoid" and c.layout == "NCHW" and c.color == "RGB" and c.mean == (127.5,) * 3
    assert np.allclose(c.template_array(), np.array(scaled_template(ARCFACE_112, 96 / 112)))
    assert c.calibration == calib
    assert json.loads(meta[TRAINING_KEY])["s"] == 88.0 and meta[VERSION_KEY]

    import onnx

    model = onnx.load(str(path))
    assert model.opset_import[0].version >= 13
    assert not any(n.op_type == "BatchNormalization" for n in model.graph.node)  # folded


def test_recalibrate_changes_only_the_map(tmp_path: Path) -> None:
    from facequal.train.calibrate import apply_calibration, fit_calibration
    from facequal.train.export import CALIBRATION_KEY, recalibrate

    net = _trained_like()
    old = {"x": [0.1, 0.5, 0.9], "y": [0.0, 0.4, 1.0]}
    src = export_onnx(net, tmp_path / "m.onnx", student_contract(0.25, calibration=old), {"steps": 5})
    rng = np.random.default_rng(0)
    raw = rng.uniform(0.2, 0.8, 500)
    new = fit_calibration(raw, (rng.random(500) < raw).astype(float))
    out = recalibrate(src, new, tmp_path / "m2.onnx", {"fitted_on": "unit test"})
    meta = read_metadata(out)
    c = contract_from_onnx_metadata(meta)
    assert c.calibration == new and json.loads(meta[CALIBRATION_KEY]) == {"fitted_on": "unit test"}
    assert json.loads(meta[TRAINING_KEY]) == {"steps": 5}
    # Same graph, same weights: the raw outputs agree exactly; the calibrated ones follow the new map.
    x = rng.uniform(-1, 1, (4, 3, 96, 96)).astype(np.float32)
    a = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    b = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(c.calibrate(b[:, 0]), apply_calibration(b[:, 0], new), rtol=1e-6)
    with pytest.raises(ValueError, match="exists"):
        recalibrate(src, new, out)
