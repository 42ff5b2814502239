"""The training cache: write, read memory-mapped, incomplete caches, filtering."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facequal.train.cache import CacheError, CacheWriter, TrainingCache, filter_cache, merge_caches, write_cache

META = {"sources": ["lfw", "cfp"], "identities": ["a", "b", "c"], "variants": ["clean", "flip"]}


def _arrays(n: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n, 128)).astype(np.float32)
    return {
        "crops_student": rng.integers(0, 256, (n, 96, 96, 3), dtype=np.uint8),
        "identity": np.arange(n) % 3, "source": np.arange(n) % 2, "image": np.arange(n) // 2,
        "variant": np.arange(n) % 2, "emb": emb / np.linalg.norm(emb, axis=1, keepdims=True),
        "feat": rng.normal(size=(n, 256)).astype(np.float16),
    }


def test_round_trip_memory_mapped(tmp_path: Path) -> None:
    arrays = _arrays()
    write_cache(tmp_path / "c", arrays, META)
    c = TrainingCache.open(tmp_path / "c")
    assert len(c) == 10 and c.student_size == 96 and c.source_id("cfp") == 1
    for name, value in arrays.items():
        got = getattr(c, name)
        assert isinstance(got, np.memmap) or isinstance(got.base, np.memmap)
        assert np.array_equal(got, value.astype(got.dtype))
    assert c.identity.dtype == np.int32 and c.feat.dtype == np.float16
    assert c.meta["variants"] == ["clean", "flip"] and c.meta["row_shapes"]["feat"] == [256]


def test_writer_in_blocks_with_spare_capacity(tmp_path: Path) -> None:
    a = _arrays(6)
    w = CacheWriter(tmp_path / "c", capacity=20, shapes={"crops_student": (96, 96, 3), "emb": (128,),
                                                         "feat": (256,)})
    w.append(**{k: v[:4] for k, v in a.items()})
    assert not (tmp_path / "c" / "meta.json").exists()
    with pytest.raises(CacheError):
        TrainingCache.open(tmp_path / "c")          # incomplete until closed
    w.append(**{k: v[4:] for k, v in a.items()})
    with pytest.raises(CacheError, match="exactly"):
        w.append(identity=a["identity"])
    w.close(META)
    c = TrainingCache.open(tmp_path / "c")
    assert len(c) == 6 and c.emb.shape == (6, 128)   # the spare rows are not seen
    assert np.array_equal(c.image, a["image"])


def test_meta_and_shapes_are_checked(tmp_path: Path) -> None:
    with pytest.raises(CacheError, match="meta needs"):
        write_cache(tmp_path / "c", _arrays(), {"sources": []})
    with pytest.raises(CacheError, match="row shape"):
        CacheWriter(tmp_path / "d", 3, {"emb": (128,)})


def test_filter_cache(tmp_path: Path) -> None:
    a = _arrays()
    write_cache(tmp_path / "c", a, META)
    keep = a["identity"] != 1
    filter_cache(tmp_path / "c", tmp_path / "f", keep, {"dropped": ["b"]})
    f = TrainingCache.open(tmp_path / "f")
    assert len(f) == int(keep.sum()) and 1 not in set(f.identity.tolist())
    assert np.array_equal(f.crops_student, a["crops_student"][keep])
    assert f.meta["dropped"] == ["b"] and f.meta["identities"] == META["identities"]


def test_merge_caches_remaps_ids_by_name(tmp_path: Path) -> None:
    a = _arrays(6, seed=1)
    b = _arrays(4, seed=2)
    write_cache(tmp_path / "a", a, {**META, "paths": [f"a{i}" for i in range(3)]})
    meta_b = {"sources": ["celeba"], "identities": ["c", "z"], "variants": ["clean", "flip"],
              "paths": ["b0", "b1"]}
    b["identity"] = np.arange(4) % 2
    b["source"] = np.zeros(4, int)
    write_cache(tmp_path / "b", b, meta_b)
    m = TrainingCache.open(merge_caches([tmp_path / "a", tmp_path / "b"], tmp_path / "m"))
    assert len(m) == 10 and m.meta["sources"] == ["lfw", "cfp", "celeba"]
    names = [m.meta["identities"][i] for i in m.identity]
    assert names[:6] == [META["identities"][i] for i in a["identity"]]
    assert names[6:] == ["c", "z", "c", "z"]                        # "c" is the same person in both
    assert [m.meta["sources"][s] for s in m.source[6:]] == ["celeba"] * 4
    assert set(m.image[6:].tolist()).isdisjoint(m.image[:6].tolist())   # photo ids stay distinct
    assert np.array_equal(m.crops_student[6:], b["crops_student"])
    with pytest.raises(CacheError):
        write_cache(tmp_path / "v", _arrays(2), {**META, "variants": ["clean"]})
        merge_caches([tmp_path / "a", tmp_path / "v"], tmp_path / "bad")
