"""facequal.Scorer / facequal.Embedder: load once, score an image in memory, get the values
`facequal score` writes for the same file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

import facequal
from facequal.cli import app

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "faces"
COLUMNS = ["face_index", "quality", "quality_raw", "bbox", "landmarks", "det_score", "eye_distance",
           "yaw", "pitch", "roll", "sharpness", "brightness", "contrast",
           "n_faces", "width", "height", "status", "error"]


def cli_rows(path: Path, out: Path, *flags: str) -> list[dict]:
    res = CliRunner().invoke(app, ["score", str(path), "-o", str(out), "-q", *flags])
    assert res.exit_code == 0, res.output
    return [{c: r[c] for c in COLUMNS} for r in pq.read_table(out).to_pylist()]


@pytest.fixture(scope="module")
def scorer():
    return facequal.Scorer()


@pytest.mark.parametrize("name", ["astronaut.jpg", "no_face_coffee.jpg"])
def test_score_image_equals_the_cli_row(scorer, tmp_path, name):
    path = EXAMPLES / name
    expected = cli_rows(path, tmp_path / "x.parquet")
    with Image.open(path) as im:
        got = scorer.score_image(im)
        as_array = scorer.score_image(np.asarray(im.convert("RGB")))
    assert got == expected  # every column, exact float equality
    assert as_array == expected
    assert scorer.score_image(path) == expected
    assert sorted(got[0]) == sorted(COLUMNS)


def test_score_image_all_faces_equals_the_cli(tmp_path):
    path = EXAMPLES / "astronaut_full.jpg"
    expected = cli_rows(path, tmp_path / "x.parquet", "--faces", "all")
    with Image.open(path) as im:
        assert facequal.Scorer(faces="all").score_image(im) == expected


def test_score_image_converts_modes_like_the_pipeline(scorer, tmp_path):
    with Image.open(EXAMPLES / "astronaut.jpg") as im:
        grey, rgba = im.convert("L"), im.convert("RGBA")
    rgba.putalpha(200)
    for img in (grey, rgba):
        path = tmp_path / f"{img.mode}.png"
        img.save(path)
        expected = cli_rows(path, tmp_path / f"{img.mode}.parquet")
        assert expected[0]["status"] == "ok"
        assert scorer.score_image(img) == expected


def test_score_image_refuses_a_non_image_array(scorer):
    with pytest.raises(ValueError, match="uint8"):
        scorer.score_image(np.zeros((10, 10, 3), dtype=np.float32))


def test_embedder_equals_the_cli_row(tmp_path):
    path = EXAMPLES / "astronaut.jpg"
    out = tmp_path / "e.parquet"
    res = CliRunner().invoke(app, ["embed", str(path), "-o", str(out), "-q"])
    if res.exit_code != 0 and "dlib" in res.output:
        pytest.skip("the default embedding model is not available here")
    assert res.exit_code == 0, res.output
    expected = pq.read_table(out).to_pylist()[0]
    with Image.open(path) as im:
        got = facequal.Embedder().embed_image(im)[0]
    assert got == {c: expected[c] for c in got}
    assert "embedding" in got and "quality" not in got
