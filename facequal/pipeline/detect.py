"""Face detection with RetinaFace-MobileNet0.25: priors, box and landmark decoding, NMS.

The ONNX model comes from :mod:`facequal.models.retinaface`. Everything here is plain numpy
apart from the session call, so the maths is testable without a model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image

from facequal.options import DET_SIZE, DET_THRESHOLD, MIN_FACE, PAD

STEPS = (8, 16, 32)
MIN_SIZES = ((16, 32), (64, 128), (256, 512))
VARIANCES = (0.1, 0.2)
MEAN_BGR = np.array([104.0, 117.0, 123.0], dtype=np.float32)
NMS_IOU = 0.4
# The network's feature pyramid needs sides that are multiples of its largest stride.
_ALIGN = 32
# Candidates up to which NMS computes all overlaps at once (a 256 x 256 matrix: 0.5 MB).
_NMS_MATRIX_MAX = 256


@dataclass(frozen=True)
class Face:
    """One detected face in image pixel coordinates."""

    box: np.ndarray        # (4,) x1, y1, x2, y2
    score: float
    landmarks: np.ndarray  # (5, 2): left eye, right eye, nose, left mouth corner, right mouth corner

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])

    @property
    def centre(self) -> np.ndarray:
        """(2,) centre of the box."""
        return (self.box[:2] + self.box[2:]) / 2.0

    @property
    def inter_eye(self) -> float:
        return float(np.linalg.norm(self.landmarks[1] - self.landmarks[0]))


@lru_cache(maxsize=32)
def priors(height: int, width: int) -> np.ndarray:
    """Anchor boxes (cx, cy, w, h), normalised by the input size, in the network's output order."""
    out = []
    for step, sizes in zip(STEPS, MIN_SIZES, strict=True):
        fh, fw = math.ceil(height / step), math.ceil(width / step)
        ys, xs = np.meshgrid(np.arange(fh), np.arange(fw), indexing="ij")
        cx = ((xs + 0.5) * step / width).ravel()
        cy = ((ys + 0.5) * step / height).ravel()
        per_size = [np.stack([cx, cy, np.full_like(cx, s / width), np.full_like(cy, s / height)], axis=1)
                    for s in sizes]
        # order: for each cell, each min size
        out.append(np.stack(per_size, axis=1).reshape(-1, 4))
    p = np.concatenate(out, axis=0).astype(np.float32)
    p.setflags(write=False)
    return p


def decode_boxes(loc: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Regression outputs -> (P, 4) boxes x1, y1, x2, y2 in normalised coordinates."""
    v0, v1 = VARIANCES
    centre = prior[:, :2] + loc[:, :2] * v0 * prior[:, 2:]
    size = prior[:, 2:] * np.exp(loc[:, 2:] * v1)
    return np.concatenate([centre - size / 2, centre + size / 2], axis=1)


def decode_landmarks(pre: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Landmark outputs -> (P, 5, 2) points in normalised coordinates."""
    v0 = VARIANCES[0]
    pre = pre.reshape(-1, 5, 2)
    return prior[:, None, :2] + pre * v0 * prior[:, None, 2:]


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float = NMS_IOU) -> np.ndarray:
    """Greedy non-maximum suppression; returns kept indices, highest score first.

    Ties in score keep the earlier index first (stable), so the result is deterministic. Up to
    :data:`_NMS_MATRIX_MAX` candidates (a photo's usual few dozen) the overlaps are computed once
    as a matrix, which is cheaper than a numpy pass per kept face; beyond that (a very low
    ``--det-threshold``) one row at a time, so memory stays linear.
    """
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes[order].T
    area = np.maximum(0, x2 - x1) * np.maximum(0, y2 - y1)

    def overlaps(i: int | np.ndarray, rest: np.ndarray) -> np.ndarray:
        """IoU of box(es) ``i`` with boxes ``rest`` (positions in sorted order; they broadcast)."""
        w = np.maximum(0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        union = area[i] + area[rest] - inter
        return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)

    n = len(order)
    keep: list[int] = []
    if n <= _NMS_MATRIX_MAX:
        pos = np.arange(n)
        suppress = overlaps(pos[:, None], pos[None, :]) > iou
        dropped = np.zeros(n, dtype=bool)
        for i in range(n):
            if not dropped[i]:
                keep.append(int(order[i]))
                dropped |= suppress[i]
        return np.asarray(keep, dtype=np.int64)
    rest = np.arange(n)
    while rest.size:
        i = int(rest[0])
        keep.append(int(order[i]))
        rest = rest[1:]
        rest = rest[overlaps(i, rest) <= iou]
    return np.asarray(keep, dtype=np.int64)


def preprocess(rgb: np.ndarray) -> tuple[np.ndarray, int, int]:
    """(H, W, 3) uint8 RGB -> (1, 3, H', W') float32 BGR minus mean, padded to multiples of 32.

    Returns the tensor and its padded height and width. Padding is the mean colour (zero after
    subtraction), at the bottom and right, so coordinates are unchanged. The tensor is built
    plane by plane in its final (contiguous) layout, so onnxruntime takes it without a copy.
    """
    h, w = rgb.shape[:2]
    hp, wp = -(-h // _ALIGN) * _ALIGN, -(-w // _ALIGN) * _ALIGN
    x = np.empty((1, 3, hp, wp), dtype=np.float32)
    for c in range(3):                      # BGR planes from RGB channels 2, 1, 0
        plane = x[0, c]
        np.subtract(rgb[:, :, 2 - c], MEAN_BGR[c], out=plane[:h, :w], dtype=np.float32)
        plane[h:, :] = 0.0
        plane[:h, w:] = 0.0
    return x, hp, wp


@lru_cache(maxsize=32)
def pixel_priors(height: int, width: int) -> np.ndarray:
    """:func:`priors` in pixels of the padded input (float64): the decoding is linear in the
    priors' scale, so boxes and landmarks decoded from these come out in pixels directly."""
    p = priors(height, width).astype(np.float64) * np.array([width, height, width, height], dtype=np.float64)
    p.setflags(write=False)
    return p


def postprocess(loc: np.ndarray, conf: np.ndarray, landm: np.ndarray, height: int, width: int,
                threshold: float) -> list[Face]:
    """One image's raw outputs ([P,4], [P,2], [P,10]) at padded size (height, width) -> faces."""
    scores = conf[:, 1]
    idx = np.nonzero(scores >= threshold)[0]
    if idx.size == 0:
        return []
    prior = pixel_priors(height, width)[idx]
    boxes = decode_boxes(loc[idx].astype(np.float64), prior)
    lms = decode_landmarks(landm[idx].astype(np.float64), prior)
    kept_scores = scores[idx]
    keep = nms(boxes, kept_scores.astype(np.float64))
    return [Face(box=boxes[k], score=float(kept_scores[k]), landmarks=lms[k]) for k in keep]


def downscale_for_detection(image: Image.Image, det_size: int) -> Image.Image:
    """``image`` itself, or a copy whose longer side is ``det_size`` when it is larger (0: never)."""
    w, h = image.size
    if not det_size or max(w, h) <= det_size:
        return image
    scale = det_size / max(w, h)
    return image.resize((max(1, round(w * scale)), max(1, round(h * scale))),
                        Image.Resampling.BILINEAR, reducing_gap=2.0)


def pick_largest(faces: list[Face], width: int, height: int) -> list[Face]:
    """The face with the largest box; ties go to the one nearest the image centre."""
    return order_faces(faces, width, height)[:1]


def pick_centred(faces: list[Face], width: int, height: int) -> list[Face]:
    """The subject of a subject-centred photo: the largest face once off-centre distance is charged.

    Face datasets such as LFW crop every photo around its subject, and bystanders (often larger,
    at the edge) would be picked by ``pick_largest``. The score is box area minus twice the squared
    distance of the box centre from the image centre, both in pixels squared, so a face must be
    much larger to win from the middle's neighbour at the edge.
    """
    if len(faces) <= 1:  # nothing to choose from (most photos): skip the per-face numpy steps
        return list(faces)
    c = np.array([width / 2.0, height / 2.0])

    def key(f: Face) -> float:
        off = f.centre - c
        return -(f.width * f.height - 2.0 * float(off @ off))

    return [min(faces, key=key)]


def order_faces(faces: list[Face], width: int, height: int) -> list[Face]:
    """Largest first (ties by distance to the centre): face_index 0 is the main face."""
    if len(faces) <= 1:
        return list(faces)
    c = np.array([width / 2.0, height / 2.0])
    return sorted(faces, key=lambda f: (-round(f.width * f.height, 3),
                                        float(np.linalg.norm(f.centre - c))))


@dataclass
class Pending:
    """A detector pass that has run and not been decoded yet (:meth:`RetinaFace.start`)."""

    src: Image.Image                  # the image as the network saw it (downscaled, unpadded)
    full_size: tuple[int, int]        # (width, height) the faces' coordinates are given in
    raw: tuple[tuple[Any, ...], int, int, int]  # (outputs, padded height, width, offset)


class RetinaFace:
    """RetinaFace-MobileNet0.25 over an onnxruntime session.

    ``det_size`` bounds the longer side of the image the network sees (larger images are
    downscaled for detection and the coordinates mapped back). When nothing is found the image
    is retried on a padded canvas (tight face crops need context around the face); ``pad``
    > 0 always pads by that fraction of the longer side.

    ``fixed_session(shape=(height, width))``, when given, makes a session specialised to one input size;
    a padded size seen ``SPECIALISE_AFTER`` times gets one (at most ``MAX_SPECIALISED`` sizes), so
    that datasets of same-sized photos run a fully planned graph (the same outputs, about 5% faster
    than with free dimensions); other sizes use the general ``session``.
    """

    SPECIALISE_AFTER = 8
    MAX_SPECIALISED = 4

    def __init__(self, session=None, *, det_size: int = DET_SIZE, threshold: float = DET_THRESHOLD,
                 min_face: float = MIN_FACE, pad: float = PAD, retry_pad: float = 0.5,
                 fixed_session: Callable[..., Any] | None = None) -> None:
        if session is None:
            from facequal.models.retinaface import retinaface_session

            session = retinaface_session()
        self.session = session
        self._fixed_session = fixed_session
        self._fixed: dict[tuple[int, int], Any] = {}
        self._seen: dict[tuple[int, int], int] = {}
        self.det_size = det_size
        self.threshold = threshold
        self.min_face = min_face
        self.pad = pad
        self.retry_pad = retry_pad

    def session_for(self, hp: int, wp: int) -> Any:
        """The session for a padded input of ``hp`` x ``wp`` (specialised once that size recurs)."""
        key = (hp, wp)
        sess = self._fixed.get(key)
        if sess is not None or self._fixed_session is None:
            return sess or self.session
        seen = self._seen[key] = self._seen.get(key, 0) + 1
        if seen >= self.SPECIALISE_AFTER and len(self._fixed) < self.MAX_SPECIALISED:
            sess = self._fixed[key] = self._fixed_session(shape=key)
            return sess
        return self.session

    def _forward(self, src: Image.Image, pad: float) -> tuple[tuple[Any, ...], int, int, int]:
        """One network pass over ``src`` (the image as downscaled for detection) on a canvas
        padded by ``pad``: (raw outputs, padded height, padded width, offset of ``src`` in it)."""
        rgb = np.asarray(src, dtype=np.uint8)
        off = 0
        if pad > 0:
            off = int(round(pad * max(rgb.shape[:2])))
            # Mean-coloured border: what the network saw as "nothing" in training.
            canvas = np.empty((rgb.shape[0] + 2 * off, rgb.shape[1] + 2 * off, 3), dtype=np.uint8)
            canvas[:] = MEAN_BGR[::-1].astype(np.uint8)
            canvas[off:off + rgb.shape[0], off:off + rgb.shape[1]] = rgb
            rgb = canvas
        x, hp, wp = preprocess(rgb)
        return tuple(self.session_for(hp, wp).run(None, {"input": x})), hp, wp, off

    def _decode_pass(self, raw: tuple[tuple[Any, ...], int, int, int], src_size: tuple[int, int],
                     full_size: tuple[int, int]) -> list[Face]:
        """The faces of one :meth:`_forward` pass, in ``full_size`` coordinates."""
        (loc, conf, landm), hp, wp, off = raw
        faces = postprocess(loc[0], conf[0], landm[0], hp, wp, self.threshold)
        sx = full_size[0] / src_size[0]
        sy = full_size[1] / src_size[1]
        if off == 0 and sx == 1.0 and sy == 1.0:  # seen at full size, unpadded: already right
            return faces
        box_scale = np.array([sx, sy, sx, sy])
        lm_scale = np.array([sx, sy])
        return [Face(box=(f.box - off) * box_scale, score=f.score, landmarks=(f.landmarks - off) * lm_scale)
                for f in faces]

    def _detect_once(self, src: Image.Image, full_size: tuple[int, int], pad: float) -> list[Face]:
        """Faces of ``src`` (the image as downscaled for detection), in ``full_size`` coordinates."""
        return self._decode_pass(self._forward(src, pad), src.size, full_size)

    def start(self, image: Image.Image) -> Pending:
        """The first half of :meth:`detect`: the network pass over ``image``. :meth:`finish`
        turns it into faces. Split so that a worker runs the passes of several images back to
        back and then decodes them all: each stage then runs with its code and data in the CPU's
        caches, which the interleaved order spends most of the post-processing time refilling."""
        src = downscale_for_detection(image, self.det_size)  # once, also for the padded retry
        return Pending(src=src, full_size=image.size, raw=self._forward(src, self.pad))

    def finish(self, pending: Pending) -> list[Face]:
        """The second half of :meth:`detect`: the faces of a :meth:`start` pass (largest first),
        above the threshold and the minimum face size, after the padded retry if none was found."""
        src, full_size = pending.src, pending.full_size
        faces = self._decode_pass(pending.raw, src.size, full_size)
        if not faces and self.retry_pad > 0 and self.pad <= 0:
            faces = self._detect_once(src, full_size, self.retry_pad)
        if self.min_face > 0:
            faces = [f for f in faces if min(f.width, f.height) >= self.min_face]
        return order_faces(faces, *full_size)

    def detect(self, image: Image.Image) -> list[Face]:
        """All faces in an RGB image (largest first), above the threshold and min face size."""
        return self.finish(self.start(image))
