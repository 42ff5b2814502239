"""`facequal audit`: label-noise scores and duplicate links on small synthetic inputs."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from facequal.curate.audit import TIGHTNESS_WEIGHT, audit, identity_pairs, outlier_scores
from facequal.curate.dedup import find_duplicates, registered_correlation
from facequal.curate.phash import fingerprint_image
from facequal.errors import OutputExistsError, UserError


def _clusters(seed: int = 0):
    """3 identities of 5 faces around orthogonal directions; face 2 of 'a' is really 'b'."""
    rng = np.random.default_rng(seed)
    centres = np.eye(8)[:3]
    emb, ident = [], []
    for k, name in enumerate("abc"):
        for i in range(5):
            c = centres[1] if (name == "a" and i == 2) else centres[k]
            emb.append(c + rng.normal(0, 0.05, 8))
            ident.append(name)
    return np.array(emb), ident


def test_intruder_scores_highest_and_is_flagged():
    emb, ident = _clusters()
    codes = np.array(["abc".index(x) for x in ident])
    sc = outlier_scores(emb, np.ones(len(codes)), codes)
    assert int(np.argmax(sc.outlier)) == 2
    assert sc.outlier[2] > 0 > np.delete(sc.outlier, 2).max()


def test_low_quality_intruder_does_not_pull_the_centre():
    # identity 'a': 3 good faces, 2 blurred ones that point elsewhere; the good ones stay inliers
    e = np.array([[1, 0, 0], [1, 0.05, 0], [1, -0.05, 0], [0.2, 1, 0], [0.2, 1, 0.05],
                  [0, 0, 1], [0, 0.05, 1]], float)
    q = np.array([0.9, 0.9, 0.9, 0.1, 0.1, 0.9, 0.9])
    sc = outlier_scores(e, q, np.array([0, 0, 0, 0, 0, 1, 1]))
    assert sc.own[:3].min() > 0.9
    assert sc.outlier[3:5].min() > sc.outlier[:3].max()


def test_singleton_identity_is_never_flagged():
    sc = outlier_scores(np.array([[1.0, 0], [0, 1.0], [0, 1.0]]), np.ones(3), np.array([0, 1, 1]))
    assert np.isnan(sc.outlier[0]) and np.isfinite(sc.outlier[1:]).all()


def _image(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((96, 96), Image.Resampling.BICUBIC)


@pytest.fixture()
def dataset(tmp_path):
    emb, ident = _clusters()
    rows, erows = [], []
    for i, (e, who) in enumerate(zip(emb, ident, strict=True)):
        (tmp_path / who).mkdir(exist_ok=True)
        p = f"{who}/{i}.png"
        _image(i).save(tmp_path / p)
        rows.append(dict(path=p, face_index=0, status="ok", quality=0.8, identity=who))
        erows.append(dict(path=p, face_index=0, status="ok", embedding=e.tolist()))
    # an exact copy of 0, a re-encoded resized copy of 5 (other folder), a non-face row
    _image(0).save(tmp_path / "a/copy.png")
    _image(5).resize((80, 80)).save(tmp_path / "c/reenc.jpg", quality=80)
    for p, who, src in (("a/copy.png", "a", 0), ("c/reenc.jpg", "c", 5)):
        rows.append(dict(path=p, face_index=0, status="ok", quality=0.8, identity=who))
        erows.append(dict(path=p, face_index=0, status="ok", embedding=(emb[src] + 0.001).tolist()))
    rows.append(dict(path="a/broken.png", face_index=-1, status="unreadable", quality=None, identity="a"))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "s.parquet")
    pq.write_table(pa.Table.from_pylist(erows), tmp_path / "e.parquet")
    return tmp_path


def test_audit_table_flags_and_duplicates(dataset):
    res = audit(dataset / "s.parquet", dataset / "e.parquet", image_root=dataset,
                output=dataset / "audit.parquet")
    t = pq.read_table(dataset / "audit.parquet").to_pylist()
    src = pq.read_table(dataset / "s.parquet")
    assert [r["path"] for r in t] == src["path"].to_pylist()  # every row, same order
    by = {r["path"]: r for r in t}
    # c/reenc.jpg is a copy of a "b" photo filed under "c": an intruder too
    assert by["a/2.png"]["mislabel"] and by["c/reenc.jpg"]["mislabel"] and res.n_mislabel == 2
    assert by["a/copy.png"]["duplicate_of"] == "a/0.png" and by["a/copy.png"]["duplicate_kind"] == "exact"
    assert by["c/reenc.jpg"]["duplicate_of"] == "b/5.png" and by["c/reenc.jpg"]["duplicate_kind"] == "near"
    assert by["a/0.png"]["duplicate_of"] is None and by["a/0.png"]["dup_group"] is not None
    # different photos (other random patterns) are never linked
    assert sum(r["duplicate_of"] is not None for r in t) == 2
    assert by["a/broken.png"]["identity_outlier"] is None and by["a/broken.png"]["mislabel"] is None


def test_by_parent_matches_identity_column(dataset):
    a = audit(dataset / "s.parquet", dataset / "e.parquet", by="parent", duplicates=False).table
    b = audit(dataset / "s.parquet", dataset / "e.parquet", duplicates=False).table
    assert a["identity_outlier"].to_pylist() == b["identity_outlier"].to_pylist()


def test_outputs_checked_before_work(dataset):
    (dataset / "audit.parquet").write_text("keep")
    with pytest.raises(OutputExistsError):
        audit(dataset / "s.parquet", dataset / "e.parquet", output=dataset / "audit.parquet")
    assert (dataset / "audit.parquet").read_text() == "keep"
    with pytest.raises(ValueError, match="input"):
        audit(dataset / "s.parquet", dataset / "e.parquet", output=dataset / "s.parquet", overwrite=True)
    with pytest.raises(ValueError, match="mislabel_threshold"):
        audit(dataset / "s.parquet", dataset / "e.parquet", mislabel_threshold=float("nan"))


def test_cli_audit(dataset, monkeypatch):
    from typer.testing import CliRunner

    from facequal.cli import app

    monkeypatch.chdir(dataset)
    r = CliRunner().invoke(app, ["audit", "s.parquet", "--embeddings", "e.parquet", "-o", "out.parquet"])
    assert r.exit_code == 0, r.output
    assert pq.read_table("out.parquet")["mislabel"].to_pylist().count(True) == 2
    r = CliRunner().invoke(app, ["audit", "s.parquet", "--embeddings", "e.parquet", "-o", "out.parquet"])
    assert r.exit_code == 2 and "--overwrite" in r.output


def test_small_identities_of_two_and_three():
    # identity 0 (3 faces): face 2 is really identity 2's person; identity 1 (2 faces): face 4
    # is identity 2's person too; identity 2: 4 faces around its direction
    e = np.array([[1, 0, 0], [1, -0.1, 0], [0, 0.1, 1], [0, 1, 0], [0.1, 0, 1],
                  [0, 0, 1], [0.1, 0, 1], [0, 0.1, 1], [0.05, 0.05, 1]], float)
    codes = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    sc = outlier_scores(e, np.ones(9), codes)
    assert int(np.argmax(sc.outlier[:3])) == 2 and sc.outlier[2] > 0 > sc.outlier[:2].max()
    # in a pair both faces share one own similarity: the margin ranks the intruder far first
    assert sc.own[3] == pytest.approx(sc.own[4], abs=1e-5)
    assert sc.outlier[4] > 0.5 > 0.1 > sc.outlier[3]
    assert (sc.outlier[5:] < 0).all() and list(sc.size) == [3, 3, 3, 2, 2, 4, 4, 4, 4]


def test_quality_weighting_changes_the_centre():
    # identity 0: two camps of 2 faces; the camp with high quality defines the identity
    e = np.array([[1, 0, 0], [1, 0.05, 0], [0.6, 0.8, 0], [0.6, 0.75, 0.05], [0, 0, 1], [0, 0.05, 1]], float)
    codes = np.array([0, 0, 0, 0, 1, 1])
    hi = outlier_scores(e, np.array([0.9, 0.9, 0.1, 0.1, 0.9, 0.9]), codes)
    lo = outlier_scores(e, np.array([0.1, 0.1, 0.9, 0.9, 0.9, 0.9]), codes)
    assert hi.outlier[2] > hi.outlier[0] and lo.outlier[0] > lo.outlier[2]


def test_identity_pairs_find_a_split_identity():
    rng = np.random.default_rng(1)
    dirs = np.linalg.qr(rng.normal(size=(32, 6)))[0].T  # 6 orthonormal people
    emb, codes = [], []
    for g, person in enumerate([0, 1, 2, 3, 4, 5, 0]):  # identity 6 is person 0 again
        for _ in range(3 if g == 6 else 8):
            emb.append(dirs[person] + rng.normal(0, 0.15, 32))
            codes.append(g)
    sc = outlier_scores(np.array(emb), np.ones(len(codes)), np.array(codes))
    ip = identity_pairs(sc.centres, sc.spread, np.bincount(codes))
    assert [(int(a), int(b)) for a, b in zip(ip.a, ip.b, strict=True)] == [(0, 6)]
    assert 0.9 < ip.score[0] < 1.1 and ip.centre_similarity[0] < ip.score[0]  # small folder: lower cosine
    # a threshold above every score finds nothing
    assert len(identity_pairs(sc.centres, sc.spread, np.bincount(codes), threshold=1.5).a) == 0


def _scene(seed: int, side: int = 160) -> Image.Image:
    """A smooth random picture: structure at several scales, like a photo."""
    rng = np.random.default_rng(seed)
    out = np.zeros((side, side, 3))
    for cells, amp in ((4, 1.0), (10, 0.5), (24, 0.25)):
        small = Image.fromarray(rng.integers(0, 255, (cells, cells, 3), dtype=np.uint8))
        out += amp * np.asarray(small.resize((side, side), Image.Resampling.BICUBIC), float)
    return Image.fromarray(np.clip(out / 1.75, 0, 255).astype(np.uint8))


LMS = np.array([[60, 70], [100, 70], [80, 90], [64, 110], [96, 110]], float)


def _jpeg(im: Image.Image, q: int) -> Image.Image:
    import io

    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=q)
    return Image.open(buf).convert("RGB")


def test_registered_crop_is_a_copy_and_another_frame_is_not():
    a = _scene(3)
    c = 8  # a 5 % crop at one side, re-encoded
    crop = _jpeg(a.crop((c, c, 160, 160)), 85).convert("L")
    assert registered_correlation(a.convert("L"), LMS, crop, LMS - c) > 0.95
    # "the next frame": the same background, the head (a patch holding the landmarks) moved
    b = np.asarray(a).copy()
    b[50:130, 40:120] = np.asarray(a)[50:130, 52:132]
    b = Image.fromarray(b).convert("L")
    assert registered_correlation(a.convert("L"), LMS, b, LMS - [12, 0]) < 0.9


def test_find_duplicates_rule():
    ims = [_scene(i) for i in range(4)]
    variants = [ims[0], ims[0].copy(), _jpeg(ims[1], 40), _jpeg(ims[2].resize((80, 80)), 90), ims[3]]
    fps = [fingerprint_image(v) for v in variants]
    d = find_duplicates([f.exact for f in fps], np.array([f.phash for f in fps], np.uint64),
                        np.stack([f.thumb for f in fps]), extra_pairs=np.array([[1, 2], [3, 4]]))
    assert list(d.original) == [-1, 0, -1, -1, -1] and d.kind[1] == "exact"
    fps2 = [fingerprint_image(v) for v in (ims[1], variants[2], ims[2], variants[3])]
    d2 = find_duplicates([f.exact for f in fps2], np.array([f.phash for f in fps2], np.uint64),
                         np.stack([f.thumb for f in fps2]))
    assert list(d2.original) == [-1, 0, -1, 2] and d2.kind[1] == d2.kind[3] == "near"


@pytest.fixture()
def photos(tmp_path):
    """Identity 'p' (4 photos, one re-encoded copy, one lightly cropped copy, one "next frame"),
    identity 'r' (3 photos), identity 's' = the same person as 'r' (2 photos)."""
    rng = np.random.default_rng(5)
    dirs = np.linalg.qr(rng.normal(size=(16, 3)))[0].T
    rows, erows = [], []

    def add(path: str, im: Image.Image, who: str, person: int, lms: np.ndarray, like: str | None = None) -> None:
        """``like``: a copy of that photo, whose vector it nearly shares."""
        (tmp_path / who).mkdir(exist_ok=True)
        im.save(tmp_path / path, quality=92)
        rows.append(dict(path=path, face_index=0, status="ok", quality=0.8, identity=who, landmarks=lms.tolist()))
        v = dirs[person] + rng.normal(0, 0.05, 16) if like is None else \
            np.array(next(r["embedding"] for r in erows if r["path"] == like)) + rng.normal(0, 0.005, 16)
        erows.append(dict(path=path, face_index=0, status="ok", embedding=v.tolist()))

    base = [_scene(10 + i) for i in range(4)]
    for i, im in enumerate(base):
        add(f"p/{i}.png", im, "p", 0, LMS)
    add("p/0_q40.jpg", _jpeg(base[0], 40), "p", 0, LMS, "p/0.png")
    add("p/1_crop.jpg", base[1].crop((0, 8, 152, 160)), "p", 0, LMS - [0, 8], "p/1.png")
    nxt = np.asarray(base[2]).copy()
    nxt[50:130, 40:120] = np.asarray(base[2])[50:130, 52:132]
    add("p/2_next.png", Image.fromarray(nxt), "p", 0, LMS - [12, 0], "p/2.png")
    for i in range(3):
        add(f"r/{i}.png", _scene(20 + i), "r", 1, LMS)
    for i in range(2):
        add(f"s/{i}.png", _scene(30 + i), "s", 1, LMS)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "s.parquet")
    pq.write_table(pa.Table.from_pylist(erows), tmp_path / "e.parquet")
    return tmp_path


def test_near_duplicates_found_and_other_photos_kept_apart(photos):
    res = audit(photos / "s.parquet", photos / "e.parquet", image_root=photos)
    by = {r["path"]: r for r in res.table.to_pylist()}
    assert by["p/0_q40.jpg"]["duplicate_of"] == "p/0.png"
    assert by["p/1_crop.jpg"]["duplicate_of"] == "p/1.png" and by["p/1_crop.jpg"]["duplicate_kind"] == "near"
    assert by["p/2_next.png"]["duplicate_of"] is None and by["p/2.png"]["dup_group"] is None
    assert res.n_duplicates == 2
    # 'r' and 's' are one person in two folders
    ids = res.identities.to_pylist()
    assert [(r["identity_a"], r["identity_b"]) for r in ids] == [("r", "s")]
    assert ids[0]["size_a"] == 3 and ids[0]["size_b"] == 2


def test_threshold_flag_honours_the_value(dataset):
    t = audit(dataset / "s.parquet", dataset / "e.parquet", duplicates=False).table
    out = np.array([np.nan if v is None else v for v in t["identity_outlier"].to_pylist()])
    fin = np.sort(out[np.isfinite(out)])
    counts = []
    for thr in ((fin[1] + fin[2]) / 2, (fin[5] + fin[6]) / 2, 0.0):
        flags = audit(dataset / "s.parquet", dataset / "e.parquet", duplicates=False,
                      mislabel_threshold=thr).table["mislabel"].to_pylist()
        assert flags == [None if np.isnan(o) else bool(o > thr) for o in out]
        counts.append(flags.count(True))
    assert counts[:2] == [len(fin) - 2, len(fin) - 6] and counts[2] == 2


def test_every_output_checked_before_any_is_written(dataset):
    s, e = dataset / "s.parquet", dataset / "e.parquet"
    (dataset / "ids.parquet").write_text("keep")
    with pytest.raises(OutputExistsError):
        audit(s, e, output=dataset / "a.parquet", identities=dataset / "ids.parquet")
    assert not (dataset / "a.parquet").exists() and (dataset / "ids.parquet").read_text() == "keep"
    with pytest.raises(UserError, match="both"):
        audit(s, e, output=dataset / "x.parquet", identities=dataset / "x.parquet")
    with pytest.raises(UserError, match="input"):
        audit(s, e, output=dataset / "o.parquet", identities=e, overwrite=True)
    with pytest.raises(UserError, match="one HTML file"):
        audit(s, e, output=dataset / "o.parquet", report=str(dataset) + "/")
    assert not (dataset / "o.parquet").exists()


@pytest.mark.parametrize("args,needle", [
    (["--mislabel-threshold", "nan"], "--mislabel-threshold"),
    (["--by", "nope"], "nope"),
    (["--jobs", "0"], "--jobs"),
    (["--report", "rep/"], "one HTML file"),
    (["--identities", "s.parquet", "--overwrite"], "input"),
])
def test_cli_bad_arguments_one_line(dataset, monkeypatch, args, needle):
    from typer.testing import CliRunner

    from facequal.cli import app

    monkeypatch.chdir(dataset)
    (dataset / "rep").mkdir(exist_ok=True)
    r = CliRunner().invoke(app, ["audit", "s.parquet", "--embeddings", "e.parquet", "-o", "out.parquet", *args])
    assert r.exit_code == 2, r.output
    assert needle in r.output and "Traceback" not in r.output
    assert len([ln for ln in r.output.splitlines() if ln.strip()]) == 1
    assert not (dataset / "out.parquet").exists()


def test_cli_end_to_end_with_identities_and_report(photos, monkeypatch):
    from typer.testing import CliRunner

    from facequal.cli import app

    monkeypatch.chdir(photos)
    r = CliRunner().invoke(app, ["audit", "s.parquet", "--embeddings", "e.parquet", "-o", "out.parquet",
                                 "--identities", "ids.parquet", "--report", "audit.html"])
    assert r.exit_code == 0, r.output
    assert pq.read_table("ids.parquet").num_rows == 1
    assert pq.read_table("out.parquet")["duplicate_of"].to_pylist().count(None) == 10
    html = (photos / "audit.html").read_text()
    assert "Possibly one person: r (3) and s (2)" in html


def test_report_in_chromium(photos, monkeypatch):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from test_report import Chrome, chromium_binary

    binary = chromium_binary()
    if binary is None:
        pytest.skip("headless Chromium not found: apt-get install chromium (or set FACEQUAL_CHROMIUM)")
    # make 'r/2.png' an intruder: its vector is person p's
    e = pq.read_table(photos / "e.parquet").to_pylist()
    p0 = np.array(e[0]["embedding"])
    for row in e:
        if row["path"] == "r/2.png":
            row["embedding"] = (p0 + 0.01).tolist()
    pq.write_table(pa.Table.from_pylist(e), photos / "e.parquet")
    res = audit(photos / "s.parquet", photos / "e.parquet", image_root=photos, report=photos / "audit.html")
    assert next(r for r in res.table.to_pylist() if r["path"] == "r/2.png")["mislabel"]
    c = Chrome(binary)
    try:
        c.open((photos / "audit.html").as_uri())
        assert c.errors() == []
        heads = c.eval("Array.from(document.querySelectorAll('#sheet .ghead')).map(e => e.firstChild.textContent)")
        assert heads.index("r") < heads.index("p")  # an identity with a suspect before one without
        tiles = c.eval("Array.from(document.querySelectorAll('#sheet .tile')).map(e => [e.title.split('\\n')[0],"
                       " e.className, (e.querySelector('.cause') || {}).textContent || ''])")
        paths = [t[0] for t in tiles]
        first_r = min(i for i, p in enumerate(paths) if p.startswith("r/"))
        assert tiles[first_r] == ["r/2.png", "tile flag", "looks like p"]  # the suspect first in its block
        # a copy sits right after its original
        assert paths.index("p/0_q40.jpg") == paths.index("p/0.png") + 1
        assert paths.index("p/1_crop.jpg") == paths.index("p/1.png") + 1
        assert [t[2] for t in tiles if t[0] == "p/1_crop.jpg"] == ["near copy"]
        assert c.eval("document.querySelectorAll('#sheet .tile img').length") == len(tiles) == 12
        assert c.eval("document.getElementById('sort').value") == "list"
    finally:
        c.close()


def test_split_identity_is_not_its_own_nearest():
    # identities 0 and 1: one person (around x) filed in two folders; 2 around y; 3 around z
    # with an intruder of the x person (face 10)
    e = np.array([[1, 0.05, 0], [1, -0.05, 0], [1, 0, 0.05], [1, 0, -0.05], [1, 0.04, 0.03],
                  [0, 1, 0], [0.05, 1, 0], [0, 1, 0.05], [0, 0, 1], [0.05, 0, 1], [1, 0.02, 0]], float)
    codes = np.array([0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 3])
    plain = outlier_scores(e, np.ones(11), codes)
    # without the rule the two folders are each other's nearest: margins about 0
    assert set(plain.nearest[:5].tolist()) == {0, 1} and plain.outlier[:5].max() > -0.05
    sc = outlier_scores(e, np.ones(11), codes, same_person_threshold=0.98)
    assert (sc.pairs.a.tolist(), sc.pairs.b.tolist()) == ([0], [1])
    assert set(sc.nearest[:5].tolist()) <= {2, 3} and sc.outlier[:5].max() < -0.5
    # the intruder still looks like the x person (folder 0 is its nearest) and is flagged
    assert sc.nearest[10] in (0, 1) and sc.outlier[10] > 0.3
    assert sc.outlier[10] == pytest.approx(plain.outlier[10])


def test_split_identity_alone_falls_back_to_own_distance():
    # the only two identities are one person: no other identity is left to compare with
    e = np.array([[1, 0.05], [1, -0.05], [1, 0.02], [1, -0.03]], float)
    sc = outlier_scores(e, np.ones(4), np.array([0, 0, 1, 1]), same_person_threshold=0.98)
    assert len(sc.pairs.a) == 1 and (sc.nearest == -1).all() and np.isnan(sc.nearest_sim).all()
    assert np.allclose(sc.outlier, 1.0 - sc.own)


def _from_gram(g: np.ndarray) -> np.ndarray:
    """Unit embeddings whose cosines are exactly the (positive definite) matrix ``g``."""
    ev, v = np.linalg.eigh(g)
    return v * np.sqrt(ev)


def test_outsider_is_ranked_first_by_the_tightness_term():
    # a: 3 faces at cos 0.9 + an outsider o (cos 0.3 to them, 0.2 to every face of b, 0 to c);
    # b: 3 faces at cos 0.9; c: 4 true faces of a loose identity (cos 0.5), cos 0.45 to b.
    g = np.eye(11)
    a, o, b, c = [0, 1, 2], [3], [4, 5, 6], [7, 8, 9, 10]
    for rows, cols, v in ((a, a, 0.9), (a, o, 0.3), (b, b, 0.9), (c, c, 0.5), (o, b, 0.2), (c, b, 0.45)):
        for i in rows:
            for j in cols:
                if i != j:
                    g[i, j] = g[j, i] = v
    sc = outlier_scores(_from_gram(g), np.ones(11), np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2]))
    # weights q * agreement^2: o agrees 0.3 (w 0.09), a's faces (0.9 + 0.9 + 0.3) / 3 = 0.7 (w 0.49)
    own_a = (2 * 0.49 * 0.9 + 0.09 * 0.3) / (2 * 0.49 + 0.09)
    others_a = (0.49**2 * 0.9 + 2 * 0.49 * 0.09 * 0.3) / (0.49**2 + 2 * 0.49 * 0.09)
    assert sc.own == pytest.approx([own_a] * 3 + [0.3] + [0.9] * 3 + [0.5] * 4, abs=1e-5)
    assert sc.others == pytest.approx([others_a] * 3 + [0.9] * 4 + [0.5] * 4, abs=1e-5)
    margin = sc.nearest_sim - sc.own  # o: 0.2 - 0.3 = -0.1; c's faces: 0.45 - 0.5 = -0.05
    assert margin[3] == pytest.approx(-0.1, abs=1e-5) and margin[7:] == pytest.approx([-0.05] * 4, abs=1e-5)
    # median leave-one-out spread of the 11 faces: others_a; o gains 0.25 (0.9 - others_a),
    # the loose identity c loses 0.25 (others_a - 0.5): o is now first, in a and in the dataset
    assert sc.outlier == pytest.approx(margin + TIGHTNESS_WEIGHT * (sc.others - others_a), abs=1e-5)
    assert int(np.argmax(sc.outlier)) == 3 and int(np.argmax(margin)) in c


def test_tightness_term_needs_two_other_faces():
    # identities of 2: no spread without the face, the score is the plain margin
    e = np.array([[1, 0, 0], [0.8, 0.6, 0], [0, 1, 0], [0, 0.8, 0.6]], float)
    sc = outlier_scores(e, np.ones(4), np.array([0, 0, 1, 1]))
    assert np.isnan(sc.others).all()
    assert sc.outlier == pytest.approx(sc.nearest_sim - sc.own, abs=1e-6)


def test_large_jpegs_fingerprinted_reduced_keep_exact_meaning_full_size_pixels(tmp_path):
    """JPEGs big enough for a reduced fingerprint decode: a byte copy and a PNG re-save of the
    decoded pixels are exact duplicates (confirmed at full size), a re-encode is near, and a photo
    that differs only in fine detail (the same at 1/4) is not an exact duplicate."""
    from facequal.curate.phash import exact_key, fingerprint

    base = _image(3).resize((320, 320), Image.Resampling.BICUBIC)
    base.save(tmp_path / "a.jpg", quality=95)
    (tmp_path / "copy.jpg").write_bytes((tmp_path / "a.jpg").read_bytes())
    with Image.open(tmp_path / "a.jpg") as im:
        im.convert("RGB").save(tmp_path / "resaved.png")
    base.save(tmp_path / "q40.jpg", quality=40)
    detail = np.asarray(base).copy()
    detail[100:102, 100:102] ^= 1  # a few pixels off by one grey level: other full-size pixels
    Image.fromarray(detail).save(tmp_path / "detail.png")
    assert fingerprint(str(tmp_path / "a.jpg")).exact.startswith("reduced:")  # reduced decode
    assert exact_key(str(tmp_path / "detail.png")) != exact_key(str(tmp_path / "resaved.png"))
    names = ["a.jpg", "copy.jpg", "resaved.png", "q40.jpg", "detail.png"]
    emb = np.tile(np.eye(4)[0], (len(names), 1)) + np.arange(len(names))[:, None] * 1e-3
    st = pa.table({"path": names, "face_index": [0] * 5, "status": ["ok"] * 5, "quality": [0.9] * 5,
                   "identity": ["x"] * 5})
    et = pa.table({"path": names, "face_index": [0] * 5, "status": ["ok"] * 5,
                   "embedding": [e.tolist() for e in emb]})
    by = {r["path"]: r for r in audit(st, et, image_root=tmp_path).table.to_pylist()}
    assert by["copy.jpg"]["duplicate_of"] == "a.jpg" and by["copy.jpg"]["duplicate_kind"] == "exact"
    assert by["resaved.png"]["duplicate_of"] == "a.jpg" and by["resaved.png"]["duplicate_kind"] == "exact"
    assert by["q40.jpg"]["duplicate_of"] == "a.jpg" and by["q40.jpg"]["duplicate_kind"] == "near"
    assert by["detail.png"]["duplicate_kind"] != "exact"
