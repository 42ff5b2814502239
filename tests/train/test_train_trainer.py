"""End to end on a tiny synthetic cache: train, checkpoint, resume, export, calibrate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'facequal[train]')")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from facequal.contract import contract_from_onnx_metadata  # noqa: E402
from facequal.train import TrainConfig, run  # noqa: E402
from facequal.train.cache import write_cache  # noqa: E402
from facequal.train.trainer import CHECKPOINT, LOG, identity_folds, lr_at, pair_auc  # noqa: E402


def synthetic_cache(root: Path, n_ids: int = 6, per_id: int = 8, seed: int = 0) -> Path:
    """~48 random images of 6 identities in 2 sources; 2 variants (clean, flip) per photo."""
    rng = np.random.default_rng(seed)
    n = n_ids * per_id
    ident = np.repeat(np.arange(n_ids), per_id)
    centres = rng.normal(size=(n_ids, 128))
    emb = centres[ident] + rng.normal(scale=0.6, size=(n, 128))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    crops = rng.integers(0, 256, (n, 96, 96, 3), dtype=np.uint8)
    crops[: n // 2] //= 3  # some darker images
    arrays = {"crops_student": crops, "identity": ident, "source": ident % 2,
              "image": np.arange(n) // 2, "variant": np.arange(n) % 2, "emb": emb.astype(np.float32),
              "feat": rng.normal(size=(n, 256, 4, 4)).astype(np.float16)}
    meta = {"sources": ["lfw", "celeba"], "identities": [f"id{i}" for i in range(n_ids)],
            "variants": ["clean", "flip"]}
    return write_cache(root, arrays, meta)


def _config(tmp_path: Path, out: str, **kw) -> TrainConfig:
    base = dict(cache=str(tmp_path / "cache"), out_dir=str(tmp_path / out), steps=5, p=3, k=4,
                width=0.25, checkpoint_every=2, log_every=1, threads=1, export=False, seed=3)
    base.update(kw)
    return TrainConfig(**base)


def _state(out: Path) -> dict:
    return torch.load(out / CHECKPOINT, weights_only=True)


def _torch_quality(weights: dict, x: np.ndarray) -> np.ndarray:
    """Sigmoid outputs of a width-0.25 student holding ``weights`` (eval mode) on input ``x``."""
    from facequal.train.nets import LightQNet

    net = LightQNet(0.25)
    net.load_state_dict(weights)
    net.eval()
    with torch.no_grad():
        return torch.sigmoid(net(torch.from_numpy(x))).numpy()


def test_train_resume_export(tmp_path: Path) -> None:
    synthetic_cache(tmp_path / "cache")
    straight = run(_config(tmp_path, "a"))
    assert straight["steps_done"] == 5
    log = [json.loads(x) for x in (tmp_path / "a" / LOG).read_text().splitlines()]
    assert [e["step"] for e in log] == [0, 1, 2, 3, 4]
    assert all(np.isfinite(e["loss"]) and e["pairs"] > 0 and {"idq_q", "idq_b", "kl"} <= set(e) for e in log)

    # interrupted after 3 steps (checkpoint at 2, and at the stop), then resumed to 5
    first = run(_config(tmp_path, "b", max_steps_this_run=3))
    assert first["steps_done"] == 3 and _state(tmp_path / "b")["step"] == 3
    resumed = run(_config(tmp_path, "b", resume=True, export=True, val_cache=str(tmp_path / "cache")))
    assert resumed["steps_done"] == 5
    a, b = _state(tmp_path / "a"), _state(tmp_path / "b")
    for key in ("student", "branches"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), name   # resume == uninterrupted run
    log_b = [json.loads(x)["step"] for x in (tmp_path / "b" / LOG).read_text().splitlines()]
    assert log_b == [0, 1, 2, 3, 4]

    # the exported model loads in onnxruntime, carries its contract and says (0, 1)
    path = Path(resumed["onnx"])
    assert resumed["parity_max_abs"] <= 1e-5
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(-1, 1, (4, 3, 96, 96)).astype(np.float32)
    y = sess.run(None, {"input": x})[0]
    assert y.shape == (4, 1) and np.all((y > 0) & (y < 1))
    contract = contract_from_onnx_metadata(sess.get_modelmeta().custom_metadata_map)
    assert contract.task == "quality" and contract.calibration is not None
    params = json.loads((tmp_path / "b" / "label_params.json").read_text())
    assert {"m", "s", "threshold", "share_below_half_soft", "reg_lo", "reg_hi"} <= set(params)
    assert (tmp_path / "b" / "calibration.json").is_file()


@pytest.mark.parametrize("kw", [
    {"label": "regression", "mode": "student"},
    {"label": "hard", "idq_variant": "released", "oof_folds": 2, "online_bands": 0.5},
    {"mode": "branch"},
])
def test_ablation_modes_run(tmp_path: Path, kw: dict) -> None:
    synthetic_cache(tmp_path / "cache")
    s = run(_config(tmp_path, "r", steps=2, channels_last=False, val_cache=str(tmp_path / "cache"),
                    eval_every=1, m=0.73, s=20.0, **kw))   # m: half the synthetic pairs accepted
    assert s["steps_done"] == 2
    log = [json.loads(x) for x in (tmp_path / "r" / LOG).read_text().splitlines()]
    assert all(np.isfinite(e["loss"]) for e in log)
    # every mode, the branch alone included, reports its validation numbers
    assert all(0 <= e["val_pair_auc"] <= 1 and e["val_idq"] > 0 and e["val_pairs"] > 0 for e in log)
    if kw.get("mode") == "branch":
        assert "idq_q" not in log[0] and "kl" not in log[0]
    if kw.get("mode") == "student":
        assert "idq_b" not in log[0]


def test_schedule_folds_and_auc() -> None:
    cfg = TrainConfig(cache="c", out_dir="o", steps=100, lr=0.01)
    lrs = [lr_at(cfg, s) for s in (0, 49, 50, 74, 75, 99)]
    assert lrs == pytest.approx([0.01, 0.01, 1e-3, 1e-3, 1e-4, 1e-4])
    ident = np.array([5, 5, 7, 9, 7, 11, 12, 13])
    f = identity_folds(ident, 2, seed=0)
    assert f[0] == f[1] and f[2] == f[4] and set(f.tolist()) == {0, 1}
    assert pair_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75
    with pytest.raises(ValueError):
        TrainConfig(cache="c", out_dir="o", label="fuzzy")
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_select_on_validation_exports_the_best_step(tmp_path: Path) -> None:
    """``select_on``: the exported model is the student of the best validation step, not the last."""
    synthetic_cache(tmp_path / "cache")
    out = tmp_path / "sel"
    s = run(_config(tmp_path, "sel", steps=6, export=True, calibrate=False, val_cache=str(tmp_path / "cache"),
                    eval_every=2, select_on="val_idq", lr=0.5))
    log = [json.loads(x) for x in (out / LOG).read_text().splitlines()]
    evals = {e["step"] + 1: e["val_idq"] for e in log if "val_idq" in e}
    assert set(evals) == {1, 3, 5, 6}
    best_step = min(evals, key=evals.get)
    assert s["selected"] == {"on": "val_idq", "step": best_step, "value": pytest.approx(evals[best_step]),
                             "weights": "raw"}
    # the exported ONNX reproduces the selected student, and says which step it is
    best = torch.load(out / "best.pt", weights_only=True)
    x = np.random.default_rng(1).uniform(-1, 1, (3, 3, 96, 96)).astype(np.float32)
    sess = ort.InferenceSession(s["onnx"], providers=["CPUExecutionProvider"])
    want = _torch_quality(best["student"], x)
    np.testing.assert_allclose(sess.run(None, {"input": x})[0][:, 0], want, atol=1e-5)
    training = json.loads(sess.get_modelmeta().custom_metadata_map["facequal.training"])
    assert training["steps"] == best_step and training["steps_budget"] == 6
    with pytest.raises(ValueError, match="select_on"):
        TrainConfig(cache="c", out_dir="o", select_on="val_pair_auc")  # no validation cache
    with pytest.raises(ValueError, match="stem_stride must be 1 or 2"):
        TrainConfig(cache="c", out_dir="o", stem_stride=4)
    with pytest.raises(ValueError, match="stem_channels must be a multiple of 8"):
        TrainConfig(cache="c", out_dir="o", stem_channels=20)


def test_weight_ema_averages_parameters_and_batchnorm_statistics() -> None:
    from facequal.train.ema import WeightEMA

    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    ema = WeightEMA(net, decay=0.5)
    start = net[0].weight.detach().clone()
    with torch.no_grad():
        net[0].weight.add_(1.0)
    net.train()
    net(torch.randn(8, 2))   # moves the BN running mean and the batch counter
    ema.update(net)          # warm-up decay: min(0.5, 1/10) = 0.1
    torch.testing.assert_close(ema.module[0].weight, 0.1 * start + 0.9 * net[0].weight)
    torch.testing.assert_close(ema.module[1].running_mean, 0.9 * net[1].running_mean)
    assert int(ema.module[1].num_batches_tracked) == 1
    assert not any(p.requires_grad for p in ema.module.parameters())
    with pytest.raises(ValueError):
        WeightEMA(net, decay=1.0)


def test_ema_is_evaluated_resumed_and_exported(tmp_path: Path) -> None:
    """``ema_decay``: the average is validated next to the raw weights, survives a resume, and a
    run without ``select_on`` exports it."""
    synthetic_cache(tmp_path / "cache")
    kw = dict(steps=4, ema_decay=0.9, val_cache=str(tmp_path / "cache"), eval_every=2, lr=0.05, m=0.73, s=20.0)
    run(_config(tmp_path, "a", **kw))
    run(_config(tmp_path, "b", max_steps_this_run=3, **kw))
    s = run(_config(tmp_path, "b", resume=True, export=True, calibrate=False, **kw))
    a, b = _state(tmp_path / "a"), _state(tmp_path / "b")
    for name, tensor in a["ema"]["module"].items():
        assert torch.equal(tensor, b["ema"]["module"][name]), name
    assert a["ema"]["updates"] == 4
    log = [json.loads(x) for x in (tmp_path / "b" / LOG).read_text().splitlines()]
    evals = [e for e in log if "val_pair_auc" in e]
    assert evals and all(0 <= e["ema_val_pair_auc"] <= 1 and e["ema_val_pairs"] == e["val_pairs"] for e in evals)

    x = np.random.default_rng(2).uniform(-1, 1, (3, 3, 96, 96)).astype(np.float32)
    sess = ort.InferenceSession(s["onnx"], providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x})[0][:, 0]
    want, other = _torch_quality(b["ema"]["module"], x), _torch_quality(b["student"], x)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.abs(got - other).max() > 1e-3   # the average, not the last step's weights
    training = json.loads(sess.get_modelmeta().custom_metadata_map["facequal.training"])
    assert training["weights"] == "ema (decay 0.9)"


def test_select_on_chooses_between_raw_and_averaged_weights(tmp_path: Path) -> None:
    synthetic_cache(tmp_path / "cache")
    s = run(_config(tmp_path, "sel", steps=6, ema_decay=0.5, export=True, calibrate=False,
                    val_cache=str(tmp_path / "cache"), eval_every=2, select_on="val_idq", lr=0.5))
    log = [json.loads(x) for x in (tmp_path / "sel" / LOG).read_text().splitlines()]
    cands = [(e[k], e["step"] + 1, w) for e in log if "val_idq" in e
             for k, w in (("val_idq", "raw"), ("ema_val_idq", "ema"))]
    value, step, weights = min(cands)
    assert s["selected"] == {"on": "val_idq", "step": step, "value": pytest.approx(value), "weights": weights}
    assert torch.load(tmp_path / "sel" / "best.pt", weights_only=True)["weights"] == weights
