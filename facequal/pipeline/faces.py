"""Images in, their face rows and aligned crops out: decode -> detect -> align -> rows.

A worker's images go through the stages in small groups (:func:`process_images`): every image of
a group is decoded and passed through the detector, then every detection is decoded, then every
face aligned, then every row made. The results are those of one image at a time; the order keeps
each stage's code and data in the CPU's caches (interleaving them spent a third of the time after
the detector refilling caches). Every failure becomes a row with a status and an error message;
nothing here raises for a bad input.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from facequal import schema
from facequal.contract import Contract
from facequal.options import FaceOptions
from facequal.pipeline.align import align_face, similarity_transform, transform_scale
from facequal.pipeline.decode import Decoded, DecodeError, open_image, to_rgb
from facequal.pipeline.detect import Face, Pending, RetinaFace, pick_centred
from facequal.pipeline.diagnostics import DIAGNOSTIC_COLUMNS, face_diagnostics

# A reduced (draft) decode serves the crops when every face has at least this many source pixels
# per warp pixel there: the warp then still shrinks the face by 2x or more and antialiases it, as
# it would from the full-size image (quality within 0.006 of it on enlarged 12-megapixel photos).
MIN_SOURCE_PIXELS = 2.0
# A group of images that go through the stages together (process_images): at most this many,
# holding at most this many decoded pixels (24 MB of RGB), so that memory stays that of a few
# images, whatever their size. A group of one still works: large photos go one by one.
GROUP_IMAGES = 16
GROUP_PIXELS = 8_000_000

__all__ = ["ImageResult", "file_stat", "image_rows", "process_decoded", "process_image", "process_images"]


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
               bbox=np.asarray(face.box, dtype=np.float64).tolist(),
               landmarks=np.asarray(face.landmarks, dtype=np.float64).tolist(),
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
    return process_images([(path, given)], contract, opts, detector)[0]


def process_images(items: Sequence[tuple[str, list | None]], contract: Contract, opts: FaceOptions,
                   detector: RetinaFace | None) -> list[ImageResult]:
    """:func:`process_image` for each (path, given faces) item, in order: the same results, with
    the stages run group by group (see the module's docstring). Never raises for a bad input."""
    results: list[ImageResult] = []
    group: list[_Work] = []
    pixels = 0
    for path, given in items:
        work = _guarded(_Work(base=_base_row(path)), _decode, path, given, opts, detector)
        if work.dec is not None:
            pixels += work.dec.image.size[0] * work.dec.image.size[1]
        group.append(_guarded(work, _start_detection, opts, detector))
        if len(group) >= GROUP_IMAGES or pixels >= GROUP_PIXELS:
            results.extend(_finish_group(group, contract, opts, detector))
            group, pixels = [], 0
    results.extend(_finish_group(group, contract, opts, detector))
    return results


@dataclass
class _Work:
    """One image on its way through the stages; ``result`` is set once it is done (a decode
    error, no face, an unexpected exception), and the later stages then pass it by."""

    base: dict[str, Any]
    result: ImageResult | None = None
    dec: Decoded | None = None
    given: list | None = None
    full_size: Callable[[], Decoded] | None = None
    pending: Pending | None = None
    chosen: list[Face] = field(default_factory=list)
    n_found: int = 0
    # per face, in row order: (face_index, n_faces, face at full resolution or None, crop), or
    # an error row of its own (a --from-scores face that cannot be aligned)
    pieces: list[tuple[int, int, Face | None, np.ndarray] | dict[str, Any]] = field(default_factory=list)


def _guarded(work: _Work, stage: Callable[..., None], *args: Any) -> _Work:
    """Run one stage on ``work`` unless it is done; an unexpected exception (a bug, an input
    nobody foresaw) becomes the image's error row, so that it cannot take the others down."""
    if work.result is None:
        try:
            stage(work, *args)
        except Exception as e:
            work.base.update(status=schema.ERROR, error=f"{type(e).__name__}: {e}", n_faces=0)
            work.result = ImageResult(rows=[work.base])
            work.dec = work.pending = None  # let the pixels go
    return work


def _finish_group(group: Sequence[_Work], contract: Contract, opts: FaceOptions,
                  detector: RetinaFace | None) -> list[ImageResult]:
    """The stages after the detector's passes, each over the whole group."""
    for work in group:
        _guarded(work, _find_faces, opts, detector)
    for work in group:
        _guarded(work, _align, contract, opts)
    for work in group:
        _guarded(work, _rows)
    out = []
    for work in group:
        assert work.result is not None
        out.append(work.result)
    return out


def _decode(work: _Work, path: str, given: list | None, opts: FaceOptions, detector: RetinaFace | None) -> None:
    try:
        # A large JPEG is first decoded only as large as detection needs (aligned inputs and
        # given faces skip detection); crops come from it when their faces are big enough in it.
        draft = opts.det_size if detector is not None and given is None and not opts.aligned else None
        work.dec = open_image(path, max_pixels=opts.max_pixels, max_side=opts.max_side, draft_side=draft)
    except DecodeError as e:
        work.base.update(status=e.status, error=e.message, n_faces=0)
        work.result = ImageResult(rows=[work.base])
        return
    work.given = given
    work.full_size = lambda: open_image(path, max_pixels=opts.max_pixels, max_side=opts.max_side)


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
    work = _Work(base=base, dec=dec, given=given, full_size=full_size)
    _guarded(work, _start_detection, opts, detector)
    return _finish_group([work], contract, opts, detector)[0]


def _start_detection(work: _Work, opts: FaceOptions, detector: RetinaFace | None) -> None:
    assert work.dec is not None
    work.base.update(width=work.dec.width, height=work.dec.height)
    if not opts.aligned and work.given is None:
        assert detector is not None
        work.pending = detector.start(work.dec.image)


def _find_faces(work: _Work, opts: FaceOptions, detector: RetinaFace | None) -> None:
    if work.pending is None:  # aligned inputs and given faces: nothing was detected
        return
    assert detector is not None and work.dec is not None
    found = detector.finish(work.pending)
    work.pending = None
    if not found:
        work.base.update(status=schema.NO_FACE, n_faces=0)
        work.result = ImageResult(rows=[work.base])
        return
    if opts.faces == "largest":
        work.chosen = found[:1]
    elif opts.faces == "subject":
        work.chosen = pick_centred(found, *work.dec.image.size)
    else:
        work.chosen = found
    work.n_found = len(found)


def _align(work: _Work, contract: Contract, opts: FaceOptions) -> None:
    dec = work.dec
    assert dec is not None
    image = dec.image
    if opts.aligned:  # the image is the crop
        size = tuple(contract.crop_size)
        crop = image if image.size == size else image.resize(size, Image.Resampling.BILINEAR)
        work.pieces.append((0, 1, None, np.asarray(crop, dtype=np.uint8)))
    elif work.given is not None:
        if not work.given:
            work.base.update(status=schema.NO_FACE, n_faces=0)
            work.result = ImageResult(rows=[work.base])
            return
        for index, det_score, box, lms in work.given:
            full, why = given_face(det_score, box, lms, dec.width, dec.height)
            if full is None:  # an error row for this face, keyed like it; no crop, no score
                work.pieces.append(dict(work.base, face_index=index, n_faces=len(work.given),
                                        status=schema.ERROR, error=f"--from-scores face {index}: {why}"))
                continue
            crop = align_face(image, full.landmarks * dec.scale, contract)
            work.pieces.append((index, len(work.given), full, crop))
    else:
        inv = 1.0 / dec.scale
        src = crop_source(dec, [f.landmarks for f in work.chosen], contract, work.full_size)
        for i, f in enumerate(work.chosen):
            crop = align_face(src.image, f.landmarks * (src.scale / dec.scale), contract)
            # Report coordinates at full resolution, whatever scale the image was decoded at.
            full = Face(box=f.box * inv, score=f.score, landmarks=f.landmarks * inv)
            work.pieces.append((i, work.n_found, full, crop))
    work.dec = None  # the pixels are not needed any more


def _rows(work: _Work) -> None:
    rows, crops = [], []
    for piece in work.pieces:
        if isinstance(piece, dict):
            rows.append(piece)
            continue
        index, n, face, crop = piece
        if face is None:  # an aligned input: no landmarks, no pose
            rows.append(dict(work.base, face_index=index, n_faces=n, **face_diagnostics(crop, None)))
        else:
            rows.append(_face_row(work.base, index, n, face, crop))
        crops.append(crop)
    work.result = ImageResult(rows=rows, crops=crops)
