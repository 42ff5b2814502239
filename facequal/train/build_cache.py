"""Build the training / validation caches from ``../shared/data`` (detection, alignment, teacher, once).

The split (``../shared/data/README.md``, issue 4):

- **train**: all of ``celeba/``; LFW people of pair folds 1-3 and LFW people in no pair; CFP
  splits 1-3 and 6-8;
- **val**: LFW people of pair folds 4-5; CFP splits 4-5;
- **test**: LFW people of pair folds 6-10 -- never in a cache; their photos are only embedded
  (clean) to check that no CelebA identity is one of them: a CelebA identity whose teacher
  centroid is closer than ``overlap_threshold`` (cosine) to a test person's centroid is dropped.

A person who appears in several fold groups goes to the most protected one (test > val > train).

Each photo: decode, detect (the largest face; tight CFP crops are retried on a padded canvas
by the detector), align once to the canonical framing (:mod:`facequal.train.framing`), then
its variants -- ``clean``, ``flip`` (the mirrored photo, re-aligned with mirrored landmarks) and
``deg1..degN`` (:func:`facequal.train.degrade.random_degradation` of the clean canonical crop)
-- each with random border bands (:func:`facequal.train.degrade.border_bands`, the same for
every source; the validation cache has none by default). From each variant's canonical crop
the teacher's 150x150 input (a slice) and the student's 96x96 crop (a fixed similarity) are cut;
the teacher (dlib ResNet ONNX) gives the embedding (L2-normalised) and the features (globally
average-pooled by default). The student crops and teacher outputs go into a
:mod:`facequal.train.cache` directory.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SPLITS = ("train", "val", "test")
SOURCES = ("lfw", "cfp", "celeba")
LFW_TRAIN_FOLDS = (1, 2, 3)
LFW_VAL_FOLDS = (4, 5)
LFW_TEST_FOLDS = (6, 7, 8, 9, 10)
CFP_TRAIN_SPLITS = (1, 2, 3, 6, 7, 8)
CFP_VAL_SPLITS = (4, 5)


@dataclass(frozen=True)
class Item:
    """One photo to cache: its path, identity key (``source:name``), source and split."""

    path: str
    identity: str
    source: str
    split: str


# -- the split (pure, unit-tested on synthetic lists) ---------------------------------------------


def read_lfw_pairs(path: str | Path, n_folds: int = 10) -> list[list[tuple[str, ...]]]:
    """LFW View 2 pairs: a header line, then ``n_folds`` equal folds of rows (3 or 4 fields each)."""
    lines = [ln.rstrip("\n") for ln in Path(path).read_text(encoding="utf-8").splitlines() if ln.strip()]
    rows = [tuple(ln.split("\t")) for ln in lines[1:]]
    if len(rows) % n_folds:
        raise ValueError(f"{path}: {len(rows)} pair rows do not split into {n_folds} folds")
    per = len(rows) // n_folds
    for r in rows:
        if len(r) not in (3, 4):
            raise ValueError(f"{path}: bad pair row {r!r}")
    return [rows[f * per:(f + 1) * per] for f in range(n_folds)]


def lfw_people_folds(folds: Sequence[Sequence[tuple[str, ...]]]) -> dict[str, set[int]]:
    """Each person named in a pair -> the (1-based) folds where they appear."""
    out: dict[str, set[int]] = {}
    for f, rows in enumerate(folds, start=1):
        for r in rows:
            names = (r[0],) if len(r) == 3 else (r[0], r[2])
            for name in names:
                out.setdefault(name, set()).add(f)
    return out


def lfw_split(name: str, people_folds: dict[str, set[int]]) -> str:
    """``test`` if in any of folds 6-10, else ``val`` if in 4-5, else ``train`` (folds 1-3 or no pair)."""
    folds = people_folds.get(name, set())
    if folds & set(LFW_TEST_FOLDS):
        return "test"
    if folds & set(LFW_VAL_FOLDS):
        return "val"
    return "train"


def cfp_split(split: int) -> str:
    """CFP splits 1-3 and 6-8 train, 4-5 validation."""
    if split in CFP_TRAIN_SPLITS:
        return "train"
    if split in CFP_VAL_SPLITS:
        return "val"
    raise ValueError(f"unexpected CFP split {split}")


def lfw_items(names_to_files: dict[str, list[str]], people_folds: dict[str, set[int]]) -> list[Item]:
    """LFW photos (``name -> relative paths``) with their split."""
    return [Item(path, f"lfw:{name}", "lfw", lfw_split(name, people_folds))
            for name in sorted(names_to_files) for path in sorted(names_to_files[name])]


def cfp_items(rows: Iterable[dict[str, str]]) -> list[Item]:
    """CFP photos from ``identities.tsv`` rows (path, identity, pose, split)."""
    return [Item(r["path"], f"cfp:{r['identity']}", "cfp", cfp_split(int(r["split"]))) for r in rows]


def celeba_items(rows: Iterable[dict[str, str]]) -> list[Item]:
    """CelebA photos from ``identities.tsv`` rows (path, identity): all for training."""
    return [Item(r["path"], f"celeba:{r['identity']}", "celeba", "train") for r in rows]


def check_disjoint(items: Sequence[Item]) -> None:
    """Raise if an identity has photos in two splits."""
    seen: dict[str, str] = {}
    for it in items:
        if seen.setdefault(it.identity, it.split) != it.split:
            raise ValueError(f"identity {it.identity} is in both {seen[it.identity]} and {it.split}")


def _read_tsv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def collect_items(data_root: str | Path) -> list[Item]:
    """Every photo of ``lfw/``, ``cfp/`` and ``celeba/`` under ``data_root``, with its split.

    Paths are relative to ``data_root`` (``lfw/Name/Name_0001.jpg``, ``cfp/...``, ``celeba/...``).
    """
    root = Path(data_root)
    people = lfw_people_folds(read_lfw_pairs(root / "lfw-pairs.tsv"))
    lfw_files = {d.name: [f"lfw/{d.name}/{f.name}" for f in sorted(d.glob("*.jpg"))]
                 for d in sorted((root / "lfw").iterdir()) if d.is_dir()}
    items = lfw_items(lfw_files, people)
    items += [Item(f"cfp/{it.path}", it.identity, it.source, it.split)
              for it in cfp_items(_read_tsv(root / "cfp" / "identities.tsv"))]
    items += [Item(f"celeba/{it.path}", it.identity, it.source, it.split)
              for it in celeba_items(_read_tsv(root / "celeba" / "identities.tsv"))]
    check_disjoint(items)
    return items


def split_summary(items: Sequence[Item]) -> dict[str, dict[str, dict[str, int]]]:
    """Photos and people per split and source (for the log and the model card)."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    people: dict[tuple[str, str], set[str]] = {}
    for it in items:
        d = out.setdefault(it.split, {}).setdefault(it.source, {"photos": 0, "people": 0})
        d["photos"] += 1
        people.setdefault((it.split, it.source), set()).add(it.identity)
    for (split, source), ids in people.items():
        out[split][source]["people"] = len(ids)
    return out


# -- the CelebA / test-people check ---------------------------------------------------------------


def centroids(emb: np.ndarray, identity: Sequence[Any]) -> tuple[list[Any], np.ndarray]:
    """Per identity, the L2-normalised mean of its L2-normalised embeddings."""
    e = np.asarray(emb, dtype=np.float64)
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    ident = np.asarray(identity)
    keys = list(dict.fromkeys(ident.tolist()))
    c = np.stack([e[ident == k].mean(axis=0) for k in keys])
    return keys, c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)


def overlapping_identities(train_emb: np.ndarray, train_identity: Sequence[Any], test_emb: np.ndarray,
                           test_identity: Sequence[Any], threshold: float) -> list[dict[str, Any]]:
    """Training identities whose centroid has cosine >= ``threshold`` with some test person's centroid.

    Returns one record per such training identity (its closest test person and the cosine),
    most similar first.
    """
    tk, tc = centroids(train_emb, train_identity)
    sk, sc = centroids(test_emb, test_identity)
    sim = tc @ sc.T
    best = sim.argmax(axis=1)
    out = [{"identity": tk[i], "closest_test": sk[best[i]], "cosine": float(sim[i, best[i]])}
           for i in range(len(tk)) if sim[i, best[i]] >= threshold]
    return sorted(out, key=lambda r: -r["cosine"])


# -- building a cache (needs the detector and the teacher) ---------------------------------------


@dataclass
class BuildConfig:
    """How to build one cache.

    ``split`` is ``train`` or ``val``; ``limit`` keeps only the first photos (smoke runs).
    """

    data_root: str
    out: str
    split: str = "train"
    n_degraded: int = 3
    flip: bool = True
    bands_p: float = 0.25
    bands_max: float = 0.2
    feat_pool: str = "avg"
    seed: int = 0
    batch: int = 64
    jobs: int = 1
    limit: int | None = None
    sources: tuple[str, ...] = SOURCES
    check_test_overlap: bool = True
    # Centroid cosines of the same person (two halves of their photos) are >= 0.977 for LFW
    # training people, while 99% of different people's nearest centroids stay below 0.969: the
    # averaging pushes dlib's already compressed cosines up, so 0.93 would flag nearly everyone.
    overlap_threshold: float = 0.975
    keep_teacher_crops: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def for_validation(cls, data_root: str, out: str, **kw: Any) -> BuildConfig:
        """Validation defaults: clean crops only (no flips, degradations or bands)."""
        return cls(data_root=data_root, out=out, split="val", n_degraded=0, flip=False, bands_p=0.0,
                   check_test_overlap=False, **kw)


_WORKER: dict[str, Any] = {}


def _detector() -> Any:
    if "det" not in _WORKER:
        from facequal.options import DET_SIZE, DET_THRESHOLD
        from facequal.pipeline.detect import RetinaFace

        _WORKER["det"] = RetinaFace(det_size=DET_SIZE, threshold=DET_THRESHOLD)
    return _WORKER["det"]


def _framing() -> Any:
    if "framing" not in _WORKER:
        from facequal.models.dlib_resnet import DLIB_CONTRACT
        from facequal.train.framing import canonical_framing, student_contract

        _WORKER["framing"] = canonical_framing(DLIB_CONTRACT, student_contract())
    return _WORKER["framing"]


def variant_names(cfg: BuildConfig) -> list[str]:
    """Variant kinds in cache order: clean, flip?, deg1..degN."""
    return ["clean"] + (["flip"] if cfg.flip else []) + [f"deg{i + 1}" for i in range(cfg.n_degraded)]


def subject_face(path: str | Path) -> tuple[Any, Any] | None:
    """The decoded photo and its subject's detection, as every cached crop starts (None: the
    photo cannot be decoded or has no face)."""
    from facequal.pipeline.decode import DecodeError, load_rgb
    from facequal.pipeline.detect import pick_centred

    try:
        img = load_rgb(path)
    except DecodeError:
        return None
    faces = _detector().detect(img)
    if not faces:
        return None
    # The photo's subject, not the largest face: a larger bystander at the edge would give the
    # photo another person's labels.
    return img, pick_centred(faces, img.size[0], img.size[1])[0]


def prepare_photo(path: str, image_id: int, cfg: BuildConfig) -> dict[str, Any] | None:
    """Detect, align and vary one photo: the teacher and student crops of each variant (None: no face)."""
    from PIL import ImageOps

    from facequal.pipeline.align import align_face
    from facequal.train.degrade import border_bands, random_degradation
    from facequal.train.framing import hflip_landmarks

    found = subject_face(Path(cfg.data_root) / path)
    if found is None:
        return None
    img, face = found
    fr = _framing()
    canon = {"clean": align_face(img, face.landmarks, fr.contract)}
    if cfg.flip:
        mirrored = hflip_landmarks(face.landmarks, img.size[0])
        canon["flip"] = align_face(ImageOps.mirror(img), mirrored, fr.contract)
    region = fr.face_region()
    for d in range(cfg.n_degraded):
        rng = np.random.default_rng([cfg.seed, image_id, d, 1])
        base = canon["flip"] if cfg.flip and rng.random() < 0.5 else canon["clean"]
        canon[f"deg{d + 1}"] = random_degradation(base, rng, region)[0]
    teacher, student, names = [], [], []
    for v, name in enumerate(variant_names(cfg)):
        c = canon[name]
        if cfg.bands_p > 0:
            rng = np.random.default_rng([cfg.seed, image_id, v, 2])
            c = border_bands(c, rng, fr.student_box, p_side=cfg.bands_p, max_frac=cfg.bands_max)[0]
        teacher.append(fr.teacher_crop(c))
        student.append(fr.student_crop(c))
        names.append(v)
    return {"teacher": np.stack(teacher), "student": np.stack(student), "variant": np.asarray(names),
            "det_score": float(face.score)}


class Teacher:
    """The dlib ResNet ONNX: embedding (L2-normalised) and features (pooled or not) of teacher crops."""

    def __init__(self, feat_pool: str = "avg") -> None:
        import onnxruntime as ort

        from facequal.models.dlib_resnet import DLIB_CONTRACT, dlib_model_path

        self.contract = DLIB_CONTRACT
        self.session = ort.InferenceSession(str(dlib_model_path()), providers=["CPUExecutionProvider"])
        self.feat_pool = feat_pool
        self.features_output = DLIB_CONTRACT.extra.get("features_output", "features")

    def __call__(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from facequal.contract import to_tensor

        x = to_tensor(crops, self.contract)
        emb, feat = self.session.run([self.contract.output_name, self.features_output],
                                     {self.contract.input_name: x})
        emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        if self.feat_pool == "avg" and feat.ndim == 4:
            feat = feat.mean(axis=(2, 3))
        return emb.astype(np.float32), feat.astype(np.float16)


def _prepare_many(paths: Sequence[tuple[str, int]], cfg: BuildConfig) -> list[dict[str, Any] | None]:
    if cfg.jobs <= 1:
        return [prepare_photo(p, i, cfg) for p, i in paths]
    from joblib import Parallel, delayed

    return Parallel(n_jobs=cfg.jobs, batch_size=4)(delayed(prepare_photo)(p, i, cfg) for p, i in paths)


def embed_clean(items: Sequence[Item], cfg: BuildConfig, teacher: Teacher) -> tuple[np.ndarray, list[str]]:
    """Teacher embeddings of the clean crops of ``items`` (for the test-people check)."""
    clean_cfg = BuildConfig(data_root=cfg.data_root, out=cfg.out, n_degraded=0, flip=False, bands_p=0.0,
                            jobs=cfg.jobs)
    embs, ids = [], []
    for start in range(0, len(items), cfg.batch):
        chunk = items[start:start + cfg.batch]
        prepared = _prepare_many([(it.path, -1) for it in chunk], clean_cfg)
        crops = [p["teacher"][0] for p in prepared if p is not None]
        if crops:
            embs.append(teacher(np.stack(crops))[0])
            ids += [it.identity for it, p in zip(chunk, prepared, strict=True) if p is not None]
    return (np.concatenate(embs) if embs else np.zeros((0, 128), np.float32)), ids


def build_cache(cfg: BuildConfig) -> Path:
    """Build the cache of ``cfg.split`` into ``cfg.out``; returns its path (see the module docstring)."""
    from facequal.train.cache import CacheWriter, TrainingCache, filter_cache

    if cfg.split not in ("train", "val"):
        raise ValueError("only train and val caches are built; test photos never go into a cache")
    all_items = collect_items(cfg.data_root)
    items = [it for it in all_items if it.split == cfg.split and it.source in cfg.sources]
    if cfg.limit:
        items = items[:cfg.limit]
    fr = _framing()
    teacher = Teacher(cfg.feat_pool)
    out = Path(cfg.out)
    staging = out.with_name(out.name + ".staging") if cfg.check_test_overlap and cfg.split == "train" else out
    names = variant_names(cfg)
    sw, sh = fr.student_size
    fdim = tuple(teacher.session.get_outputs()[1].shape[1:])
    feat_shape = fdim[:1] if cfg.feat_pool == "avg" else fdim
    shapes: dict[str, tuple[int, ...]] = {"crops_student": (sh, sw, 3), "emb": (128,),
                                          "feat": tuple(int(v) for v in feat_shape)}
    if cfg.keep_teacher_crops:
        shapes["crops_teacher"] = (fr.teacher_size[1], fr.teacher_size[0], 3)
    writer = CacheWriter(staging, len(items) * len(names), shapes)
    identities = sorted({it.identity for it in items})
    ident_id = {k: i for i, k in enumerate(identities)}
    sources = list(SOURCES)
    no_face: list[str] = []
    for start in range(0, len(items), cfg.batch):
        chunk = items[start:start + cfg.batch]
        prepared = _prepare_many([(it.path, start + j) for j, it in enumerate(chunk)], cfg)
        ok = [(j, it, p) for j, (it, p) in enumerate(zip(chunk, prepared, strict=True)) if p is not None]
        no_face += [it.path for it, p in zip(chunk, prepared, strict=True) if p is None]
        if not ok:
            continue
        emb_all, feat_all = teacher(np.concatenate([p["teacher"] for _, _, p in ok]))
        at = 0
        for j, it, p in ok:
            k = len(p["variant"])
            rows = {"crops_student": p["student"], "identity": np.full(k, ident_id[it.identity]),
                    "source": np.full(k, sources.index(it.source)), "image": np.full(k, start + j),
                    "variant": p["variant"], "emb": emb_all[at:at + k], "feat": feat_all[at:at + k]}
            if cfg.keep_teacher_crops:
                rows["crops_teacher"] = p["teacher"]
            writer.append(**rows)
            at += k
    meta = {"sources": sources, "identities": identities, "variants": names,
            "paths": [it.path for it in items], "split": cfg.split, "no_face": no_face,
            "build": {k: v for k, v in asdict(cfg).items() if k != "extra"},
            "framing": {"canonical": fr.contract.to_dict(), "student_matrix": fr.student_matrix.tolist(),
                        "teacher_offset": list(fr.teacher_offset)},
            "teacher": teacher.contract.name, "summary": split_summary(items)}
    writer.close(meta)
    if staging == out:
        return out
    # drop CelebA identities that are LFW test people (teacher centroids of clean crops)
    cache = TrainingCache.open(staging)
    test_items = [it for it in all_items if it.split == "test"]
    test_emb, test_ids = embed_clean(test_items, cfg, teacher)
    clean = np.asarray(cache.variant) == 0
    celeba = clean & (np.asarray(cache.source) == sources.index("celeba"))
    dropped: list[dict[str, Any]] = []
    if celeba.any() and test_emb.size:
        ids = [identities[i] for i in np.asarray(cache.identity)[celeba]]
        dropped = overlapping_identities(np.asarray(cache.emb)[celeba], ids, test_emb, test_ids,
                                         cfg.overlap_threshold)
    drop_ids = [identities.index(d["identity"]) for d in dropped]
    keep = ~np.isin(np.asarray(cache.identity), drop_ids)
    filter_cache(staging, out, keep, {"dropped_test_overlap": dropped,
                                      "overlap_threshold": cfg.overlap_threshold})
    shutil.rmtree(staging, ignore_errors=True)
    (out / "test_overlap.json").write_text(json.dumps(dropped, indent=1), encoding="utf-8")
    return out
