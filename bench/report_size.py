"""Measure the size and build time of a `facequal report` for many faces, with synthetic thumbnails.

    python bench/report_size.py --faces 50000 [--thumb-size 80] [--format webp] [--jobs 2] [--out r.html]
    python bench/report_size.py --paged --faces 100000 250000 [--page-size 2000] [--single 30000 50000]

Faces are degraded copies of scikit-image's astronaut photo (blur, noise, darkening, JPEG
artefacts, downscaling, flips, small rotations), saved as aligned crops that many score rows
share (``--crops``, default 400 distinct ones); every row still gets its own thumbnail (decoded,
resized and encoded), so the size and the time are what a real report of that many faces costs.
Rows carry synthetic diagnostics (pose, eye distance, sharpness, brightness, contrast).

``--paged`` builds the paged form (``-o DIR/``) for each ``--faces`` count and prints its size
(the files' bytes and the disk blocks they take, as ``du``), the number of files and the build
time, then the one-file form for the ``--single`` counts for comparison, and a linear
extrapolation of the paged form to ``--extrapolate`` faces (default 1,000,000) from the two
largest counts measured. Also used to make the screenshot in docs/ (``--faces 400 --group
identity``). Needs scikit-image (a test dependency).
"""

from __future__ import annotations

import argparse
import io
import math
import os
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
    # synthetic diagnostics, worse as quality falls (the report's details, sorting and likely causes)
    bad = 1.0 - q.astype(np.float64)
    diag = {
        "yaw": rng.normal(0, 8 + 40 * bad), "pitch": rng.normal(0, 5 + 15 * bad), "roll": rng.normal(0, 4 + 15 * bad),
        "eye_distance": 70 * np.exp(-1.5 * bad * rng.uniform(0, 1.5, n_faces)),
        "sharpness": np.exp(-3 * bad * rng.uniform(0, 1.5, n_faces)),
        "brightness": rng.normal(125, 20 + 60 * bad), "contrast": 50 * np.exp(-bad * rng.uniform(0, 2, n_faces)),
    }
    for k, v in diag.items():
        cols[k] = list(v.astype(np.float32)) + [None] * n_bad
    cols["error"] = [None] * n_faces + ["synthetic: truncated file" if i % 2 else None for i in range(n_bad)]
    if n_identities:
        cols["identity"] = [f"person_{i % n_identities:03d}" for i in range(n_faces)] + [None] * n_bad
    types = {f.name: f.type for f in schema.SCORE_FIELDS} | dict.fromkeys(diag, pa.float32())
    return pa.table({k: pa.array(v, types.get(k, pa.string())) for k, v in cols.items()})


def disk_usage(folder: Path) -> tuple[int, int, int]:
    """(bytes in the files, bytes of disk blocks they take, number of files) under ``folder``."""
    size = blocks = n = 0
    for root, _dirs, files in os.walk(folder):
        for f in files:
            st = os.lstat(os.path.join(root, f))
            size += st.st_size
            blocks += st.st_blocks * 512
            n += 1
    return size, blocks, n


def paged(a: argparse.Namespace, tmp: Path, crops: list[tuple[str, float]]) -> None:
    """The paged form for each --faces count, the one-file form for each --single count."""
    import shutil

    from facequal.curate.report import build_report

    measured = []
    for n in a.faces:
        table = synthetic_scores(crops, n)
        out = tmp / f"paged-{n}"
        t0 = time.time()
        res = build_report(table, f"{out}/", page_size=a.page_size, thumb_size=a.thumb_size, fmt=a.format,
                           jobs=a.jobs, source="synthetic.parquet", threshold=a.threshold)
        took = time.time() - t0
        size, blocks, files = disk_usage(out)
        idx = (out / "index.html").stat().st_size
        pages = sorted((out / "pages").iterdir())
        page = pages[len(pages) // 2].stat().st_size
        print(f"paged {n:>9,} faces: {res.n_pages:,} pages of {a.page_size:,}, {files:,} files, "
              f"{size / 1e6:,.0f} MB in files, {blocks / 1e6:,.0f} MB on disk (du); index {idx / 1e3:,.0f} KB, "
              f"a page {page / 1e3:,.0f} KB; build {took:,.0f} s ({took / n * 1e3:.2f} ms per face)", flush=True)
        measured.append((n, size, blocks, files, took))
        shutil.rmtree(out)
    for n in a.single:
        table = synthetic_scores(crops, n)
        t0 = time.time()
        res = build_report(table, tmp / "single.html", max_faces=n, thumb_size=a.thumb_size, fmt=a.format,
                           jobs=a.jobs, overwrite=True, source="synthetic.parquet", threshold=a.threshold)
        took = time.time() - t0
        print(f"one file {n:>6,} faces: {res.size_bytes / 1e6:,.1f} MB, 1 file; build {took:,.0f} s "
              f"({took / n * 1e3:.2f} ms per face)", flush=True)
    if len(measured) >= 2 and a.extrapolate > measured[-1][0]:
        (n1, s1, b1, f1, t1), (n2, s2, b2, f2, t2) = sorted(measured)[-2:]
        n = a.extrapolate

        def line(v1: float, v2: float) -> float:  # linear in the number of faces, through the two points
            return v1 + (v2 - v1) * (n - n1) / (n2 - n1)

        print(f"paged {n:>9,} faces, EXTRAPOLATED linearly from {n1:,} and {n2:,} (not measured): "
              f"{line(f1, f2):,.0f} files, {line(s1, s2) / 1e6:,.0f} MB in files, {line(b1, b2) / 1e6:,.0f} MB "
              f"on disk, build {line(t1, t2):,.0f} s")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Report size for many faces (synthetic thumbnails).")
    ap.add_argument("--faces", type=int, nargs="+", default=[50_000])
    ap.add_argument("--crops", type=int, default=400, help="distinct synthetic crops shared by the rows")
    ap.add_argument("--thumb-size", type=int, default=80)
    ap.add_argument("--format", default="webp", choices=["webp", "jpeg"])
    ap.add_argument("--max-faces", type=int, default=None, help="default: --faces (no sampling)")
    ap.add_argument("--group", action="store_true", help="add an identity column and group by it")
    ap.add_argument("--bad", type=int, default=0, help="rows without a face to add")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--out", help="keep the page here (default: a temp file)")
    ap.add_argument("--paged", action="store_true", help="build the paged form (-o DIR/) for each --faces")
    ap.add_argument("--page-size", type=int, default=2000)
    ap.add_argument("--single", type=int, nargs="*", default=[30_000, 50_000],
                    help="with --paged: one-file reports of these sizes, for comparison")
    ap.add_argument("--extrapolate", type=int, default=1_000_000)
    ap.add_argument("--tmp", help="folder for the outputs (default: the system's temp folder)")
    a = ap.parse_args(argv)

    from facequal.curate.report import build_report

    with tempfile.TemporaryDirectory(dir=a.tmp) as tmp:
        t0 = time.time()
        crops = make_crops(Path(tmp) / "crops", a.crops)
        if a.paged:
            paged(a, Path(tmp), crops)
            return
        table = synthetic_scores(
            crops, a.faces[0], n_identities=max(1, a.faces[0] // 25) if a.group else 0, n_bad=a.bad
        )
        out = Path(a.out) if a.out else Path(tmp) / "report.html"
        t1 = time.time()
        res = build_report(
            table,
            out,
            group="identity" if a.group else None,
            max_faces=a.max_faces or a.faces[0],
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
