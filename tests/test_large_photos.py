"""Large JPEGs: detected on a reduced decode; a face big enough in it is cropped from it, a small
face in a big photo from a second, full-size decode. Rows are in full-resolution pixels either way."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import facequal
import facequal.pipeline.faces as faces_mod


@pytest.fixture(scope="module")
def scorer():
    return facequal.Scorer()


def _canvas(astronaut: np.ndarray, zoom: float, size=(3000, 2200)) -> Image.Image:
    """The astronaut's head and shoulders (scikit-image's public-domain portrait) enlarged
    ``zoom`` times on a large grey canvas."""
    canvas = Image.new("RGB", size, (120, 124, 128))
    head = Image.fromarray(astronaut[20:260, 120:330])
    head = head.resize((round(head.width * zoom), round(head.height * zoom)), Image.Resampling.BICUBIC)
    canvas.paste(head, ((size[0] - head.width) // 2, (size[1] - head.height) // 2))
    return canvas


def _quality_from_full_size_crop(scorer, path, row) -> float:
    """The quality of the face cut from a full-size decode at the row's landmarks."""
    given = [(row["face_index"], row["det_score"], row["bbox"], row["landmarks"])]
    res = scorer.analyse(str(path), given)
    return float(scorer.outputs(res.crops)["quality"][0])


@pytest.fixture()
def decodes(monkeypatch):
    """The (draft_side, decoded size) of every decode the pipeline makes."""
    seen: list[tuple[int | None, tuple[int, int]]] = []
    real = faces_mod.open_image

    def spy(path, **kw):
        dec = real(path, **kw)
        seen.append((kw.get("draft_side"), dec.image.size))
        return dec

    monkeypatch.setattr(faces_mod, "open_image", spy)
    return seen


def test_a_big_face_in_a_big_jpeg_is_scored_from_one_reduced_decode(tmp_path, astronaut, scorer, decodes):
    img = _canvas(astronaut, 6.0)
    path = tmp_path / "big.jpg"
    img.save(path, quality=95)
    row = scorer.score_image(path)[0]
    assert decodes == [(640, (750, 550))]  # 1/4 of 3000 x 2200, and no second decode
    assert row["width"] == 3000 and row["height"] == 2200
    full = scorer.score_image(img)[0]  # the same pixels in memory: detected and cut at full size
    assert np.allclose(row["landmarks"], full["landmarks"], atol=0.03 * full["eye_distance"])
    assert row["eye_distance"] == pytest.approx(full["eye_distance"], rel=0.03)
    # the crop from the reduced decode scores like the full-size crop at the same landmarks (the
    # two are antialiased differently: JPEG's DCT scaling against a 4x-supersampled warp of an 8x
    # reduction, so they are close, not equal)
    assert row["quality"] == pytest.approx(_quality_from_full_size_crop(scorer, path, row), abs=0.03)


def test_a_small_face_in_a_big_jpeg_is_cropped_from_a_full_size_decode(tmp_path, astronaut, scorer, decodes):
    img = _canvas(astronaut, 1.5)
    path = tmp_path / "small-face.jpg"
    img.save(path, quality=95)
    row = scorer.score_image(path)[0]
    assert decodes == [(640, (750, 550)), (None, (3000, 2200))]
    assert row["quality"] == pytest.approx(_quality_from_full_size_crop(scorer, path, row), abs=1e-3)


def test_small_photos_and_aligned_inputs_are_decoded_once_at_full_size(tmp_path, astronaut, decodes):
    path = tmp_path / "a.jpg"
    Image.fromarray(astronaut).save(path, quality=95)
    facequal.score([str(path)], jobs=1)
    facequal.score([str(path)], jobs=1, aligned=True)
    assert decodes == [(640, (512, 512)), (None, (512, 512))]
