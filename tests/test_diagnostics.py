"""The per-face diagnostics move the way their documentation says, on synthetic inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image, ImageFilter

from facequal.pipeline.diagnostics import NOSE_HEIGHT_FRONTAL, face_diagnostics, head_pose, image_measures

# The five-point template facequal aligns to (eyes, nose tip, mouth corners) in a 112 px crop.
TEMPLATE = np.array([[38.29, 51.70], [73.53, 51.50], [56.03, 71.74], [41.55, 92.37], [70.73, 92.20]])


def _rotate(points: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate about the points' centre by ``degrees`` clockwise as shown (image y points down)."""
    t = math.radians(degrees)
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    c = points.mean(axis=0)
    return (points - c) @ rot.T + c


def _mirror(points: np.ndarray, width: float = 112.0) -> np.ndarray:
    """The landmarks of the mirrored image, in the detector's order (left, right in the image)."""
    m = points.copy()
    m[:, 0] = width - m[:, 0]
    return m[[1, 0, 2, 4, 3]]


def test_a_face_looking_straight_ahead_reads_zero():
    lm = TEMPLATE.copy()
    eye_y, mouth_y = lm[:2, 1].mean(), lm[3:, 1].mean()
    lm[2, 1] = eye_y + NOSE_HEIGHT_FRONTAL * (mouth_y - eye_y)  # the detector's straight-ahead nose
    yaw, pitch, roll = head_pose(lm)
    assert abs(yaw) < 2 and abs(pitch) < 0.5 and abs(roll) < 1


@pytest.mark.parametrize("angle", [-60, -25, -5, 5, 25, 60])
def test_roll_follows_in_plane_rotation_and_leaves_yaw_and_pitch(angle):
    yaw, pitch, roll = head_pose(_rotate(TEMPLATE, angle))
    assert roll == pytest.approx(angle, abs=0.5)
    y0, p0, _ = head_pose(TEMPLATE)
    assert yaw == pytest.approx(y0, abs=0.5) and pitch == pytest.approx(p0, abs=0.5)


def test_yaw_grows_as_the_nose_moves_to_the_image_right_and_flips_in_a_mirror():
    yaws = []
    for shift in (0, 3, 6, 9, 12):
        lm = TEMPLATE.copy()
        lm[2, 0] += shift
        yaws.append(head_pose(lm)[0])
    assert all(b > a for a, b in zip(yaws, yaws[1:], strict=False))
    assert yaws[-1] > 30
    lm = TEMPLATE.copy()
    lm[2, 0] += 9
    assert head_pose(_mirror(lm))[0] == pytest.approx(-head_pose(lm)[0], abs=0.5)


def test_pitch_is_positive_when_the_nose_rises_toward_the_eyes():
    up, down = TEMPLATE.copy(), TEMPLATE.copy()
    up[2, 1] -= 8
    down[2, 1] += 8
    assert head_pose(up)[1] > 10 and head_pose(down)[1] < -10


def test_degenerate_landmarks_give_no_yaw_or_pitch():
    lm = np.tile([[50.0, 50.0]], (5, 1))
    d = face_diagnostics(None, lm)
    assert d["yaw"] is None and d["pitch"] is None
    assert d["sharpness"] is None and d["brightness"] is None


def _textured_crop(seed: int = 0, size: int = 112) -> np.ndarray:
    """A crop with detail at several scales (noise upsampled from coarse to fine)."""
    rng = np.random.default_rng(seed)
    out = np.zeros((size, size), np.float32)
    for cells in (4, 14, 56):
        noise = rng.random((cells, cells)).astype(np.float32)
        out += np.asarray(Image.fromarray(noise).resize((size, size), Image.Resampling.BICUBIC))
    out = (out - out.min()) / (out.max() - out.min()) * 200 + 28
    return np.repeat(out.astype(np.uint8)[:, :, None], 3, axis=2)


def test_sharpness_falls_strictly_as_blur_grows():
    img = Image.fromarray(_textured_crop())
    values = [image_measures(np.asarray(img.filter(ImageFilter.GaussianBlur(r))))[0]
              for r in (0, 0.5, 1, 2, 4)]
    assert all(b < a for a, b in zip(values, values[1:], strict=False)), values


def test_lowered_contrast_lowers_contrast_but_not_sharpness_and_darkening_keeps_both():
    crop = _textured_crop().astype(np.float32)
    s_full, b_full, c_full = image_measures(crop.astype(np.uint8))
    s_low, b_low, c_low = image_measures(np.round((crop - 128) * 0.5 + 128).astype(np.uint8))
    assert s_low == pytest.approx(s_full, rel=0.05)
    assert c_low < 0.6 * c_full
    s_dark, b_dark, c_dark = image_measures(np.round(crop * 0.4).astype(np.uint8))
    assert b_dark == pytest.approx(0.4 * b_full, rel=0.02)
    assert c_dark == pytest.approx(c_full, rel=0.03) and s_dark == pytest.approx(s_full, rel=0.05)


def test_brightness_falls_strictly_as_the_face_darkens():
    crop = _textured_crop().astype(np.float32)
    values = [image_measures(np.round(crop * f).astype(np.uint8))[1] for f in (1.0, 0.8, 0.6, 0.4, 0.2)]
    assert all(b < a for a, b in zip(values, values[1:], strict=False))


def test_measures_read_the_face_region_not_the_background():
    crop = np.full((112, 112, 3), 120, np.uint8)
    bright_corners = crop.copy()
    bright_corners[:12, :12] = 255
    bright_corners[-12:, -12:] = 255
    assert image_measures(bright_corners)[1] == pytest.approx(image_measures(crop)[1])
    # a flat face has neither contrast nor focus to measure
    assert image_measures(crop)[0] == 0.0 and image_measures(crop)[2] == 0.0


@pytest.fixture(scope="module")
def scorer():
    import facequal

    return facequal.Scorer()


def test_a_real_face_rotated_and_mirrored_moves_roll_and_yaw_the_documented_way(scorer, astronaut):
    img = Image.fromarray(astronaut)
    base = scorer.score_image(img)[0]
    # PIL rotates counter-clockwise for positive angles: -20 turns the face 20 degrees clockwise
    turned = scorer.score_image(img.rotate(-20, resample=Image.Resampling.BICUBIC, fillcolor=(128, 128, 128)))[0]
    assert turned["roll"] - base["roll"] == pytest.approx(20, abs=3)
    mirrored = scorer.score_image(img.transpose(Image.Transpose.FLIP_LEFT_RIGHT))[0]
    assert mirrored["roll"] == pytest.approx(-base["roll"], abs=2)
    assert abs(base["yaw"]) < 10 and abs(mirrored["yaw"]) < 10  # a frontal portrait, either way round
    blurred = scorer.score_image(img.filter(ImageFilter.GaussianBlur(4)))[0]
    dark = scorer.score_image(Image.fromarray((astronaut * 0.4).astype(np.uint8)))[0]
    assert blurred["sharpness"] < 0.5 * base["sharpness"]
    assert dark["brightness"] < 0.6 * base["brightness"]
    assert base["eye_distance"] > 20
