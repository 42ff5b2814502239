"""The columns of the files facequal writes, and the closed set of row statuses.

``(path, face_index)`` is the key of a face in every file. Rows that describe an image
without a usable face (no face found, unreadable, ...) have ``face_index = -1``.
"""

from __future__ import annotations

import pyarrow as pa

# Row statuses. Only "ok" rows carry a face (and a quality or an embedding).
OK = "ok"
NO_FACE = "no_face"          # decoded, but the detector found no face (above --min-face / --det-threshold)
UNREADABLE = "unreadable"    # not an image, truncated, corrupt, unsupported mode
TOO_LARGE = "too_large"      # more pixels than --max-pixels (decompression-bomb guard)
MISSING = "missing"          # the file does not exist or cannot be opened (permissions, vanished)
ERROR = "error"              # anything else that went wrong for this one input
STATUSES = (OK, NO_FACE, UNREADABLE, TOO_LARGE, MISSING, ERROR)

NO_FACE_INDEX = -1

POINT = pa.list_(pa.float32(), 2)

# Columns every score file has, in this order; carried manifest columns follow them.
SCORE_FIELDS: list[pa.Field] = [
    pa.field("path", pa.string(), nullable=False),
    pa.field("face_index", pa.int32(), nullable=False),
    pa.field("n_faces", pa.int32()),
    pa.field("status", pa.string(), nullable=False),
    pa.field("error", pa.string()),
    pa.field("quality", pa.float64()),   # float64: a float32 would tie faces near 1
    pa.field("quality_raw", pa.float32()),
    pa.field("det_score", pa.float32()),
    pa.field("bbox", pa.list_(pa.float32(), 4)),          # x1, y1, x2, y2 in image pixels
    pa.field("landmarks", pa.list_(POINT, 5)),            # le, re, nose, lm, rm as (x, y)
    pa.field("inter_eye", pa.float32()),                  # pixels between the eye landmarks
    pa.field("width", pa.int32()),
    pa.field("height", pa.int32()),
    pa.field("file_size", pa.int64()),
    pa.field("mtime_ns", pa.int64()),
    pa.field("crop_path", pa.string()),
]

# Columns of an embeddings file (`facequal embed`).
EMBED_FIELDS_HEAD: list[pa.Field] = [f for f in SCORE_FIELDS if f.name not in ("quality", "quality_raw")]


def embed_fields(dim: int) -> list[pa.Field]:
    """Embedding-file columns for a recogniser of ``dim`` dimensions."""
    return EMBED_FIELDS_HEAD + [
        pa.field("embedding", pa.list_(pa.float32(), dim)),   # L2-normalised
        pa.field("embedding_norm", pa.float32()),              # the raw vector's norm
    ]


SCORE_COLUMNS = [f.name for f in SCORE_FIELDS]
