"""The framings of training: the student's contract, and one canonical crop for teacher and student.

Both networks' inputs derive from **one** (possibly degraded) canonical crop per face, so that a
degradation the student sees is the one the teacher labelled. The canonical crop is in the
teacher's framing and pixel scale, on a canvas enlarged so that it also holds the whole student
window (the ArcFace framing is wider than dlib's: at 96 px the student's crop spans about 170
teacher pixels), plus a margin:

- the teacher's 150x150 input is an integer slice of it (no resampling: the same pixels as
  ``align_face(image, landmarks, DLIB_CONTRACT)``, up to one grey level of rounding on rare pixels);
- the student's 96x96 input is cut from it with a fixed similarity, the least-squares fit of the
  teacher's five-point template onto the student's (both are templates of the same detector
  points, so at inference ``align_face(image, landmarks, student)`` gives the same framing up to
  the small misfit between the two templates' shapes, :func:`template_misfit`).

Everything here is numpy / Pillow (no torch), so the cache builder can use it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from facequal.contract import ARCFACE_112, Contract, scaled_template
from facequal.pipeline.align import apply_transform, invert_transform, similarity_transform, warp_affine

STUDENT_SIZE = 96
# (x - 127.5) / 128: symmetric around mid-grey, within (-1, 1).
STUDENT_MEAN = (127.5, 127.5, 127.5)
STUDENT_STD = (128.0, 128.0, 128.0)


def model_name(width: float, stem_stride: int = 1, members: int = 1, stem_channels: int | None = None) -> str:
    """``facequal-lightqnet-dm025``, ``...-dm025s2``, ``...-dm025s2c16``, ``...-dm025x4``: width,
    stem stride, stem filters when not the width's, ensemble size."""
    return (f"facequal-lightqnet-dm{round(width * 100):03d}" + ("s2" if stem_stride == 2 else "")
            + (f"c{stem_channels}" if stem_channels else "") + (f"x{members}" if members > 1 else ""))


def student_contract(width: float = 1.0, *, calibration: dict[str, list[float]] | None = None,
                     extra: dict | None = None, name: str | None = None, stem_stride: int = 1,
                     stem_channels: int | None = None) -> Contract:
    """The contract of our LightQNet: ArcFace five-point framing at 96 px, NCHW RGB, sigmoid output.

    The output ``quality`` [N, 1] is the sigmoid probability (``output="sigmoid"``); the optional
    ``calibration`` maps it to the calibrated quality. The default name says the width, and
    ``s2`` after it for a stride-2 stem (``facequal-lightqnet-dm025s2``).
    """
    return Contract(
        name=name or model_name(width, stem_stride, stem_channels=stem_channels),
        task="quality",
        input_name="input",
        output_name="quality",
        layout="NCHW",
        color="RGB",
        mean=STUDENT_MEAN,
        std=STUDENT_STD,
        landmarks="five",
        template=scaled_template(ARCFACE_112, STUDENT_SIZE / 112.0),
        warp_size=(STUDENT_SIZE, STUDENT_SIZE),
        crop_size=(STUDENT_SIZE, STUDENT_SIZE),
        resize="none",
        output="sigmoid",
        calibration=calibration,
        extra=dict(extra or {}),
    )


def crop_template(contract: Contract) -> np.ndarray:
    """The contract's five-point template in *crop* pixels (after any warp -> crop resize)."""
    if contract.landmarks != "five":
        raise ValueError(f"contract {contract.name!r}: training framings need a five-point template")
    t = contract.template_array()
    sx = contract.crop_size[0] / contract.warp_size[0]
    sy = contract.crop_size[1] / contract.warp_size[1]
    # half-pixel-centre resize, as facequal.pipeline.align.alignment_matrix
    return np.stack([(t[:, 0] + 0.5) * sx - 0.5, (t[:, 1] + 0.5) * sy - 0.5], axis=1)


def framing_transform(src: Contract, dst: Contract) -> np.ndarray:
    """2x3 similarity from ``src`` crop pixels to ``dst`` crop pixels (least squares on the templates)."""
    return similarity_transform(crop_template(src), crop_template(dst))


def template_misfit(src: Contract, dst: Contract) -> float:
    """Largest distance (``dst`` pixels) between ``dst``'s template and ``src``'s mapped onto it."""
    m = framing_transform(src, dst)
    return float(np.max(np.linalg.norm(apply_transform(m, crop_template(src)) - crop_template(dst), axis=1)))


@dataclass(frozen=True)
class CanonicalFraming:
    """A canvas in the teacher's framing that holds both the teacher's and the student's windows."""

    contract: Contract            # align_face(image, landmarks, contract) gives the canonical crop
    teacher_offset: tuple[int, int]   # (x, y): teacher crop = canonical[y:y+h, x:x+w]
    teacher_size: tuple[int, int]     # (w, h)
    student_matrix: np.ndarray        # 2x3, canonical pixels -> student crop pixels
    student_size: tuple[int, int]
    student_box: tuple[float, float, float, float]  # the student window in canonical pixels

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.contract.crop_size)  # type: ignore[return-value]

    def teacher_crop(self, canonical: np.ndarray) -> np.ndarray:
        """The teacher's input crop: an integer slice of the canonical crop."""
        x, y = self.teacher_offset
        w, h = self.teacher_size
        return canonical[y:y + h, x:x + w]

    def student_crop(self, canonical: np.ndarray) -> np.ndarray:
        """The student's input crop, warped from the canonical crop (uint8 RGB)."""
        img = Image.fromarray(np.ascontiguousarray(canonical))
        return np.asarray(warp_affine(img, self.student_matrix, self.student_size), dtype=np.uint8)

    def face_region(self) -> tuple[float, float, float, float]:
        """A box around the inner face in canonical pixels (eyebrows to chin, cheek to cheek)."""
        return face_region(crop_template(self.contract))


def canonical_framing(teacher: Contract, student: Contract, margin: float = 0.06) -> CanonicalFraming:
    """The canonical canvas for ``teacher`` and ``student`` (see the module docstring).

    ``margin`` is extra canvas on every side, as a fraction of the larger window, so that border
    jitter and occlusions near the edge have context.
    """
    tw, th = teacher.crop_size
    sw, sh = student.crop_size
    t2s = framing_transform(teacher, student)
    s2t = invert_transform(t2s)
    corners = np.array([[-0.5, -0.5], [sw - 0.5, -0.5], [-0.5, sh - 0.5], [sw - 0.5, sh - 0.5]])
    sc = apply_transform(s2t, corners)
    x0 = min(-0.5, sc[:, 0].min())
    y0 = min(-0.5, sc[:, 1].min())
    x1 = max(tw - 0.5, sc[:, 0].max())
    y1 = max(th - 0.5, sc[:, 1].max())
    pad = margin * max(x1 - x0, y1 - y0)
    ox = int(math.ceil(-(x0 - pad) - 0.5))
    oy = int(math.ceil(-(y0 - pad) - 0.5))
    w = int(math.ceil(x1 + pad + 0.5)) + ox
    h = int(math.ceil(y1 + pad + 0.5)) + oy
    tmpl = crop_template(teacher) + np.array([ox, oy], dtype=np.float64)
    canon = Contract(
        name=f"canonical-{teacher.name}-{student.name}", task="embedding", input_name=teacher.input_name,
        output_name=teacher.output_name, layout=teacher.layout, color=teacher.color,
        mean=teacher.mean, std=teacher.std, landmarks="five",
        template=tuple((float(x), float(y)) for x, y in tmpl),
        warp_size=(w, h), crop_size=(w, h), resize="none", output="embedding",
    )
    shift = np.array([[1.0, 0.0, -ox], [0.0, 1.0, -oy], [0.0, 0.0, 1.0]])
    c2s = t2s @ shift
    box = (float(sc[:, 0].min() + ox), float(sc[:, 1].min() + oy),
           float(sc[:, 0].max() + ox), float(sc[:, 1].max() + oy))
    return CanonicalFraming(contract=canon, teacher_offset=(ox, oy), teacher_size=(tw, th),
                            student_matrix=c2s, student_size=(sw, sh), student_box=box)


def face_region(template: np.ndarray) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) around the inner face from five template points (eyes, nose, mouth)."""
    t = np.asarray(template, dtype=np.float64)
    d = float(np.linalg.norm(t[1] - t[0]))
    eye_y = (t[0, 1] + t[1, 1]) / 2
    mouth_y = (t[3, 1] + t[4, 1]) / 2
    return (float(t[:, 0].min() - 0.45 * d), float(eye_y - 0.6 * d),
            float(t[:, 0].max() + 0.45 * d), float(mouth_y + 0.55 * d))


def hflip_landmarks(landmarks: np.ndarray, width: int) -> np.ndarray:
    """Detector landmarks of the horizontally mirrored image (left/right points swapped)."""
    lm = np.asarray(landmarks, dtype=np.float64).reshape(5, 2).copy()
    lm[:, 0] = width - 1 - lm[:, 0]
    return lm[[1, 0, 2, 4, 3]]
