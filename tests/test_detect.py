"""Detector maths: priors, box and landmark decoding, NMS; and the real model on a real face."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from facequal.pipeline.detect import (
    Face,
    RetinaFace,
    decode_boxes,
    decode_landmarks,
    nms,
    pick_centred,
    pick_largest,
    priors,
)


def test_priors_count_and_order():
    p = priors(64, 96)
    # strides 8/16/32 -> 8x12, 4x6, 2x3 cells, two sizes each
    assert p.shape == ((8 * 12 + 4 * 6 + 2 * 3) * 2, 4)
    # first cell, both sizes: centre (4/96, 4/64), sizes 16 and 32 pixels
    np.testing.assert_allclose(p[0], [4 / 96, 4 / 64, 16 / 96, 16 / 64], rtol=1e-6)
    np.testing.assert_allclose(p[1], [4 / 96, 4 / 64, 32 / 96, 32 / 64], rtol=1e-6)
    # second cell moves along x
    np.testing.assert_allclose(p[2][:2], [12 / 96, 4 / 64], rtol=1e-6)
    # the stride-32 level starts after the two finer ones
    start = (8 * 12 + 4 * 6) * 2
    np.testing.assert_allclose(p[start], [16 / 96, 16 / 64, 256 / 96, 256 / 64], rtol=1e-6)


def test_decode_zero_regression_gives_prior_box():
    prior = np.array([[0.5, 0.5, 0.2, 0.4]])
    box = decode_boxes(np.zeros((1, 4)), prior)
    np.testing.assert_allclose(box, [[0.4, 0.3, 0.6, 0.7]])
    lm = decode_landmarks(np.zeros((1, 10)), prior)
    np.testing.assert_allclose(lm, np.full((1, 5, 2), 0.5))


def test_decode_applies_variances():
    prior = np.array([[0.5, 0.5, 0.2, 0.2]])
    loc = np.array([[1.0, 0.0, np.log(2) / 0.2, 0.0]])
    box = decode_boxes(loc, prior)
    # centre x moves by 1 * 0.1 * 0.2 = 0.02; width doubles to 0.4
    np.testing.assert_allclose(box, [[0.52 - 0.2, 0.4, 0.52 + 0.2, 0.6]], atol=1e-9)


def test_nms_suppresses_overlaps_and_is_stable():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10]], float)
    scores = np.array([0.9, 0.8, 0.7, 0.9])
    keep = nms(boxes, scores, 0.4)
    assert keep.tolist() == [0, 2]


def test_pick_largest_breaks_ties_by_centre():
    lm = np.zeros((5, 2))
    a = Face(box=np.array([0, 0, 10, 10.0]), score=0.9, landmarks=lm)
    b = Face(box=np.array([45, 45, 55, 55.0]), score=0.8, landmarks=lm)
    c = Face(box=np.array([0, 0, 5, 5.0]), score=0.99, landmarks=lm)
    assert pick_largest([a, b, c], 100, 100) == [b]


def test_pick_centred_prefers_the_subject_over_a_larger_bystander_at_the_edge():
    lm = np.zeros((5, 2))
    subject = Face(box=np.array([85, 80, 165, 170.0]), score=0.9, landmarks=lm)     # 80x90, centred
    bystander = Face(box=np.array([0, 60, 100, 180.0]), score=0.99, landmarks=lm)   # 100x120, at the edge
    small_centre = Face(box=np.array([120, 120, 130, 130.0]), score=0.9, landmarks=lm)
    assert pick_largest([bystander, subject, small_centre], 250, 250) == [bystander]
    assert pick_centred([bystander, subject, small_centre], 250, 250) == [subject]
    assert pick_centred([], 250, 250) == []


def test_the_default_face_is_the_subject_not_a_larger_bystander(tmp_path):
    """Two faces side by side, the smaller one in the middle: the default (``subject``, formerly
    ``center``) keeps it, ``largest`` does not."""
    from skimage import data  # scikit-image ships the public-domain NASA astronaut photo

    import facequal

    face = Image.fromarray(data.astronaut()).crop((140, 20, 300, 200))      # the astronaut's head
    canvas = Image.new("RGB", (600, 400), (90, 90, 90))
    canvas.paste(face.resize((120, 135)), (240, 130))                      # centred, smaller
    canvas.paste(face.resize((190, 214)), (400, 10))                       # larger, at the edge
    canvas.save(tmp_path / "two.png")
    rows = {mode: facequal.score([tmp_path / "two.png"], jobs=1, **({} if mode == "default" else {"faces": mode}))
            .to_pylist()[0] for mode in ("default", "largest", "subject", "center")}
    assert all(r["n_faces"] == 2 for r in rows.values())
    centre_x = {m: (r["bbox"][0] + r["bbox"][2]) / 2 for m, r in rows.items()}
    assert 240 < centre_x["default"] < 360 and centre_x["largest"] > 400
    assert centre_x["subject"] == centre_x["center"] == centre_x["default"]


def test_detects_the_astronaut_with_plausible_landmarks(astronaut):
    img = Image.fromarray(astronaut)
    faces = RetinaFace().detect(img)
    assert len(faces) >= 1
    f = faces[0]
    assert f.score > 0.9
    le, re, nose, lm, rm = f.landmarks
    assert le[0] < re[0] and lm[0] < rm[0]               # image left / right order
    assert le[1] < nose[1] < (lm[1] + rm[1]) / 2          # eyes above nose above mouth
    assert f.box[0] < nose[0] < f.box[2] and f.box[1] < nose[1] < f.box[3]


def test_downscaled_detection_maps_back_to_full_resolution(astronaut):
    img = Image.fromarray(astronaut)
    full = RetinaFace(det_size=0).detect(img)[0]
    small = RetinaFace(det_size=256).detect(img)[0]
    # Detector noise at half resolution is a few pixels; a mapping error would be ~100 px.
    assert np.abs(full.landmarks - small.landmarks).max() < 0.25 * full.inter_eye


def test_tight_crop_found_through_padding_retry(astronaut):
    img = Image.fromarray(astronaut)
    f = RetinaFace().detect(img)[0]
    x1, y1, x2, y2 = f.box
    tight = img.crop((int(x1) + 5, int(y1) + 10, int(x2) - 5, int(y2) - 5))
    found = RetinaFace().detect(tight)
    assert found, "the padded retry should find a face that fills the frame"


def test_same_sized_images_get_a_fixed_size_session_with_identical_faces(astronaut):
    """After SPECIALISE_AFTER images of one size the detector plans its graph for that size;
    the faces it finds must not change, and other sizes keep using the general session."""
    from facequal.models.retinaface import retinaface_session

    built = []

    def fixed(shape):
        built.append(shape)
        return retinaface_session(shape=shape)

    general = RetinaFace()
    specialised = RetinaFace(fixed_session=fixed)
    img = Image.fromarray(astronaut).resize((250, 250))
    for i in range(RetinaFace.SPECIALISE_AFTER + 2):
        shifted = img.rotate(i, fillcolor=(0, 0, 0))
        a, b = general.detect(shifted), specialised.detect(shifted)
        assert len(a) == len(b) >= 1
        for fa, fb in zip(a, b, strict=True):
            np.testing.assert_allclose(fa.landmarks, fb.landmarks, atol=1e-4)
    assert built == [(256, 256)]
    specialised.detect(Image.fromarray(astronaut).resize((300, 200)))   # another size: general session
    assert built == [(256, 256)]


def _greedy_nms(boxes, scores, iou):
    """Textbook greedy NMS, one box at a time: what nms must return on every input."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])  # sorted() is stable
    keep = []
    for i in order:
        ok = True
        for j in keep:
            w = max(0.0, min(boxes[i][2], boxes[j][2]) - max(boxes[i][0], boxes[j][0]))
            h = max(0.0, min(boxes[i][3], boxes[j][3]) - max(boxes[i][1], boxes[j][1]))
            inter = w * h
            union = ((boxes[i][2] - boxes[i][0]) * (boxes[i][3] - boxes[i][1])
                     + (boxes[j][2] - boxes[j][0]) * (boxes[j][3] - boxes[j][1]) - inter)
            if union > 0 and inter / union > iou:
                ok = False
                break
        if ok:
            keep.append(i)
    return keep


@pytest.mark.parametrize("n", [1, 30, 255, 600])  # both the all-at-once and the row-by-row forms
def test_nms_keeps_what_greedy_suppression_keeps(n):
    rng = np.random.default_rng(n)
    centre = rng.uniform(0, 200, (n, 2))
    size = rng.uniform(5, 60, (n, 2))
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
    scores = np.round(rng.uniform(0, 1, n), 2)  # ties: the earlier box first
    assert nms(boxes, scores, 0.4).tolist() == _greedy_nms(boxes.tolist(), scores.tolist(), 0.4)
