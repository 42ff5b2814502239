"""Measure the size of a `facequal report` page for many faces, with synthetic face thumbnails.

    python bench/report_size.py --faces 50000 [--thumb-size 80] [--format webp] [--jobs 2] [--out r.html]

Faces are degraded copies of scikit-image's astronaut photo (blur, noise, darkening, JPEG
artefacts, downscaling, flips, small rotations), saved as aligned crops that many score rows
share; the page embeds one thumbnail per row, so its size is what a real 50,000-face report
costs. Also used to make the screenshot in docs/ (``--faces 400 --group identity``).
Needs scikit-image (a test dependency).
"""

from __future__ import annotations

import argparse
import io
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image, ImageEnhance, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facequal import schema  # noqa: E402

# Five landmarks of the astronaut's face (left eye, right eye, nose, mouth corners), 512x512 image.
ASTRONAUT_LANDMARKS = np.array([[206, 100], [249, 100], [226, 122], [209, 142], [245, 141]], float)


def astronaut() -> tuple[Image.Image, np.ndarray]:
    """The 256 x 256 region around the astronaut's face, and its landmarks."""
    from skimage import data

    x0, y0 = 96, 0
    im = Image.fromarray(data.astronaut()).crop((x0, y0, x0 + 256, y0 + 256))
    return im, ASTRONAUT_LANDMARKS - [x0, y0]


def degrade(
    im: Image.Image, lms: np.ndarray, level: float, rng: np.random.Generator
) -> tuple[Image.Image, np.ndarray]:
    """A degraded copy of ``im`` (level 0 = clean, 1 = very poor) and its moved landmarks."""
    w, h = im.size
    lms = lms.copy()
    if rng.random() < 0.5:  # mirror: x flips and left/right swap
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        lms[:, 0] = w - 1 - lms[:, 0]
        lms = lms[[1, 0, 2, 4, 3]]
    ang = float(rng.normal(0, 4 + 12 * level))
    c = lms.mean(axis=0)
    im = im.rotate(ang, resample=Image.Resampling.BILINEAR, center=tuple(c))
    a = math.radians(ang)  # PIL rotates counter-clockwise on screen (y down)
    rot = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
    lms = (lms - c) @ rot.T + c
    s = 1.0 - 0.85 * level * rng.uniform(0.5, 1.0)
    if s < 0.95:
        small = im.resize((max(8, int(w * s)), max(8, int(h * s))), Image.Resampling.BILINEAR)
        im = small.resize((w, h), Image.Resampling.BILINEAR)
    if level > 0.2:
        im = im.filter(ImageFilter.GaussianBlur(radius=3.0 * level * rng.uniform(0.3, 1.0)))
    im = ImageEnhance.Brightness(im).enhance(1.0 - 0.6 * level * rng.uniform(0.0, 1.0))
    im = ImageEnhance.Color(im).enhance(float(rng.uniform(0.6, 1.3)))
    arr = np.asarray(im, dtype=np.float32)
    arr = arr + rng.normal(0, 30 * level * rng.uniform(0.2, 1.0), arr.shape)
    im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=int(92 - 80 * level * rng.uniform(0.5, 1.0)))
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB"), lms


def make_crops(out_dir: Path, n: int, seed: int = 0, size: int = 96) -> list[tuple[str, float]]:
    """``n`` degraded, aligned face crops as JPEG files; returns (path, synthetic quality)."""
    from facequal.curate.report.thumbs import face_thumbnail

    rng = np.random.default_rng(seed)
    base, base_lms = astronaut()
    out = []
    out_dir.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        level = float(rng.beta(1.3, 1.8))
        im, lms = degrade(base, base_lms, level, rng)
        crop = face_thumbnail(im, lms, size)
        p = out_dir / f"crop_{i:04d}.jpg"
        crop.save(p, quality=90)
        q = float(np.clip(1.0 - level + rng.normal(0, 0.07), 0.0, 1.0))
        out.append((str(p), q))
    return out


def synthetic_scores(
    crops: list[tuple[str, float]], n_faces: int, *, n_identities: int = 0, n_bad: int = 0, seed: int = 0
) -> pa.Table:
    """A score table of ``n_faces`` faces whose crop_path cycles through ``crops``."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(crops), n_faces)
    paths = [
        f"synthetic/{f'id_{i % n_identities:03d}/' if n_identities else ''}img_{i:06d}.jpg"
        for i in range(n_faces)
    ]
    q = np.array([crops[j][1] for j in idx], dtype=np.float32)
    cols: dict[str, list] = {
        "path": paths + [f"synthetic/broken_{i}.jpg" for i in range(n_bad)],
        "face_index": [0] * n_faces + [-1] * n_bad,
        "status": [schema.OK] * n_faces
        + [schema.UNREADABLE if i % 2 else schema.NO_FACE for i in range(n_bad)],
        "quality": list(q) + [None] * n_bad,
        "quality_raw": list(np.clip(q * 0.9 + 0.05, 0, 1)) + [None] * n_bad,
        "crop_path": [crops[j][0] for j in idx] + [None] * n_bad,
    }
    cols["error"] = [None] * n_faces + ["synthetic: truncated file" if i % 2 else None for i in range(n_bad)]
    if n_identities:
        cols["identity"] = [f"person_{i % n_identities:03d}" for i in range(n_faces)] + [None] * n_bad
    types = {f.name: f.type for f in schema.SCORE_FIELDS}
    return pa.table({k: pa.array(v, types.get(k, pa.string())) for k, v in cols.items()})


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Report size for many faces (synthetic thumbnails).")
    ap.add_argument("--faces", type=int, default=50_000)
    ap.add_argument("--crops", type=int, default=400, help="distinct synthetic crops shared by the rows")
    ap.add_argument("--thumb-size", type=int, default=80)
    ap.add_argument("--format", default="webp", choices=["webp", "jpeg"])
    ap.add_argument("--max-faces", type=int, default=None, help="default: --faces (no sampling)")
    ap.add_argument("--group", action="store_true", help="add an identity column and group by it")
    ap.add_argument("--bad", type=int, default=0, help="rows without a face to add")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--out", help="keep the page here (default: a temp file)")
    a = ap.parse_args(argv)

    from facequal.curate.report import build_report

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.time()
        crops = make_crops(Path(tmp) / "crops", a.crops)
        table = synthetic_scores(
            crops, a.faces, n_identities=max(1, a.faces // 25) if a.group else 0, n_bad=a.bad
        )
        out = Path(a.out) if a.out else Path(tmp) / "report.html"
        t1 = time.time()
        res = build_report(
            table,
            out,
            group="identity" if a.group else None,
            max_faces=a.max_faces or a.faces,
            thumb_size=a.thumb_size,
            fmt=a.format,
            jobs=a.jobs,
            overwrite=True,
            source="synthetic.parquet",
            title="facequal report: synthetic faces",
            threshold=a.threshold,
        )
        t2 = time.time()
        print(
            f"{res.n_shown:,} faces, {a.thumb_size}px {a.format}: {res.size_bytes:,} bytes "
            f"({res.size_bytes / 1e6:.1f} MB, {res.size_bytes / max(1, res.n_shown) / 1e3:.2f} KB per face); "
            f"crops {t1 - t0:.1f} s, report {t2 - t1:.1f} s"
        )


if __name__ == "__main__":
    main()
