"""A worker's images go through the stages in groups (decode + detector pass for each, then the
detections, alignment and rows): the results must be exactly those of one image at a time, an
image that fails in a stage must not take its group down, and the model's batch size must not
change any value."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import facequal
from facequal import schema
from facequal.models.zoo import resolve_model
from facequal.options import FaceOptions
from facequal.pipeline import faces as F
from facequal.pipeline.detect import RetinaFace


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory, astronaut):
    """Faces, a non-face, a non-image and a tight crop (found only by the padded retry)."""
    d = tmp_path_factory.mktemp("mixed")
    img = Image.fromarray(astronaut)
    img.save(d / "00-astronaut.jpg", quality=92)
    open(d / "01-junk.jpg", "wb").write(b"not an image at all")
    img.resize((256, 256)).save(d / "02-small.png")
    Image.new("RGB", (200, 150), (90, 140, 200)).save(d / "03-sky.png")
    img.crop((150, 40, 290, 200)).save(d / "04-tight.jpg", quality=95)
    img.transpose(Image.Transpose.FLIP_LEFT_RIGHT).rotate(15).save(d / "05-rotated.webp")
    img.resize((900, 900)).save(d / "06-large.jpg", quality=90)
    return d


def _paths(folder):
    return [str(p) for p in sorted(folder.iterdir())]


def _same(a: F.ImageResult, b: F.ImageResult) -> None:
    assert a.rows == b.rows
    assert len(a.crops) == len(b.crops)
    for x, y in zip(a.crops, b.crops, strict=True):
        assert np.array_equal(x, y)


@pytest.mark.parametrize("faces", ["subject", "all"])
@pytest.mark.parametrize("group", [1, 2, 16])
def test_groups_give_the_results_of_one_image_at_a_time(mixed_folder, monkeypatch, faces, group):
    contract = resolve_model(None, task="quality").contract
    opts = FaceOptions(faces=faces)
    det = RetinaFace()
    paths = _paths(mixed_folder)
    one_by_one = [F.process_image(p, contract, opts, det) for p in paths]
    monkeypatch.setattr(F, "GROUP_IMAGES", group)
    grouped = F.process_images([(p, None) for p in paths], contract, opts, det)
    assert len(grouped) == len(paths)
    for a, b in zip(one_by_one, grouped, strict=True):
        _same(a, b)
    statuses = [r.rows[0]["status"] for r in grouped]
    assert statuses[1] == schema.UNREADABLE and statuses[3] == schema.NO_FACE
    assert statuses[4] == schema.OK  # the tight crop: the padded retry inside a group finds it


def test_a_pixel_budget_closes_groups_and_changes_nothing(mixed_folder, monkeypatch):
    contract = resolve_model(None, task="quality").contract
    det = RetinaFace()
    paths = _paths(mixed_folder)
    before = F.process_images([(p, None) for p in paths], contract, FaceOptions(), det)
    monkeypatch.setattr(F, "GROUP_PIXELS", 1)  # every image closes its group
    after = F.process_images([(p, None) for p in paths], contract, FaceOptions(), det)
    for a, b in zip(before, after, strict=True):
        _same(a, b)


def test_an_image_failing_in_a_stage_becomes_its_error_row_and_the_group_goes_on(mixed_folder, monkeypatch):
    contract = resolve_model(None, task="quality").contract
    det = RetinaFace()
    paths = _paths(mixed_folder)
    good = F.process_images([(p, None) for p in paths], contract, FaceOptions(), det)
    real = F.align_face

    def flaky(image, landmarks, c):
        if image.size == (256, 256):  # 02-small.png only
            raise RuntimeError("a bug in alignment")
        return real(image, landmarks, c)

    monkeypatch.setattr(F, "align_face", flaky)
    res = F.process_images([(p, None) for p in paths], contract, FaceOptions(), det)
    assert [r.rows[0]["status"] for r in res][2] == schema.ERROR
    assert res[2].rows[0]["error"] == "RuntimeError: a bug in alignment" and not res[2].crops
    assert res[2].rows[0]["width"] == 256  # what was known of the file is kept
    for i in (0, 1, 3, 4, 5, 6):
        _same(good[i], res[i])


def test_the_batch_size_changes_no_value(face_folder):
    tables = {b: facequal.score([face_folder], jobs=1, batch_size=b) for b in (1, 2, 3, 16)}
    ref = tables[16]
    assert sum(s == schema.OK for s in ref["status"].to_pylist()) >= 3
    for b, t in tables.items():
        assert t["quality"].to_pylist() == ref["quality"].to_pylist(), b
        assert t["quality_raw"].to_pylist() == ref["quality_raw"].to_pylist(), b


def test_many_faces_in_one_call_get_the_values_of_one_face_at_a_time():
    # More crops than one conversion block (a crowd photo), in batches that do not divide it.
    from facequal.models.zoo import CONVERT_BLOCK, OnnxModel, resolve_model

    spec = resolve_model("lightqnet-dm025")
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, size=(2 * CONVERT_BLOCK + 13, 96, 96, 3), dtype=np.uint8)
    one = OnnxModel(spec, threads=1, batch_size=1)
    want = np.concatenate([one.run(crops[i:i + 1]) for i in range(len(crops))])
    for b in (1, 2, 7, CONVERT_BLOCK, 3 * CONVERT_BLOCK):
        got = OnnxModel(spec, threads=1, batch_size=b).run(crops)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    assert OnnxModel(spec, threads=1).run(crops[:0]).shape == (0,)
