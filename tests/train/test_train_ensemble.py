"""Seed ensembles: one ONNX graph that averages finished runs' students (the logit mean)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'facequal[train]')")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from test_train_trainer import synthetic_cache  # noqa: E402

from facequal.contract import contract_from_onnx_metadata  # noqa: E402
from facequal.train import TrainConfig, run  # noqa: E402
from facequal.train.ensemble import FlipMean, build, load_member, main  # noqa: E402
from facequal.train.export import export_onnx  # noqa: E402
from facequal.train.framing import student_contract  # noqa: E402
from facequal.train.nets import LightQNet  # noqa: E402
from facequal.train.trainer import CHECKPOINT  # noqa: E402


def _run(tmp_path: Path, name: str, seed: int, **kw) -> Path:
    cfg = dict(cache=str(tmp_path / "cache"), out_dir=str(tmp_path / name), steps=4, p=3, k=4, width=0.25,
               checkpoint_every=2, log_every=1, threads=1, seed=seed, ema_decay=0.9, lr=0.05,
               m=0.73, s=20.0, export=False)
    cfg.update(kw)
    run(TrainConfig(**cfg))
    return tmp_path / name


def _logits(weights: dict, x: np.ndarray) -> np.ndarray:
    net = LightQNet(0.25)
    net.load_state_dict(weights)
    with torch.no_grad():
        return net.eval()(torch.from_numpy(x)).numpy()


def test_ensemble_is_the_sigmoid_of_the_members_mean_logit(tmp_path: Path) -> None:
    synthetic_cache(tmp_path / "cache")
    a, b = _run(tmp_path, "a", seed=3), _run(tmp_path, "b", seed=4)
    s = build([a, b], tmp_path / "ens", val_cache=tmp_path / "cache")
    assert s["parity_max_abs"] <= 1e-5 and [m["seed"] for m in s["members"]] == [3, 4]
    assert Path(s["onnx"]) == tmp_path / "ens" / "lightqnet-dm025x2.onnx"

    x = np.random.default_rng(1).uniform(-1, 1, (5, 3, 96, 96)).astype(np.float32)
    sess = ort.InferenceSession(s["onnx"], providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x})[0][:, 0]
    za, zb = (_logits(torch.load(r / CHECKPOINT, weights_only=True)["ema"]["module"], x) for r in (a, b))
    np.testing.assert_allclose(got, 1 / (1 + np.exp(-(za + zb) / 2)), atol=1e-5)
    # neither member alone: the two seeds' students really differ
    assert np.abs(got - 1 / (1 + np.exp(-za))).max() > 1e-3 and np.abs(got - 1 / (1 + np.exp(-zb))).max() > 1e-3

    # one fused network: no more operators than a single member's graph, and the fusion checked
    import onnx

    def ops(path: str) -> int:
        return len(onnx.load(path).graph.node)

    single = export_onnx(load_member(a)[0], tmp_path / "one.onnx", student_contract(0.25))
    assert ops(s["onnx"]) == ops(str(single)) and s["fusion_max_abs"] <= 1e-4
    twice = build([a, a], tmp_path / "same")["onnx"]   # an ensemble of one run twice is that run
    same = ort.InferenceSession(twice, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0][:, 0]
    np.testing.assert_allclose(same, 1 / (1 + np.exp(-za)), atol=1e-5)

    meta = sess.get_modelmeta().custom_metadata_map
    contract = contract_from_onnx_metadata(meta)
    assert contract.name == "facequal-lightqnet-dm025x2" and contract.calibration is not None
    training = json.loads(meta["facequal.training"])
    assert [m["weights"] for m in training["ensemble"]] == ["ema", "ema"] and training["seed"] == [3, 4]
    assert (tmp_path / "ens" / "calibration.json").is_file()
    assert json.loads((tmp_path / "ens" / "summary.json").read_text())["onnx"] == s["onnx"]


def test_ensemble_refuses_bad_members_and_an_existing_folder(tmp_path: Path, capsys) -> None:
    synthetic_cache(tmp_path / "cache")
    a = _run(tmp_path, "a", seed=3)
    short = _run(tmp_path, "short", seed=4, max_steps_this_run=2)
    wide = _run(tmp_path, "wide", seed=5, width=0.5)
    strided = _run(tmp_path, "strided", seed=6, stem_stride=2)
    wide_stem = _run(tmp_path, "wide-stem", seed=7, stem_stride=2, stem_channels=16)
    with pytest.raises(ValueError, match="two or more"):
        build([a], tmp_path / "e1")
    with pytest.raises(ValueError, match="16 stem filters, not width 0.25, stem stride 2, default stem filters"):
        build([strided, wide_stem], tmp_path / "e3")
    with pytest.raises(ValueError, match="stopped at step 2 of 4"):
        build([a, short], tmp_path / "e2")
    with pytest.raises(ValueError, match="width"):
        build([a, wide], tmp_path / "e3")
    with pytest.raises(ValueError, match="stem stride 2, default stem filters, not width 0.25, stem stride 1"):
        build([a, strided], tmp_path / "e3")
    with pytest.raises(ValueError, match="not a training run"):
        build([a, tmp_path / "cache"], tmp_path / "e4")
    with pytest.raises(ValueError, match="without folders"):
        build([a, a], tmp_path / "e5", export_name="../outside.onnx")
    with pytest.raises(ValueError, match="not a training cache"):
        build([a, a], tmp_path / "e5", val_cache=tmp_path / "no-cache")
    assert not any((tmp_path / f"e{i}").exists() for i in range(1, 6))   # nothing half-written

    # an existing folder is never written into: the user's file stays as it was
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    b = _run(tmp_path, "b", seed=4)
    with pytest.raises(SystemExit) as e:
        main([str(a), str(b), "--out", str(mine)])
    assert e.value.code == 2 and "exists" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["notes.txt"] and (mine / "notes.txt").read_text() == "keep"


def test_an_ensemble_of_stride_2_stems_is_named_and_built_as_such(tmp_path: Path) -> None:
    synthetic_cache(tmp_path / "cache")
    a, b = (_run(tmp_path, n, seed=s, stem_stride=2) for n, s in (("a", 1), ("b", 2)))
    s = build([a, b], tmp_path / "ens")
    assert Path(s["onnx"]).name == "lightqnet-dm025s2x2.onnx" and s["parity_max_abs"] <= 1e-5
    meta = ort.InferenceSession(s["onnx"], providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
    assert contract_from_onnx_metadata(meta).name == "facequal-lightqnet-dm025s2x2"
    assert json.loads(meta["facequal.training"])["stem_stride"] == 2
    import onnx

    stem = next(n for n in onnx.load(s["onnx"]).graph.node if n.op_type == "Conv")
    assert [a.ints for a in stem.attribute if a.name == "strides"] == [[2, 2]]


def test_flip_averaging_scores_a_face_and_its_mirror_alike(tmp_path: Path) -> None:
    """``FlipMean`` in the exported graph: the sigmoid of the mean logit over each crop and its
    left-right mirror, so a mirrored photo gets the same score (the network alone does not)."""
    torch.manual_seed(0)
    net = LightQNet(0.25)
    torch.nn.init.normal_(net.fc.weight, std=300.0)   # untrained pooled features are tiny: scale them up
    x = np.random.default_rng(2).uniform(-1, 1, (5, 3, 96, 96)).astype(np.float32)
    x[:, :, :, :48] *= 0.2   # left and right halves differ
    mirror = np.ascontiguousarray(x[..., ::-1])
    with torch.no_grad():
        z, z_m = (net.eval()(torch.from_numpy(v)).numpy() for v in (x, mirror))
    assert np.abs(z - z_m).max() > 0.1
    path = export_onnx(FlipMean(net), tmp_path / "flip.onnx", student_contract(0.25))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got, got_m = (sess.run(None, {"input": v})[0][:, 0] for v in (x, mirror))
    np.testing.assert_allclose(got, 1 / (1 + np.exp(-(z + z_m) / 2)), atol=1e-5)
    np.testing.assert_allclose(got, got_m, atol=1e-6)
    assert sess.run(None, {"input": x[:1]})[0].shape == (1, 1)   # any batch size, one row each


def test_a_flip_averaged_ensemble_is_named_and_one_run_is_enough(tmp_path: Path) -> None:
    synthetic_cache(tmp_path / "cache")
    a, b = _run(tmp_path, "a", seed=3), _run(tmp_path, "b", seed=4)
    one = build([a], tmp_path / "one", flip_average=True)
    assert Path(one["onnx"]).name == "lightqnet-dm025f.onnx" and one["parity_max_abs"] <= 1e-5
    two = build([a, b], tmp_path / "two", val_cache=tmp_path / "cache", flip_average=True)
    meta = ort.InferenceSession(two["onnx"], providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
    assert contract_from_onnx_metadata(meta).name == "facequal-lightqnet-dm025x2f"
    training = json.loads(meta["facequal.training"])
    assert training["flip_average"] is True and training["seed"] == [3, 4]
    with pytest.raises(SystemExit):
        main([str(a), "--out", str(tmp_path / "no-flip")])   # one run needs --flip-average
    assert not (tmp_path / "no-flip").exists()


def test_a_mixed_ensemble_flips_only_the_members_named_after_flipped(tmp_path: Path) -> None:
    """Two stride-1 networks as they are and one stride-2 network flip-averaged: the exported
    graph is the mean of the three members' logits, the flipped one on the crop and its mirror."""
    synthetic_cache(tmp_path / "cache")
    a, b = _run(tmp_path, "a", seed=3), _run(tmp_path, "b", seed=4)
    c = _run(tmp_path, "c", seed=5, stem_stride=2)
    s = build([a, b], tmp_path / "mix", flipped=[c])
    assert Path(s["onnx"]).name == "lightqnet-dm025x2+dm025s2f.onnx" and s["parity_max_abs"] <= 1e-5
    assert [m["flip_average"] for m in s["members"]] == [False, False, True]
    nets = [load_member(r)[0] for r in (a, b, c)]
    x = np.random.default_rng(3).uniform(-1, 1, (4, 3, 96, 96)).astype(np.float32)
    x[:, :, :, :48] *= 0.2
    with torch.no_grad():
        z = [n(torch.from_numpy(x)).numpy() for n in nets]
        z_c_mirror = nets[2](torch.from_numpy(np.ascontiguousarray(x[..., ::-1]))).numpy()
    want = 1 / (1 + np.exp(-(z[0] + z[1] + (z[2] + z_c_mirror) / 2) / 3))
    sess = ort.InferenceSession(s["onnx"], providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {"input": x})[0][:, 0], want, atol=1e-5)
    meta = sess.get_modelmeta().custom_metadata_map
    assert contract_from_onnx_metadata(meta).name == "facequal-lightqnet-dm025x2+dm025s2f"
    with pytest.raises(ValueError, match="use one"):
        build([a, b], tmp_path / "both", flipped=[c], flip_average=True)
    assert not (tmp_path / "both").exists()


def test_a_run_distils_from_an_ensemble_and_resumes_exactly(tmp_path: Path) -> None:
    """``quality_teacher``: a finished model's logits on the training crops are one more KL
    target; the term is logged, moves the weights, survives a resume, and is in the metadata."""
    synthetic_cache(tmp_path / "cache")
    a, b = _run(tmp_path, "a", seed=3), _run(tmp_path, "b", seed=4)
    teacher = build([a, b], tmp_path / "ens")["onnx"]
    kw = dict(quality_teacher=teacher, quality_teacher_lam=5.0)
    plain = _run(tmp_path, "plain", seed=5)
    straight = _run(tmp_path, "straight", seed=5, **kw)
    log = [json.loads(x) for x in (straight / "log.jsonl").read_text().splitlines()]
    assert all(np.isfinite(e["kl_teacher"]) and e["kl_teacher"] >= 0 for e in log)
    assert "kl_teacher" not in json.loads((plain / "log.jsonl").read_text().splitlines()[0])
    w_plain, w_straight = (torch.load(r / CHECKPOINT, weights_only=True)["student"] for r in (plain, straight))
    assert any(not torch.equal(w_plain[k], w_straight[k]) for k in w_plain)   # the term acts

    _run(tmp_path, "resumed", seed=5, max_steps_this_run=2, **kw)
    resumed = _run(tmp_path, "resumed", seed=5, resume=True, export=True, calibrate=False, **kw)
    w_resumed = torch.load(resumed / CHECKPOINT, weights_only=True)["student"]
    assert all(torch.equal(w_straight[k], w_resumed[k]) for k in w_straight)
    meta = ort.InferenceSession(str(resumed / "lightqnet.onnx"), providers=["CPUExecutionProvider"])
    training = json.loads(meta.get_modelmeta().custom_metadata_map["facequal.training"])
    assert training["quality_teacher"] == teacher and training["quality_teacher_lam"] == 5.0


def test_quality_teacher_settings_are_checked_before_training(tmp_path: Path) -> None:
    synthetic_cache(tmp_path / "cache")
    with pytest.raises(ValueError, match="go together"):
        _run(tmp_path, "x", seed=3, quality_teacher_lam=1.0)
    with pytest.raises(ValueError, match="online_bands"):
        _run(tmp_path, "x", seed=3, quality_teacher="lightqnet-dm025", quality_teacher_lam=1.0, online_bands=0.5)
    with pytest.raises(ValueError, match="quality_teacher .*nothing-here.onnx"):
        _run(tmp_path, "x", seed=3, quality_teacher=str(tmp_path / "nothing-here.onnx"), quality_teacher_lam=1.0)
    assert not (tmp_path / "x").exists()
