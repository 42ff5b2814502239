"""Synthetic head turns (yaw) of a canonical face crop, for training on large pose.

A frontal face is treated as the front of a vertical cylinder through the midpoint of the eyes,
of radius ``radius_per_eyes`` inter-ocular distances (a head is about 2.4 of them wide). Turning
it by ``angle`` degrees moves a surface point at horizontal offset ``u`` to ``R sin(asin(u/R) +
angle)``: one side of the face is compressed towards the limb and partly hidden, the other
widened, with the side of the head coming into view. The turned face is then re-aligned the way
the pipeline aligns a real one, by a least-squares similarity of its moved five points onto the
template, so the crop is zoomed and shifted as a real turned face's crop would be.

Only an approximation: the nose does not stand out of the cylinder, so it occludes nothing. What a
turn costs the recogniser is measured, not assumed: the cache builder cuts the teacher's input
from the turned crop too, so its labels say whether the teacher still matches the face.

Everything here is numpy (no torch, no Pillow), deterministic, and maps the canvas onto itself.
"""

from __future__ import annotations

import math

import numpy as np

from facequal.pipeline.align import apply_transform, invert_transform, similarity_transform

RADIUS_PER_EYES = 1.2


def _geometry(template: np.ndarray, radius_per_eyes: float) -> tuple[np.ndarray, float, float]:
    t = np.asarray(template, dtype=np.float64).reshape(5, 2)
    eyes = float(np.linalg.norm(t[1] - t[0]))
    if eyes <= 0 or radius_per_eyes <= 0:
        raise ValueError("the template's eyes must be apart and the radius positive")
    return t, float((t[0, 0] + t[1, 0]) / 2), radius_per_eyes * eyes


def turned_offset(u: np.ndarray, radius: float, angle: float) -> np.ndarray:
    """Where a surface point at horizontal offset ``u`` from the axis appears after the turn
    (``angle`` in radians; points must be visible afterwards)."""
    s = np.clip(np.asarray(u, dtype=np.float64) / radius, -1.0, 1.0)
    return radius * np.sin(np.arcsin(s) + angle)


def source_offset(v: np.ndarray, radius: float, angle: float) -> np.ndarray:
    """The inverse map: for an offset ``v`` in the turned image, the offset in the original that
    shows there. On the face, the cylinder's turn. Past the limb on the side that comes into view,
    the side of the head continues outwards at one radius per radian (monotonic, nothing
    folded); past the limb on the side that turns away, the silhouette: the original beyond the
    head's edge (the background), the hidden part of the face skipped."""
    v = np.asarray(v, dtype=np.float64)
    phi = np.arcsin(np.clip(v / radius, -1.0, 1.0)) - angle
    inner = np.abs(phi) <= math.pi / 2
    beyond = np.sign(phi) * radius * (1.0 + (np.abs(phi) - math.pi / 2))
    u = np.where(inner, radius * np.sin(np.clip(phi, -math.pi / 2, math.pi / 2)), beyond)
    outside = v - np.clip(v, -radius, radius)  # beyond the silhouette, by this much
    side = np.sign(angle) if angle else 1.0
    away = outside * side > 0  # on the side the face turns towards: background behind the limb
    return np.where(away, side * radius + outside, u + outside)


def turned_landmarks(template: np.ndarray, angle_deg: float,
                     radius_per_eyes: float = RADIUS_PER_EYES) -> np.ndarray:
    """The five points of the template's face after the turn, before re-alignment."""
    t, axis, radius = _geometry(template, radius_per_eyes)
    out = t.copy()
    out[:, 0] = axis + turned_offset(t[:, 0] - axis, radius, math.radians(angle_deg))
    return out


def yaw_maps(shape: tuple[int, int], template: np.ndarray, angle_deg: float,
             radius_per_eyes: float = RADIUS_PER_EYES) -> tuple[np.ndarray, np.ndarray]:
    """For each pixel of the turned, re-aligned (H, W) crop, the (x, y) it samples in the original."""
    if not -75.0 <= angle_deg <= 75.0:
        raise ValueError(f"yaw angle {angle_deg} outside [-75, 75] degrees (the eyes would be hidden)")
    t, axis, radius = _geometry(template, radius_per_eyes)
    # the pipeline's alignment of the turned face: its moved points onto the template
    to_template = similarity_transform(turned_landmarks(t, angle_deg, radius_per_eyes), t)
    back = invert_transform(to_template)
    h, w = shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    q = apply_transform(back, np.stack([xs.ravel(), ys.ravel()], axis=1))
    x = axis + source_offset(q[:, 0] - axis, radius, math.radians(angle_deg))
    return x.reshape(h, w), q[:, 1].reshape(h, w)


def bilinear(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Sample an (H, W, C) uint8 image at float pixel coordinates (edge pixels repeated)."""
    h, w = img.shape[:2]
    x = np.clip(x, 0.0, w - 1.0)
    y = np.clip(y, 0.0, h - 1.0)
    x0 = np.minimum(np.floor(x).astype(np.intp), w - 2)
    y0 = np.minimum(np.floor(y).astype(np.intp), h - 2)
    fx = (x - x0)[..., None]
    fy = (y - y0)[..., None]
    f = img.astype(np.float32)
    top = f[y0, x0] * (1 - fx) + f[y0, x0 + 1] * fx
    bottom = f[y0 + 1, x0] * (1 - fx) + f[y0 + 1, x0 + 1] * fx
    return np.clip(np.rint(top * (1 - fy) + bottom * fy), 0, 255).astype(np.uint8)


def synthetic_yaw(crop: np.ndarray, template: np.ndarray, angle_deg: float,
                  radius_per_eyes: float = RADIUS_PER_EYES) -> np.ndarray:
    """The (H, W, 3) uint8 ``crop`` whose face sits on ``template`` (five points, crop pixels),
    turned by ``angle_deg`` (positive: the face's points move towards the image's right) and
    re-aligned onto the same template."""
    crop = np.asarray(crop)
    if crop.dtype != np.uint8 or crop.ndim != 3 or crop.shape[2] != 3:
        raise ValueError(f"need an (H, W, 3) uint8 crop, got {crop.shape} {crop.dtype}")
    x, y = yaw_maps(crop.shape[:2], template, angle_deg, radius_per_eyes)
    return bilinear(crop, x, y)
