"""Similarity fit and warp: known transforms are recovered, landmarks land on the template."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from facequal.contract import ARCFACE_112, Contract, scaled_template, to_tensor
from facequal.pipeline.align import (
    align_face,
    alignment_matrix,
    apply_transform,
    resize_bilinear_noaa,
    similarity_transform,
    warp_affine,
)

CONTRACT = Contract(name="t", template=scaled_template(ARCFACE_112, 96 / 112), warp_size=(96, 96),
                    crop_size=(96, 96))


@settings(max_examples=60, deadline=None)
@given(angle=st.floats(-3.0, 3.0), scale=st.floats(0.05, 20.0), tx=st.floats(-500, 500),
       ty=st.floats(-500, 500))
def test_similarity_recovers_known_transform(angle, scale, tx, ty):
    src = np.array(ARCFACE_112, dtype=np.float64)
    c, s = np.cos(angle) * scale, np.sin(angle) * scale
    m_true = np.array([[c, -s, tx], [s, c, ty]])
    dst = apply_transform(m_true, src)
    m = similarity_transform(src, dst)
    np.testing.assert_allclose(m, m_true, atol=1e-6 * max(1.0, scale, abs(tx), abs(ty)))


def test_similarity_rejects_degenerate_points():
    import pytest

    with pytest.raises(ValueError):
        similarity_transform(np.zeros((5, 2)), np.ones((5, 2)))


def _dot_image(points: np.ndarray, size=(400, 300)) -> Image.Image:
    """A black image with a small bright blob at each point."""
    arr = np.zeros((size[1], size[0], 3), np.float64)
    yy, xx = np.mgrid[0:size[1], 0:size[0]]
    for x, y in points:
        arr += 255 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 2.0**2))[..., None]
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _blob_centres(crop: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Intensity-weighted centre of mass near each template point."""
    g = crop[..., 0].astype(np.float64)
    yy, xx = np.mgrid[0:g.shape[0], 0:g.shape[1]]
    out = []
    for tx, ty in template:
        w = g * (((xx - tx) ** 2 + (yy - ty) ** 2) < 6**2)
        out.append([(w * xx).sum() / w.sum(), (w * yy).sum() / w.sum()])
    return np.array(out)


def test_warped_landmarks_land_on_template():
    # Landmarks of a face rotated by 15 degrees, 2x larger than the template, somewhere in a photo.
    tpl = CONTRACT.template_array()
    ang = np.deg2rad(15)
    m = np.array([[2 * np.cos(ang), -2 * np.sin(ang), 120], [2 * np.sin(ang), 2 * np.cos(ang), 40]])
    pts = apply_transform(m, tpl)
    crop = align_face(_dot_image(pts), pts, CONTRACT)
    assert crop.shape == (96, 96, 3) and crop.dtype == np.uint8
    np.testing.assert_allclose(_blob_centres(crop, tpl), tpl, atol=1.0)


def test_large_face_is_antialiased():
    # A face 8x larger than the crop: supersampled warp must not alias a fine stripe pattern.
    stripes = np.zeros((1000, 1000, 3), np.uint8)
    stripes[:, ::2] = 255
    img = Image.fromarray(stripes)
    m = np.array([[0.1, 0, 0], [0, 0.1, 0]])
    out = np.asarray(warp_affine(img, m, (96, 96))).astype(float)
    assert abs(out[10:80, 10:80].mean() - 127.5) < 20
    assert out[10:80, 10:80].std() < 25


def test_alignment_matrix_maps_landmarks_to_crop_template():
    c = Contract(name="r", landmarks="eyes_mouth",
                 template=((54.704, 73.856), (105.04, 73.568), (80.192, 131.84)),
                 warp_size=(160, 160), crop_size=(96, 96), resize="bilinear_noaa")
    five = np.array([[100, 120], [160, 118], [130, 150], [108, 185], [152, 184]], float)
    m = alignment_matrix(five, c)
    got = apply_transform(m, c.select_landmarks(five))
    want = (c.template_array() + 0.5) * 0.6 - 0.5
    np.testing.assert_allclose(got, want, atol=2.0)


def test_resize_bilinear_noaa_matches_hand_values():
    a = np.array([[0, 100], [200, 255]], np.uint8)[..., None].repeat(3, axis=2)
    out = resize_bilinear_noaa(a, (4, 4))[..., 0]
    # cv2 INTER_LINEAR for 2->4: sample positions -0.25(clamped to 0), 0.25, 0.75, 1.25(clamped)
    np.testing.assert_allclose(out[0], [0, 25, 75, 100])
    np.testing.assert_allclose(out[:, 0], [0, 50, 150, 200])


def test_to_tensor_layouts_and_colour():
    crops = np.zeros((2, 4, 4, 3), np.uint8)
    crops[..., 0] = 255
    c = Contract(name="x", layout="NHWC", color="BGR", mean=(128, 128, 128), std=(128, 128, 128),
                 template=CONTRACT.template, warp_size=(4, 4), crop_size=(4, 4))
    t = to_tensor(crops, c)
    assert t.shape == (2, 4, 4, 3)
    assert np.allclose(t[..., 2], 127 / 128) and np.allclose(t[..., 0], -1.0)
    t2 = to_tensor(crops, CONTRACT)
    assert t2.shape == (2, 3, 4, 4)
