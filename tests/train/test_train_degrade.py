"""Degradations, border bands and the canonical framing shared by teacher and student."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from facequal.contract import Contract
from facequal.pipeline.align import align_face
from facequal.train import degrade
from facequal.train.framing import (
    canonical_framing,
    crop_template,
    framing_transform,
    hflip_landmarks,
    student_contract,
    template_misfit,
)

# dlib's 150x150 framing (as facequal.models.dlib_resnet.DLIB_CONTRACT), restated here so these
# tests do not depend on the embedding module.
TEACHER = Contract(name="teacher", task="embedding", output_name="embedding", output="embedding",
                   mean=(122.782, 117.001, 104.298), std=(256.0, 256.0, 256.0),
                   template=((48.17, 45.28), (102.12, 44.64), (73.69, 79.18), (53.32, 106.21),
                             (96.90, 105.76)),
                   warp_size=(150, 150), crop_size=(150, 150))


def _face_image(seed: int = 0, size: int = 300) -> tuple[Image.Image, np.ndarray]:
    """A smooth synthetic 'face' image and five landmarks on it (slightly rotated)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    img = np.stack([128 + 60 * np.sin(xx / 17.0 + c) * np.cos(yy / 23.0 - c) for c in range(3)], axis=2)
    img += rng.normal(0, 1, img.shape)
    tmpl = crop_template(TEACHER)
    ang = np.deg2rad(8.0)
    rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    lm = (tmpl - 75) @ rot.T * 1.2 + size / 2
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)), lm


def _crop(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(120, 110, 3), dtype=np.uint8)


def test_operations_keep_shape_and_dtype_and_do_something() -> None:
    img = np.asarray(_face_image()[0])[:120, :110].copy()
    img[::2, ::2] = 255 - img[::2, ::2]  # some fine detail for the blur to remove
    rng = np.random.default_rng(0)
    outs = {
        "blur": degrade.gaussian_blur(img, 3.0),
        "rescale": degrade.rescale(img, 0.2),
        "noise": degrade.add_noise(img, 20.0, rng),
        "jpeg": degrade.jpeg(img, 5),
        "under": degrade.exposure(img, 0.3),
        "over": degrade.exposure(img, 3.0),
        "occlude": degrade.occlude(img, (10, 10, 50, 40), "black", rng),
    }
    for name, out in outs.items():
        assert out.shape == img.shape and out.dtype == np.uint8, name
        assert np.abs(out.astype(int) - img).mean() > 0.5, name
    hf = lambda a: np.abs(np.diff(a.astype(float), axis=1)).mean()  # noqa: E731
    assert hf(outs["blur"]) < 0.5 * hf(img)
    assert outs["under"].mean() < img.mean() < outs["over"].mean()
    assert (outs["occlude"][10:40, 10:50] == 0).all()


def test_random_degradation_is_seeded_and_occlusions_stay_in_the_face() -> None:
    img = _crop()
    face = (30.0, 30.0, 80.0, 90.0)
    a, opa = degrade.random_degradation(img, np.random.default_rng(5), face)
    b, opb = degrade.random_degradation(img, np.random.default_rng(5), face)
    assert np.array_equal(a, b) and opa == opb and 1 <= len(opa) <= 3
    seen = set()
    for seed in range(60):
        _, ops = degrade.random_degradation(img, np.random.default_rng(seed), face)
        for op in ops:
            seen.add(op["op"])
            if op["op"] == "occlusion":
                x0, y0, x1, y1 = op["box"]
                assert face[0] <= (x0 + x1) / 2 <= face[2] and face[1] <= (y0 + y1) / 2 <= face[3]
    assert seen == {"blur", "rescale", "noise", "jpeg", "exposure", "occlusion"}


def test_border_bands_edge_and_black() -> None:
    img = _crop(1)
    out, done = degrade.border_bands(img, np.random.default_rng(0), p_side=1.0, modes=("edge",))
    assert set(done) == {"left", "right", "top", "bottom", "mode"}
    c = done["left"]
    assert (out[:, :c] == out[:, c:c + 1]).all()   # replicated streaks
    out2, done2 = degrade.border_bands(img, np.random.default_rng(0), p_side=1.0, modes=("black",))
    assert (out2[: done2["top"]] == 0).all()
    same, none = degrade.border_bands(img, np.random.default_rng(0), p_side=0.0)
    assert none == {} and np.array_equal(same, img)


def test_framing_transform_and_canvas() -> None:
    student = student_contract()
    t2s = framing_transform(TEACHER, student)
    assert 0.5 < np.sqrt(abs(np.linalg.det(t2s[:, :2]))) < 0.65  # the student frame is wider
    assert template_misfit(TEACHER, student) < 2.5                # px at 96: the templates nearly agree
    fr = canonical_framing(TEACHER, student)
    w, h = fr.size
    x0, y0, x1, y1 = fr.student_box
    assert x0 >= 0 and y0 >= 0 and x1 <= w and y1 <= h           # the canvas holds the student window
    ox, oy = fr.teacher_offset
    assert ox >= 0 and oy >= 0 and ox + 150 <= w and oy + 150 <= h


def test_teacher_crop_is_exact_and_student_crop_matches_direct_alignment() -> None:
    img, lm = _face_image()
    student = student_contract()
    fr = canonical_framing(TEACHER, student)
    canon = align_face(img, lm, fr.contract)
    assert canon.shape == (fr.size[1], fr.size[0], 3)
    # the same warp up to floating-point rounding in the matrix: at most one grey level, rarely
    diff = np.abs(fr.teacher_crop(canon).astype(int) - align_face(img, lm, TEACHER))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
    derived = fr.student_crop(canon).astype(float)
    direct = align_face(img, lm, student).astype(float)
    assert derived.shape == direct.shape == (96, 96, 3)
    # two interpolations and the templates' small misfit: close, not equal
    assert np.abs(derived - direct)[8:-8, 8:-8].mean() < 6.0


def test_hflip_landmarks() -> None:
    lm = np.array([[30, 40], [70, 41], [50, 60], [35, 80], [65, 81]], dtype=float)
    f = hflip_landmarks(lm, 100)
    assert np.allclose(f[0], [99 - 70, 41]) and np.allclose(f[1], [99 - 30, 40])
    assert np.allclose(f[3], [99 - 65, 81]) and np.allclose(hflip_landmarks(f, 100), lm)


def test_rejects_non_uint8() -> None:
    with pytest.raises(ValueError):
        degrade.gaussian_blur(np.zeros((4, 4, 3), dtype=np.float32), 1.0)
