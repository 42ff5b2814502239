"""Why a face scores low: cheap per-face measures from what the pipeline already has (the five
landmarks and the aligned crop), written beside ``quality`` in every ``ok`` row.

* ``yaw``, ``pitch``, ``roll`` (degrees): head pose from the five landmarks in closed form (a
  weak-perspective reading of a mean face, no fitted model). Signs, in the image as shown:
  ``roll`` > 0 when the face is turned clockwise in the image plane (the eye on the image's right
  is lower); ``yaw`` > 0 when the nose points to the image's right; ``pitch`` > 0 when the face
  looks up. Frontal faces read about 0; profiles read large ``|yaw|`` (the five-point detector
  collapses the far eye onto the near one, so ``|yaw|`` saturates below 90).
* ``sharpness``: variance of the Laplacian of the crop's grey levels over the face region,
  divided by their variance: a focus measure that falls as blur grows and does not change when
  the contrast is scaled.
* ``brightness``: mean grey level (0-255) of the face region of the aligned crop, not of the
  whole image. ``contrast``: RMS contrast of that region, the standard deviation of its grey
  levels divided by their mean (no unit; a darker photo of the same scene keeps its contrast, a
  washed-out or hazy one loses it).

``eye_distance`` (pixels between the eye landmarks in the original image) is computed with the
detection (:attr:`facequal.pipeline.detect.Face.inter_eye`).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

# Weak-perspective ratios of a mean adult face (anthropometric averages): the nose tip stands
# about 0.7 half-inter-ocular distances in front of the eye plane, and the eye-to-mouth height is
# about 1.9 times the nose's depth. They turn the nose's offsets into angles.
NOSE_DEPTH_PER_HALF_EYES = 0.7
FACE_HEIGHT_PER_NOSE_DEPTH = 1.9
# Where the detector puts the nose tip between the eye line (0) and the mouth line (1) on a face
# that looks straight ahead: the median over training photos (600 LFW training people's, median
# 0.544, and 600 CFP training frontal photos, 0.599). The alignment template's 0.496 is not it:
# the template is a normalised target, not the detector's average face.
NOSE_HEIGHT_FRONTAL = 0.57

DIAGNOSTIC_COLUMNS = ("yaw", "pitch", "roll", "sharpness", "brightness", "contrast")


def head_pose(landmarks: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees from five (x, y) landmarks: eyes (left, right in the image),
    nose tip, mouth corners. NaN for degenerate points (eyes on top of each other)."""
    lm = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    le, re, nose = lm[0], lm[1], lm[2]
    eye_mid, mouth_mid = (le + re) / 2.0, (lm[3] + lm[4]) / 2.0
    d = re - le
    roll = math.degrees(math.atan2(d[1], d[0]))
    # Undo the roll: the eye line horizontal, then read the nose against the face's axes.
    c, s = math.cos(math.radians(roll)), math.sin(math.radians(roll))
    rot = np.array([[c, s], [-s, c]])
    n, m = rot @ (nose - eye_mid), rot @ (mouth_mid - eye_mid)
    half_eyes = float(np.hypot(*d)) / 2.0
    height = float(m[1])
    if not (half_eyes > 1e-6 and height > 1e-6):
        return math.nan, math.nan, roll
    # Horizontal: the nose against the face's midline (eye centre to mouth centre), at its height.
    midline_x = m[0] * (n[1] / height)
    yaw = math.degrees(math.atan((n[0] - midline_x) / (half_eyes * NOSE_DEPTH_PER_HALF_EYES)))
    # Vertical: the nose rises toward the eyes when the face looks up.
    t = n[1] / height
    pitch = math.degrees(math.atan((NOSE_HEIGHT_FRONTAL - t) * FACE_HEIGHT_PER_NOSE_DEPTH))
    return yaw, pitch, roll


def _face_mask(h: int, w: int) -> np.ndarray:
    """The face region of an aligned crop: an ellipse over the central part (cheeks to chin,
    brows to mouth), leaving out the background at the corners."""
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx = 0.55 * h, 0.5 * w
    return ((yy - cy) / (0.42 * h)) ** 2 + ((xx - cx) / (0.36 * w)) ** 2 <= 1.0


@lru_cache(maxsize=8)
def _face_index(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices of the face region in an (h, w) crop and in its (h-2, w-2) interior: a take
    with them picks the same pixels, in the same order, as the boolean mask, without a nonzero pass."""
    mask = _face_mask(h, w)
    return np.flatnonzero(mask), np.flatnonzero(mask[1:-1, 1:-1])


def image_measures(crop: np.ndarray) -> tuple[float, float, float]:
    """(sharpness, brightness, contrast) of an aligned (H, W, 3) uint8 crop's face region."""
    g = np.asarray(crop, dtype=np.float32)
    g = g @ np.array([0.299, 0.587, 0.114], dtype=np.float32) if g.ndim == 3 else g
    h, w = g.shape
    inside, interior = _face_index(h, w)
    face = g.ravel().take(inside)
    brightness = float(face.mean())
    var = float(face.var())
    # The 4-neighbour Laplacian, summed in place in the order (((l + r) + u) + d) - 4c.
    lap = g[1:-1, :-2] + g[1:-1, 2:]
    lap += g[:-2, 1:-1]
    lap += g[2:, 1:-1]
    lap -= 4.0 * g[1:-1, 1:-1]
    lap_var = float(lap.ravel().take(interior).var())
    # A flat patch has no focus to measure: 0, not a division by zero.
    sharpness = lap_var / var if var > 1e-3 else 0.0
    contrast = math.sqrt(var) / brightness if brightness > 1e-3 else 0.0  # a black face: none to measure
    return sharpness, brightness, contrast


def face_diagnostics(crop: np.ndarray | None, landmarks: np.ndarray | None) -> dict[str, float | None]:
    """The diagnostic columns of one face (None where the input for a measure is missing)."""
    out: dict[str, float | None] = dict.fromkeys(DIAGNOSTIC_COLUMNS)
    if landmarks is not None:
        yaw, pitch, roll = head_pose(landmarks)
        out.update(yaw=None if math.isnan(yaw) else yaw, pitch=None if math.isnan(pitch) else pitch, roll=roll)
    if crop is not None:
        out["sharpness"], out["brightness"], out["contrast"] = image_measures(crop)
    return out
