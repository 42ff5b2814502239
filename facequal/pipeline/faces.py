"""One image in, its face rows and aligned crops out: decode -> detect -> align.

Every failure becomes a row with a status and an error message; nothing here raises for a
bad input.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from facequal import schema
from facequal.contract import Contract
from facequal.options import FaceOptions
from facequal.pipeline.align import align_face, similarity_transform, transform_scale
from facequal.pipeline.decode import Decoded, DecodeError, open_image, to_rgb
from facequal.pipeline.detect import Face, RetinaFace, pick_centred
from facequal.pipeline.diagnostics import DIAGNOSTIC_COLUMNS, face_diagnostics

# A reduced (draft) decode serves the crops when every face has at least this many source pixels
# per warp pixel there: the warp then still shrinks the face by 2x or more and antialiases it, as
# it would from the full-size image (quality within 0.006 of it on enlarged 12-megapixel photos).
MIN_SOURCE_PIXELS = 2.0

__all__ = ["ImageResult", "file_stat", "image_rows", "process_decoded", "process_image"]


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


def _base_row(path: str | None) -> dict[str, Any]:
    size, mtime = file_stat(path) if path is not None else (None, None)
    return {"face_index": schema.NO_FACE_INDEX, "n_faces": None, "status": schema.OK, "error": None,
            "det_score": None, "bbox": None, "landmarks": None, "eye_distance": None,
            **dict.fromkeys(DIAGNOSTIC_COLUMNS),
            "width": None, "height": None, "file_size": size, "mtime_ns": mtime}


def _face_row(base: dict[str, Any], index: int, n: int, face: Face, crop: np.ndarray) -> dict[str, Any]:
    """The row of one face: where it is (full-resolution coordinates) and its diagnostics."""
    row = dict(base)
    score = float(face.score)
    row.update(face_index=index, n_faces=n, det_score=score if np.isfinite(score) else None,
               bbox=[float(v) for v in face.box],
               landmarks=[[float(x), float(y)] for x, y in face.landmarks],
               eye_distance=face.inter_eye, **face_diagnostics(crop, face.landmarks))
    return row


def given_face(det_score: Any, box: Any, landmarks: Any, width: int, height: int
               ) -> tuple[Face | None, str]:
    """A face given by an earlier run (``--from-scores``) as a :class:`Face`, or (None, why) when
    its values cannot be aligned: landmarks that are not five finite (x, y) points inside the
    image (give or take the image's size: a face may stick out of it), a box that is not four
    finite numbers. Aligning such a face would give a black crop, scored as if it were a face."""
    try:
        lms = np.asarray(landmarks, dtype=np.float64)
        bbox = np.asarray(box, dtype=np.float64)
        score = np.nan if det_score is None else float(det_score)
    except (TypeError, ValueError):
        return None, "landmarks or bbox are not numbers"
    if lms.shape != (5, 2):
        return None, f"landmarks must be 5 (x, y) points, not an array of shape {lms.shape}"
    if not np.isfinite(lms).all():
        return None, "landmarks are not finite (NaN or infinity)"
    if bbox.shape != (4,) or not np.isfinite(bbox).all():
        return None, "bbox is not four finite numbers"
    xs, ys = lms[:, 0], lms[:, 1]
    if (xs < -width).any() or (xs > 2 * width).any() or (ys < -height).any() or (ys > 2 * height).any():
        return None, f"landmarks lie far outside the {width}x{height} image"
    return Face(box=bbox, score=score, landmarks=lms), ""


def process_image(path: str, contract: Contract, opts: FaceOptions, detector: RetinaFace | None,
                  given: list[tuple[int, float, list[float], list[list[float]]]] | None = None
                  ) -> ImageResult:
    """Decode, detect and align one image; never raises for a bad input.

    ``given`` faces (face_index, det_score, bbox, landmarks at full resolution) replace detection,
    so that another model sees exactly the faces of an earlier run.
    """
    base = _base_row(path)
    try:
        # A large JPEG is first decoded only as large as detection needs (aligned inputs and
        # given faces skip detection); crops come from it when their faces are big enough in it.
        draft = opts.det_size if detector is not None and given is None and not opts.aligned else None
        dec = open_image(path, max_pixels=opts.max_pixels, max_side=opts.max_side, draft_side=draft)
    except DecodeError as e:
        base.update(status=e.status, error=e.message, n_faces=0)
        return ImageResult(rows=[base])

    def full_size() -> Decoded:
        return open_image(path, max_pixels=opts.max_pixels, max_side=opts.max_side)

    return process_decoded(dec, base, contract, opts, detector, given, full_size=full_size)


def decoded_from_pixels(image: Any, max_pixels: int) -> Decoded:
    """An image in memory (a Pillow image of any mode, or an RGB uint8 array HxWx3) as the
    pipeline's :class:`~facequal.pipeline.decode.Decoded` value: converted to RGB like a decoded
    file (transparency over white, 16-bit greys rescaled), at full resolution.

    Raises :class:`DecodeError` (``too_large``) above ``max_pixels``, and ``ValueError`` for an
    array that is not HxWx3 uint8 (or HxW uint8, taken as grey)."""
    if isinstance(image, Image.Image):
        im = image
    else:
        arr = np.asarray(image)
        if arr.dtype != np.uint8 or not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
            raise ValueError("image must be a Pillow image or an RGB uint8 array of shape (H, W, 3), "
                             f"not an array of {arr.dtype} with shape {arr.shape}")
        im = Image.fromarray(np.ascontiguousarray(arr), "L" if arr.ndim == 2 else "RGB")
    w, h = im.size
    if w <= 0 or h <= 0:
        raise DecodeError(schema.UNREADABLE, f"empty image ({w}x{h})")
    if w * h > max_pixels:
        raise DecodeError(schema.TOO_LARGE, f"{w}x{h} = {w * h} pixels exceeds the limit of {max_pixels}")
    rgb = to_rgb(im)
    return Decoded(image=rgb, width=w, height=h, scale=1.0)


def image_rows(image: Any, contract: Contract, opts: FaceOptions, detector: RetinaFace | None
               ) -> ImageResult:
    """:func:`process_image` for an image in memory (see :func:`decoded_from_pixels`): rows
    without ``file_size`` / ``mtime_ns``; never raises for a bad image."""
    base = _base_row(None)
    try:
        dec = decoded_from_pixels(image, opts.max_pixels)
    except DecodeError as e:
        base.update(status=e.status, error=e.message, n_faces=0)
        return ImageResult(rows=[base])
    return process_decoded(dec, base, contract, opts, detector)


def crop_source(dec: Decoded, landmarks: list[np.ndarray], contract: Contract,
                full_size: Callable[[], Decoded] | None) -> Decoded:
    """The decoded image to cut the crops from: ``dec`` itself, or ``full_size()`` when ``dec``
    is a reduced decode in which a face (``landmarks`` in ``dec``'s pixels) has fewer than
    :data:`MIN_SOURCE_PIXELS` pixels for each pixel of the warp (a small face in a big photo)."""
    if full_size is None or dec.scale >= 1.0:
        return dec
    template = contract.template_array()
    for lm in landmarks:
        m = similarity_transform(contract.select_landmarks(lm), template)
        if transform_scale(m) * MIN_SOURCE_PIXELS > 1.0:
            try:
                return full_size()
            except DecodeError:  # decoded once already: keep what we have
                return dec
    return dec


def process_decoded(dec: Decoded, base: dict[str, Any], contract: Contract, opts: FaceOptions,
                    detector: RetinaFace | None,
                    given: list[tuple[int, float, list[float], list[list[float]]]] | None = None,
                    full_size: Callable[[], Decoded] | None = None) -> ImageResult:
    """Detect and align the faces of a decoded image (the part of :func:`process_image` after
    decoding, shared with in-memory images). ``full_size`` decodes the image again at full
    size, for a reduced ``dec`` whose faces are too small in it (see :func:`crop_source`)."""
    base.update(width=dec.width, height=dec.height)
    image = dec.image
    if opts.aligned:
        size = tuple(contract.crop_size)
        crop = image if image.size == size else image.resize(size, Image.Resampling.BILINEAR)
        pixels = np.asarray(crop, dtype=np.uint8)
        row = dict(base, face_index=0, n_faces=1, **face_diagnostics(pixels, None))  # no landmarks: no pose
        return ImageResult(rows=[row], crops=[pixels])
    if given is not None:
        if not given:
            base.update(status=schema.NO_FACE, n_faces=0)
            return ImageResult(rows=[base])
        rows, crops = [], []
        for index, det_score, box, lms in given:
            full, why = given_face(det_score, box, lms, dec.width, dec.height)
            if full is None:  # an error row for this face, keyed like it; no crop, no score
                rows.append(dict(base, face_index=index, n_faces=len(given), status=schema.ERROR,
                                 error=f"--from-scores face {index}: {why}"))
                continue
            crops.append(align_face(image, full.landmarks * dec.scale, contract))
            rows.append(_face_row(base, index, len(given), full, crops[-1]))
        return ImageResult(rows=rows, crops=crops)
    assert detector is not None
    found = detector.detect(image)
    if not found:
        base.update(status=schema.NO_FACE, n_faces=0)
        return ImageResult(rows=[base])
    if opts.faces == "largest":
        chosen = found[:1]
    elif opts.faces == "subject":
        chosen = pick_centred(found, *image.size)
    else:
        chosen = found
    rows, crops = [], []
    inv = 1.0 / dec.scale
    src = crop_source(dec, [f.landmarks for f in chosen], contract, full_size)
    for i, f in enumerate(chosen):
        crops.append(align_face(src.image, f.landmarks * (src.scale / dec.scale), contract))
        # Report coordinates at full resolution, whatever scale the image was decoded at.
        full = Face(box=f.box * inv, score=f.score, landmarks=f.landmarks * inv)
        rows.append(_face_row(base, i, len(found), full, crops[-1]))
    return ImageResult(rows=rows, crops=crops)
