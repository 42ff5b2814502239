"""One image in, its face rows and aligned crops out: decode -> detect -> align.

Every failure becomes a row with a status and an error message; nothing here raises for a
bad input.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from facequal import schema
from facequal.align import align_face
from facequal.contract import Contract
from facequal.decode import DEFAULT_MAX_PIXELS, DEFAULT_MAX_SIDE, DecodeError, open_image
from facequal.detect import Face, RetinaFace, pick_centred

FACE_CHOICES = ("largest", "center", "all")


@dataclass(frozen=True)
class FaceOptions:
    """How faces are found: the `score` / `embed` options that shape detection and alignment."""

    faces: str = "largest"          # "largest", "center" or "all"
    det_size: int = 640
    det_threshold: float = 0.6
    min_face: float = 0.0
    pad: float = 0.0
    aligned: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_side: int = DEFAULT_MAX_SIDE


@dataclass
class ImageResult:
    """Rows (dicts of schema columns, without model outputs) and one crop per ``ok`` row."""

    rows: list[dict[str, Any]]
    crops: list[np.ndarray] = field(default_factory=list)


def file_stat(path: str) -> tuple[int | None, int | None]:
    """(size, mtime_ns) of a file, or (None, None) when it cannot be stat'ed."""
    try:
        st = os.stat(path)
        return st.st_size, st.st_mtime_ns
    except (OSError, ValueError):  # ValueError: a path with a NUL byte (from a manifest)
        return None, None


def _base_row(path: str) -> dict[str, Any]:
    size, mtime = file_stat(path)
    return {"face_index": schema.NO_FACE_INDEX, "n_faces": None, "status": schema.OK, "error": None,
            "det_score": None, "bbox": None, "landmarks": None, "inter_eye": None,
            "width": None, "height": None, "file_size": size, "mtime_ns": mtime}


def _face_row(base: dict[str, Any], index: int, n: int, face: Face) -> dict[str, Any]:
    row = dict(base)
    row.update(face_index=index, n_faces=n, det_score=float(face.score),
               bbox=[float(v) for v in face.box],
               landmarks=[[float(x), float(y)] for x, y in face.landmarks],
               inter_eye=face.inter_eye)
    return row


def process_image(path: str, contract: Contract, opts: FaceOptions, detector: RetinaFace | None,
                  given: list[tuple[int, float, list[float], list[list[float]]]] | None = None
                  ) -> ImageResult:
    """Decode, detect and align one image; never raises for a bad input.

    ``given`` faces (face_index, det_score, bbox, landmarks at full resolution) replace detection,
    so that another model sees exactly the faces of an earlier run.
    """
    base = _base_row(path)
    try:
        dec = open_image(path, max_pixels=opts.max_pixels, max_side=opts.max_side)
    except DecodeError as e:
        base.update(status=e.status, error=e.message, n_faces=0)
        return ImageResult(rows=[base])
    base.update(width=dec.width, height=dec.height)
    image = dec.image
    if opts.aligned:
        size = tuple(contract.crop_size)
        crop = image if image.size == size else image.resize(size, Image.Resampling.BILINEAR)
        row = dict(base, face_index=0, n_faces=1)
        return ImageResult(rows=[row], crops=[np.asarray(crop, dtype=np.uint8)])
    if given is not None:
        if not given:
            base.update(status=schema.NO_FACE, n_faces=0)
            return ImageResult(rows=[base])
        rows, crops = [], []
        for index, det_score, box, lms in given:
            full = Face(box=np.asarray(box, float), score=det_score, landmarks=np.asarray(lms, float))
            crops.append(align_face(image, full.landmarks * dec.scale, contract))
            rows.append(_face_row(base, index, len(given), full))
        return ImageResult(rows=rows, crops=crops)
    assert detector is not None
    found = detector.detect(image)
    if not found:
        base.update(status=schema.NO_FACE, n_faces=0)
        return ImageResult(rows=[base])
    if opts.faces == "largest":
        chosen = found[:1]
    elif opts.faces == "center":
        chosen = pick_centred(found, *image.size)
    else:
        chosen = found
    rows, crops = [], []
    inv = 1.0 / dec.scale
    for i, f in enumerate(chosen):
        crops.append(align_face(image, f.landmarks, contract))
        # Report coordinates at full resolution, whatever scale the image was decoded at.
        full = Face(box=f.box * inv, score=f.score, landmarks=f.landmarks * inv)
        rows.append(_face_row(base, i, len(found), full))
    return ImageResult(rows=rows, crops=crops)
