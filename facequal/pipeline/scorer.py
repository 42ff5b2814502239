"""Load once, score (or embed) images in memory: :class:`Scorer` and :class:`Embedder`.

The pipeline's workers (:func:`facequal.pipeline.run.process_chunk`) run the same objects, so an
image scored here gets exactly the values ``facequal score`` writes for its file:

>>> import facequal
>>> scorer = facequal.Scorer()                                   # doctest: +SKIP
>>> faces = scorer.score_image(PIL.Image.open("photo.jpg"))      # doctest: +SKIP
>>> faces[0]["quality"]                                          # doctest: +SKIP
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from facequal import options as opt  # the defaults, from their one place
from facequal import schema
from facequal.models.zoo import DEFAULT_EMBEDDING_MODEL, ModelSpec, OnnxModel, resolve_model
from facequal.pipeline.faces import ImageResult, image_rows, process_image, process_images

__all__ = ["Embedder", "Scorer", "SCORE_IMAGE_COLUMNS", "EMBED_IMAGE_COLUMNS"]

# The columns of a face that score_image returns: those `facequal score` writes for a file's rows,
# less what belongs to the file (path, file_size, mtime_ns) or to a run (crop_path).
_FILE_COLUMNS = ("path", "file_size", "mtime_ns", "crop_path")
SCORE_IMAGE_COLUMNS = tuple(f.name for f in schema.SCORE_FIELDS if f.name not in _FILE_COLUMNS)
EMBED_IMAGE_COLUMNS = tuple(f.name for f in schema.embed_fields(1) if f.name not in _FILE_COLUMNS)


def load_detector(faces: opt.FaceOptions, threads: int, device: str):
    """The RetinaFace detector with these face options."""
    from facequal.models.retinaface import retinaface_session
    from facequal.pipeline.detect import RetinaFace

    return RetinaFace(retinaface_session(threads, device), det_size=faces.det_size,
                      threshold=faces.det_threshold, min_face=faces.min_face, pad=faces.pad,
                      fixed_session=functools.partial(retinaface_session, threads, device))


class _FaceModel:
    """A detector and a model, loaded once; what Scorer and Embedder share with the workers."""

    task = "quality"

    def __init__(self, model: str | os.PathLike[str] | None = None, *, contract: str | None = None,
                 faces: str = opt.FACES, det_size: int = opt.DET_SIZE, det_threshold: float = opt.DET_THRESHOLD,
                 min_face: float = opt.MIN_FACE, pad: float = opt.PAD, aligned: bool = False,
                 max_pixels: int | None = None, device: str = opt.DEVICE, threads: int = opt.THREADS,
                 batch_size: int | None = None, flip_tta: bool | None = None,
                 spec: ModelSpec | None = None) -> None:
        from facequal.errors import UserError
        from facequal.models.session import providers_for
        from facequal.options import check_job_options

        if batch_size is None:
            batch_size = opt.default_batch_size(self.task, device)
        check_job_options(faces=faces, det_size=det_size, det_threshold=det_threshold, min_face=min_face,
                          pad=pad, max_pixels=max_pixels, batch_size=batch_size, jobs=None,
                          threads=threads, chunk_size=opt.CHUNK_SIZE)
        providers_for(device)  # fail fast: an unavailable device before any model is loaded
        spec = spec or resolve_model(None if model is None else os.fspath(model), contract_file=contract,
                                     task=self.task)
        if flip_tta and self.task != "embedding":
            raise UserError("--flip-tta is for embedding models", param="flip_tta")
        flip = self.task == "embedding" and (
            spec.contract.name == DEFAULT_EMBEDDING_MODEL if flip_tta is None else bool(flip_tta))
        options = opt.FaceOptions(faces=faces, det_size=det_size, det_threshold=det_threshold,
                              min_face=min_face, pad=pad, aligned=aligned,
                              max_pixels=max_pixels or opt.MAX_PIXELS)
        self._setup(spec, options, threads=threads, device=device, batch_size=batch_size,
                    flip_tta=flip)

    @classmethod
    def _from_parts(cls, spec: ModelSpec, faces: opt.FaceOptions, *, threads: int, device: str,
                    batch_size: int, flip_tta: bool, given_faces: bool = False) -> _FaceModel:
        """Built from a worker's configuration (options already checked)."""
        self = cls.__new__(cls)
        self.task = spec.contract.task
        self._setup(spec, faces, threads=threads, device=device, batch_size=batch_size,
                    flip_tta=flip_tta, given_faces=given_faces)
        return self

    def _setup(self, spec: ModelSpec, faces: opt.FaceOptions, *, threads: int, device: str,
               batch_size: int, flip_tta: bool, given_faces: bool = False) -> None:
        self.spec = spec
        self.contract = spec.contract
        self.face_options = faces
        self.flip_tta = flip_tta
        self.detector = (None if faces.aligned or given_faces
                         else load_detector(faces, threads, device))
        self.model = OnnxModel(spec, threads=threads, device=device, batch_size=batch_size,
                               flip_tta=flip_tta)

    # -- the steps the workers run too ------------------------------------------------------
    def analyse(self, image: Any, given: list | None = None) -> ImageResult:
        """Rows and crops of one image: a path (decoded like the pipeline does), a Pillow image
        or an RGB uint8 array. Never raises for a bad image."""
        if isinstance(image, (str, os.PathLike)):
            return process_image(os.fspath(image), self.contract, self.face_options, self.detector, given)
        return image_rows(image, self.contract, self.face_options, self.detector)

    def analyse_files(self, items: Sequence[tuple[str, list | None]]) -> list[ImageResult]:
        """:meth:`analyse` for each (path, given faces) item, in order, the stages run over
        small groups of images (:func:`facequal.pipeline.faces.process_images`): what a worker
        runs on its chunk. Never raises for a bad image."""
        return process_images(items, self.contract, self.face_options, self.detector)

    def outputs(self, crops: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """The model's columns for a batch of crops (``quality`` and ``quality_raw``, or
        ``embedding`` and ``embedding_norm``), one value per crop."""
        if not len(crops):
            return {}
        batch = np.stack(crops)
        if self.task == "quality":
            quality, raw = self.model.quality(batch)
            return {"quality": quality, "quality_raw": raw}
        emb, norm = self.model.embed(batch)
        return {"embedding": emb, "embedding_norm": norm}

    @staticmethod
    def fill(row: dict[str, Any], outputs: dict[str, np.ndarray], k: int) -> None:
        """Put the ``k``-th crop's model outputs into its (ok) row."""
        for name, values in outputs.items():
            v = values[k]
            row[name] = v.tolist() if isinstance(v, np.ndarray) else float(v)

    # -- in memory ----------------------------------------------------------------------------
    def _image(self, image: Any, columns: Sequence[str]) -> list[dict[str, Any]]:
        res = self.analyse(image)
        outputs = self.outputs(res.crops)
        rows, k = [], 0
        for row in res.rows:
            row = dict(row)
            if row["status"] == schema.OK:
                self.fill(row, outputs, k)
                k += 1
            rows.append(row)
        # Through the output file's column types, so the values are the ones a file holds.
        dim = int(outputs["embedding"].shape[1]) if "embedding" in outputs else 1
        fields = {f.name: f for f in (schema.SCORE_FIELDS if self.task == "quality"
                                      else schema.embed_fields(dim))}
        cols = {c: pa.array([r.get(c) for r in rows], type=fields[c].type).to_pylist() for c in columns}
        return [{c: cols[c][i] for c in columns} for i in range(len(rows))]


class Scorer(_FaceModel):
    """Face quality of images in memory, with the detector and the model loaded once.

    The keywords are those of :func:`facequal.score` (the CLI's flags, same defaults): ``model``
    (a bundled name or an ONNX path; the default model when None), ``contract``, ``faces``
    (``"subject"``, ``"largest"`` or ``"all"``), ``det_size``, ``det_threshold``, ``min_face``,
    ``pad``, ``aligned``, ``max_pixels``, ``device`` (``"cpu"`` or ``"cuda"``), ``threads``,
    ``batch_size``. The pipeline's workers use this class: :meth:`score_image` gives the values
    ``facequal score`` writes for the same file.
    """

    task = "quality"

    def score_image(self, image: Any) -> list[dict[str, Any]]:
        """The faces of one image, as the rows ``facequal score`` writes for its file.

        ``image``: a Pillow image (any mode: converted to RGB like a decoded file), an RGB uint8
        array of shape (H, W, 3), or a path (decoded like the pipeline does, EXIF rotation and
        large-JPEG reduction included). Returns one dict per face with the columns
        :data:`SCORE_IMAGE_COLUMNS` (``face_index``, ``quality``, ``quality_raw``, ``bbox``,
        ``landmarks``, ``det_score``, ``eye_distance``, the diagnostics (``yaw``, ``pitch``, ``roll``,
        ``sharpness``, ``brightness``, ``contrast``), ``n_faces``, ``width``, ``height``,
        ``status``, ``error``); an image without a usable face gives one row with
        ``face_index = -1`` and its status (``no_face``, ``too_large``, ...).
        """
        return self._image(image, SCORE_IMAGE_COLUMNS)


class Embedder(_FaceModel):
    """Face embeddings of images in memory, with the detector and the model loaded once.

    The keywords are those of :func:`facequal.embed` (``model`` defaults to the bundled face
    recogniser; ``flip_tta``: average with the mirrored crop, on by default for it).
    """

    task = "embedding"

    def __init__(self, model: str | os.PathLike[str] | None = None, *,
                 batch_size: int = opt.EMBED_BATCH_SIZE, **options: Any) -> None:
        super().__init__(model, batch_size=batch_size, **options)

    def embed_image(self, image: Any) -> list[dict[str, Any]]:
        """The faces of one image, as the rows ``facequal embed`` writes for its file: the
        columns :data:`EMBED_IMAGE_COLUMNS` (``embedding``, ``embedding_norm`` instead of the
        quality columns). ``image`` as for :meth:`Scorer.score_image`."""
        return self._image(image, EMBED_IMAGE_COLUMNS)
