"""The default quality model: the four-seed dm025 ensemble (lightqnet-dm025x4, issue 16), what a
run without --model scores with, and what its bundled file says it is; and the fast choice
(lightqnet-dm025s2x4, issue 20): the same ensemble shape with a stride-2 stem."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
from PIL import Image, ImageFilter

import facequal
from facequal.models.zoo import DEFAULT_QUALITY_MODEL, bundled_names, resolve_model


def test_the_default_is_the_bundled_four_seed_ensemble() -> None:
    assert DEFAULT_QUALITY_MODEL == "lightqnet-dm025x4"
    assert {"lightqnet-dm025x4", "lightqnet-dm025"} <= set(bundled_names("quality"))
    spec = resolve_model()  # sha256-checked against registry.json
    training = json.loads(spec.metadata["facequal.training"])
    members = training["ensemble"]
    # Four networks of one recipe from four different seeds, not one network four times.
    assert len(members) == 4 and len({m["seed"] for m in members}) == 4
    assert spec.contract.name == "facequal-lightqnet-dm025x4" and spec.contract.calibration is not None


def test_a_run_without_model_scores_with_the_ensemble_and_blur_lowers_the_score(tmp_path, astronaut) -> None:
    sharp = Image.fromarray(astronaut)
    sharp.save(tmp_path / "sharp.png")
    # Heavy blur: in the calibration-shift set (sigma 6) such faces are accepted 7% of the time.
    sharp.filter(ImageFilter.GaussianBlur(6)).save(tmp_path / "blurred.png")
    out = tmp_path / "s.parquet"
    facequal.score([str(tmp_path / "sharp.png"), str(tmp_path / "blurred.png")], output=str(out), jobs=1)
    t = pq.read_table(out)
    assert json.loads(t.schema.metadata[b"facequal.contract"])["name"] == "facequal-lightqnet-dm025x4"
    q = {r["path"].rsplit("/", 1)[-1]: r["quality"] for r in t.to_pylist() if r["face_index"] == 0}
    assert q["sharp.png"] > 0.8 and q["blurred.png"] < q["sharp.png"] - 0.3, q


def test_the_fast_choice_is_four_seeds_with_a_stride_2_stem_and_ranks_blur_like_the_default(
        tmp_path, astronaut) -> None:
    import onnx

    spec = resolve_model("lightqnet-dm025s2x4")  # sha256-checked against registry.json
    training = json.loads(spec.metadata["facequal.training"])
    assert training["stem_stride"] == 2 and len({m["seed"] for m in training["ensemble"]}) == 4
    assert spec.contract.name == "facequal-lightqnet-dm025s2x4" and spec.contract.calibration is not None
    stem = next(n for n in onnx.load(str(spec.path)).graph.node if n.op_type == "Conv")
    assert [list(a.ints) for a in stem.attribute if a.name == "strides"] == [[2, 2]]

    sharp = Image.fromarray(astronaut)
    sharp.save(tmp_path / "sharp.png")
    sharp.filter(ImageFilter.GaussianBlur(6)).save(tmp_path / "blurred.png")
    out = tmp_path / "s.parquet"
    facequal.score([str(tmp_path / "sharp.png"), str(tmp_path / "blurred.png")], output=str(out), jobs=1,
                   model="lightqnet-dm025s2x4")
    q = {r["path"].rsplit("/", 1)[-1]: r["quality"] for r in pq.read_table(out).to_pylist()
         if r["face_index"] == 0}
    assert q["sharp.png"] > 0.8 and q["blurred.png"] < q["sharp.png"] - 0.3, q
