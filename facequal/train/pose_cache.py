"""Add synthetic head-turn variants (``yaw1..yawN``) to a built training cache, without rebuilding it.

Each photo of the base cache is decoded, detected and aligned again exactly as the builder did
(:func:`facequal.train.build_cache.prepare_photo`); if the face looks about straight ahead
(``|yaw|`` from its five points below ``max_frontal_yaw``), its clean or mirrored canonical crop is
turned by a random angle (:func:`facequal.train.pose.synthetic_yaw`), given the base cache's
random border bands, and the teacher's and the student's inputs are cut from it. The teacher
labels every turned crop itself, so a turn that the recogniser survives keeps a high label.

The output holds all the base rows, then the new ones (same identities and photo ids, the
variant names extended), so a training config selects them by name (``"variants"``)::

    python -m facequal.train.pose_cache --data ../shared/data --base runs/cache3/train --out runs/cache4/train

The output must not exist (nothing is overwritten); it is written under a staging name and
renamed when complete.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class PoseConfig:
    """How to add the turned variants. Angles in degrees, drawn uniformly from ``yaw_range`` with a
    random sign; ``max_frontal_yaw`` picks the photos that are turned."""

    data_root: str
    base: str
    out: str
    n_yaw: int = 1
    yaw_range: tuple[float, float] = (20.0, 60.0)
    max_frontal_yaw: float = 25.0
    radius_per_eyes: float = 1.2
    seed: int = 0
    batch: int = 64
    jobs: int = 1
    limit: int | None = None

    def check(self) -> None:
        lo, hi = self.yaw_range
        if not (self.n_yaw >= 1 and 0 < lo <= hi <= 75 and self.max_frontal_yaw > 0):
            raise ValueError("need n_yaw >= 1, 0 < yaw_range[0] <= yaw_range[1] <= 75 and max_frontal_yaw > 0")


def yaw_names(n: int) -> list[str]:
    """Variant names of the turned crops."""
    return [f"yaw{i + 1}" for i in range(n)]


def prepare_turned(path: str, image_id: int, cfg: PoseConfig, build: dict[str, Any]) -> dict[str, Any] | None:
    """Teacher and student crops of the turned variants of one photo (None: no face, or not frontal)."""
    from PIL import ImageOps

    from facequal.pipeline.align import align_face
    from facequal.pipeline.diagnostics import head_pose
    from facequal.train.build_cache import _framing, subject_face
    from facequal.train.degrade import border_bands
    from facequal.train.framing import crop_template, hflip_landmarks
    from facequal.train.pose import synthetic_yaw

    found = subject_face(Path(cfg.data_root) / path)
    if found is None:
        return None
    img, face = found
    yaw = head_pose(face.landmarks)[0]
    if not (abs(yaw) < cfg.max_frontal_yaw):  # NaN too
        return None
    fr = _framing()
    template = crop_template(fr.contract)
    teacher, student = [], []
    aligned: dict[bool, np.ndarray] = {}  # mirrored or not -> canonical crop, aligned once
    for k in range(cfg.n_yaw):
        rng = np.random.default_rng([cfg.seed, image_id, k, 7])
        mirrored = bool(build.get("flip", True) and rng.random() < 0.5)
        if mirrored not in aligned:
            aligned[mirrored] = (align_face(ImageOps.mirror(img), hflip_landmarks(face.landmarks, img.size[0]),
                                            fr.contract) if mirrored else align_face(img, face.landmarks, fr.contract))
        canon = aligned[mirrored]
        angle = float(rng.uniform(*cfg.yaw_range)) * (1 if rng.random() < 0.5 else -1)
        c = synthetic_yaw(canon, template, angle, cfg.radius_per_eyes)
        if build.get("bands_p", 0) > 0:
            c = border_bands(c, rng, fr.student_box, p_side=build["bands_p"], max_frac=build["bands_max"])[0]
        teacher.append(fr.teacher_crop(c))
        student.append(fr.student_crop(c))
    return {"teacher": np.stack(teacher), "student": np.stack(student)}


def _prepare_many(jobs: list[tuple[str, int]], cfg: PoseConfig, build: dict[str, Any]) -> list:
    if cfg.jobs <= 1:
        return [prepare_turned(p, i, cfg, build) for p, i in jobs]
    from joblib import Parallel, delayed

    return Parallel(n_jobs=cfg.jobs, batch_size=4)(delayed(prepare_turned)(p, i, cfg, build) for p, i in jobs)


def add_yaw_variants(cfg: PoseConfig) -> Path:
    """Write ``cfg.out``: the base cache plus the turned variants of its frontal photos."""
    from facequal.train.build_cache import Teacher
    from facequal.train.cache import CacheWriter, TrainingCache

    cfg.check()
    out = Path(cfg.out)
    if out.exists():
        raise FileExistsError(f"{out} exists; choose a new output folder")
    base = TrainingCache.open(cfg.base)
    build = dict(base.meta.get("build", {}))
    names = list(base.meta["variants"])
    new = yaw_names(cfg.n_yaw)
    if set(new) & set(names):
        raise ValueError(f"{cfg.base} already has variants {sorted(set(new) & set(names))}")
    teacher = Teacher(build.get("feat_pool", "avg"))
    if teacher.contract.name != base.meta.get("teacher", teacher.contract.name):
        raise ValueError(f"{cfg.base} was labelled by {base.meta['teacher']}, not {teacher.contract.name}")
    photo_ids, first_rows = np.unique(np.asarray(base.image), return_index=True)
    first = dict(zip(photo_ids.tolist(), first_rows.tolist(), strict=True))  # photo id -> one of its rows
    if cfg.limit:
        photo_ids = photo_ids[:cfg.limit]
    identity, source = np.asarray(base.identity), np.asarray(base.source)
    shapes = {k: tuple(v.shape[1:]) for k, v in base.arrays.items()
              if k not in ("identity", "source", "image", "variant")}
    staging = out.with_name(out.name + ".staging")
    if staging.exists():
        raise FileExistsError(f"{staging} exists (an interrupted run?); remove it first")
    writer = CacheWriter(staging, base.n + photo_ids.size * cfg.n_yaw, shapes)
    for start in range(0, base.n, 4096):
        writer.append(**{k: np.asarray(v[start:start + 4096]) for k, v in base.arrays.items()})
    paths = base.meta["paths"]
    turned = 0
    for b, start in enumerate(range(0, photo_ids.size, cfg.batch)):
        if b % 20 == 0:
            print(f"{start} of {photo_ids.size} photos, {turned} turned", file=sys.stderr, flush=True)
        chunk = [int(i) for i in photo_ids[start:start + cfg.batch]]
        prepared = _prepare_many([(paths[i], i) for i in chunk], cfg, build)
        ok = [(i, p) for i, p in zip(chunk, prepared, strict=True) if p is not None]
        if not ok:
            continue
        emb, feat = teacher(np.concatenate([p["teacher"] for _, p in ok]))
        at = 0
        for i, p in ok:
            k = len(p["student"])
            r = first[i]
            writer.append(crops_student=p["student"], identity=np.full(k, identity[r]),
                          source=np.full(k, source[r]), image=np.full(k, i),
                          variant=np.arange(len(names), len(names) + k), emb=emb[at:at + k],
                          feat=feat[at:at + k], **({"crops_teacher": p["teacher"]}
                                                   if "crops_teacher" in base.arrays else {}))
            at += k
            turned += 1
    meta = {k: v for k, v in base.meta.items() if k not in ("n", "format", "format_version", "row_shapes")}
    meta["variants"] = names + new
    meta["pose_variants"] = {**asdict(cfg), "photos_turned": turned, "photos_seen": int(photo_ids.size)}
    writer.close(meta)
    if out.exists():  # appeared while we worked: never renamed over (an empty folder would be)
        raise FileExistsError(f"{out} appeared during the run; the new cache is left in {staging}")
    staging.rename(out)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="the data root the base cache was built from")
    ap.add_argument("--base", required=True, help="the training cache to extend (read only)")
    ap.add_argument("--out", required=True, help="the new cache (must not exist)")
    ap.add_argument("--n-yaw", type=int, default=1)
    ap.add_argument("--yaw-range", type=float, nargs=2, default=(20.0, 60.0))
    ap.add_argument("--max-frontal-yaw", type=float, default=25.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None, help="only the first photos (smoke runs)")
    a = ap.parse_args(argv)
    cfg = PoseConfig(data_root=a.data, base=a.base, out=a.out, n_yaw=a.n_yaw, yaw_range=tuple(a.yaw_range),
                     max_frontal_yaw=a.max_frontal_yaw, seed=a.seed, jobs=a.jobs, limit=a.limit)
    try:
        path = add_yaw_variants(cfg)
    except (FileExistsError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    pv = meta["pose_variants"]
    print(f"{path}: {meta['n']} rows; {pv['photos_turned']} of {pv['photos_seen']} photos turned")


if __name__ == "__main__":
    main()
