"""Composing exported quality models into one: the weighted mean of their logits, without the runs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'facequal[train]')")
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from facequal.contract import contract_from_onnx_metadata  # noqa: E402
from facequal.train.compose import compose, main  # noqa: E402
from facequal.train.export import export_onnx, recalibrate  # noqa: E402
from facequal.train.framing import student_contract  # noqa: E402
from facequal.train.nets import LightQNet  # noqa: E402


def _net(seed: int, stem_stride: int = 1) -> LightQNet:
    torch.manual_seed(seed)
    net = LightQNet(0.25, stem_stride).eval()
    with torch.no_grad():   # an untrained head gives logits near zero: spread them out
        net.fc.weight.mul_(2e4)
        net.fc.bias.fill_(seed - 2.5)
    return net


def _export(tmp_path: Path, name: str, net: LightQNet, stem_stride: int = 1, members: int = 1,
            threshold: float = 0.35, **training) -> Path:
    meta = {"teacher_threshold": threshold, "m": 0.7, **training}
    if members > 1:
        meta["ensemble"] = [{"seed": i} for i in range(members)]
    return export_onnx(net, tmp_path / f"{name}.onnx", student_contract(0.25, stem_stride=stem_stride), meta)


def _logit(net: LightQNet, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net(torch.from_numpy(np.ascontiguousarray(x))).numpy().astype(np.float64)


def test_composed_model_is_the_member_weighted_logit_mean_with_flipped_parts(tmp_path: Path) -> None:
    a, b = _net(1), _net(2, stem_stride=2)
    pa = _export(tmp_path, "a", a, members=3)          # stands for a fused ensemble of three
    pb = _export(tmp_path, "b", b, stem_stride=2)
    out = tmp_path / "ab.onnx"
    result = compose([pa], out, flipped=[pb])
    assert result["parity_max_abs"] <= 1e-5 and Path(result["onnx"]) == out

    x = np.random.default_rng(5).uniform(-1, 1, (4, 3, 96, 96)).astype(np.float32)
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert got.shape == (4, 1)
    za, zb = _logit(a, x), (_logit(b, x) + _logit(b, x[:, :, :, ::-1])) / 2
    want = 1 / (1 + np.exp(-(3 * za + zb) / 4))
    np.testing.assert_allclose(got[:, 0], want, atol=1e-5)
    # the weights matter: an unweighted mean, or no mirror, would be another model
    assert np.abs(got[:, 0] - 1 / (1 + np.exp(-(za + zb) / 2))).max() > 1e-3
    assert np.abs(got[:, 0] - 1 / (1 + np.exp(-(3 * za + _logit(b, x)) / 4))).max() > 1e-3

    meta = onnx.load(str(out)).metadata_props
    props = {p.key: p.value for p in meta}
    contract = contract_from_onnx_metadata(props)
    assert contract.name == "facequal-lightqnet-dm025+dm025s2f" and contract.calibration is None
    training = json.loads(props["facequal.training"])
    parts = training["composed"]
    assert [p["weight"] for p in parts] == [0.75, 0.25] and [p["flip_average"] for p in parts] == [False, True]
    assert parts[0]["sha256"] == hashlib.sha256(pa.read_bytes()).hexdigest()
    assert training["teacher_threshold"] == 0.35 and len(training["ensemble"]) == 4
    # a calibration can then be fitted onto it like onto any export
    cal = recalibrate(out, {"x": [0.0, 1.0], "y": [0.0, 1.0]}, tmp_path / "ab-cal.onnx")
    assert contract_from_onnx_metadata(
        {p.key: p.value for p in onnx.load(str(cal)).metadata_props}).calibration is not None


def test_a_model_composed_with_itself_is_that_model(tmp_path: Path) -> None:
    a = _net(3)
    pa = _export(tmp_path, "a", a)
    out = compose([pa, pa], tmp_path / "aa.onnx")["onnx"]
    x = np.random.default_rng(0).uniform(-1, 1, (3, 3, 96, 96)).astype(np.float32)
    got = ort.InferenceSession(out, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0][:, 0]
    np.testing.assert_allclose(got, 1 / (1 + np.exp(-_logit(a, x))), atol=1e-5)


def test_compose_refuses_mismatched_parts_and_leaves_an_existing_output_alone(tmp_path: Path, capsys) -> None:
    pa = _export(tmp_path, "a", _net(1))
    pb = _export(tmp_path, "b", _net(2))
    existing = tmp_path / "mine.onnx"
    existing.write_bytes(b"not facequal's")
    with pytest.raises(ValueError, match="exists"):
        compose([pa, pb], existing)
    assert existing.read_bytes() == b"not facequal's"

    other = _export(tmp_path, "other", _net(4), threshold=0.5)
    with pytest.raises(ValueError, match="teacher threshold"):
        compose([pa, other], tmp_path / "x.onnx")
    flipped_already = _export(tmp_path, "fl", _net(5), flip_average=True)
    with pytest.raises(ValueError, match="already averages"):
        compose([pa], tmp_path / "y.onnx", flipped=[flipped_already])
    from modelkit import build_tiny_model

    bare = build_tiny_model(tmp_path / "bare.onnx", with_contract=False)   # no facequal contract
    with pytest.raises(ValueError, match="compose takes facequal's own exports"):
        compose([pa, bare], tmp_path / "x.onnx")
    with pytest.raises(ValueError, match="two or more"):
        compose([pa], tmp_path / "z.onnx")
    with pytest.raises(ValueError, match="existing folder"):
        compose([pa, pb], tmp_path / "no-such-folder" / "w.onnx")
    assert not list(tmp_path.glob("[xyz].onnx"))

    with pytest.raises(SystemExit) as e:
        main([str(pa), str(pb), "--out", str(existing)])
    assert e.value.code == 2 and "exists" in capsys.readouterr().err
    assert main([str(pa), "--flipped", str(pb), "--out", str(tmp_path / "ok.onnx")]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "facequal-lightqnet-dm025+dm025f"
