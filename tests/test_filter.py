"""`facequal filter`: selection, outputs, and safe copies / links into a target directory."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from facequal import schema
from facequal.curate.materialize import materialize, safe_relative_parts
from facequal.curate.select import Criteria, filter_scores, select
from facequal.errors import OutputExistsError, UserError

runner = CliRunner()


def score_table(rows: list[dict]) -> pa.Table:
    """A score table with the real schema (plus an identity column) from a few dicts."""
    fields = list(schema.SCORE_FIELDS) + [pa.field("identity", pa.string())]
    cols: dict[str, list] = {f.name: [] for f in fields}
    for r in rows:
        box = r.get("bbox")
        for f in fields:
            v = r.get(f.name)
            if f.name == "face_index" and v is None:
                v = 0
            if f.name == "status" and v is None:
                v = "ok"
            if f.name == "bbox":
                v = box
            cols[f.name].append(v)
    return pa.table({f.name: pa.array(cols[f.name], f.type) for f in fields}, schema=pa.schema(fields))


def write(table: pa.Table, path: Path) -> Path:
    pq.write_table(table, path)
    return path


@pytest.fixture
def app():
    from facequal.cli import app as the_app

    return the_app


@pytest.fixture
def basic() -> pa.Table:
    q = [0.9, 0.1, 0.5, float("nan"), None, 0.7, 0.3, 0.8]
    ids = ["a", "a", "a", "b", "b", "b", "c", "c"]
    rows = [
        dict(path=f"d/{i}.jpg", quality=v, identity=g, bbox=[0, 0, 20 + 10 * i, 100])
        for i, (v, g) in enumerate(zip(q, ids, strict=True))
    ]
    rows.append(dict(path="d/noface.jpg", face_index=-1, status="no_face", quality=None))
    rows.append(dict(path="d/broken.jpg", face_index=-1, status="unreadable", error="truncated"))
    return score_table(rows)


def kept(table: pa.Table, crit: Criteria) -> list[str]:
    sel = select(table, crit)
    return [p for p, m in zip(table["path"].to_pylist(), sel.mask, strict=True) if m]


# ---------------------------------------------------------------------------------------------
# selection
# ---------------------------------------------------------------------------------------------
def test_min_max_and_nan_never_pass(basic):
    assert kept(basic, Criteria(min_quality=0.5)) == ["d/0.jpg", "d/2.jpg", "d/5.jpg", "d/7.jpg"]
    assert kept(basic, Criteria(max_quality=0.3)) == ["d/1.jpg", "d/6.jpg"]
    assert kept(basic, Criteria(min_quality=0.3, max_quality=0.7)) == ["d/2.jpg", "d/5.jpg", "d/6.jpg"]
    sel = select(basic, Criteria(min_quality=0.0))
    assert sel.dropped["no_quality"] == 4  # NaN, null, and the two rows without a face


def test_status_alone_keeps_faces_without_a_score(basic):
    got = kept(basic, Criteria(status=("ok",)))
    assert len(got) == 8 and "d/3.jpg" in got and "d/4.jpg" in got
    assert kept(basic, Criteria(status=("no_face", "unreadable"))) == ["d/noface.jpg", "d/broken.jpg"]


def test_top_k_keep_fraction_per_group(basic):
    assert kept(basic, Criteria(top_k=2)) == ["d/0.jpg", "d/7.jpg"]
    assert kept(basic, Criteria(top_k=0)) == []
    assert kept(basic, Criteria(top_k=100)) == [f"d/{i}.jpg" for i in (0, 1, 2, 5, 6, 7)]
    # 6 scored faces: ceil(0.5 * 6) = 3 best
    assert kept(basic, Criteria(keep_fraction=0.5)) == ["d/0.jpg", "d/5.jpg", "d/7.jpg"]
    assert kept(basic, Criteria(keep_fraction=0.0)) == []
    # best of each identity; b has one scored face (0.7), c's best is 0.8
    assert kept(basic, Criteria(per_group=1, group="identity")) == ["d/0.jpg", "d/5.jpg", "d/7.jpg"]
    assert kept(basic, Criteria(per_group=2, group="identity", min_quality=0.4)) == [
        "d/0.jpg",
        "d/2.jpg",
        "d/5.jpg",
        "d/7.jpg",
    ]
    # stages compose in order: per-group first, then top-k
    assert kept(basic, Criteria(per_group=1, group="identity", top_k=1)) == ["d/0.jpg"]


def test_ties_are_broken_by_row_order():
    t = score_table([dict(path=f"{i}.jpg", quality=0.5) for i in range(5)])
    assert kept(t, Criteria(top_k=2)) == ["0.jpg", "1.jpg"]


def test_min_face_uses_the_shorter_box_side(basic):
    # widths 20, 30, 40, ... ; heights 100 -> shorter side = width
    assert kept(basic, Criteria(min_face=75)) == ["d/6.jpg", "d/7.jpg"]


@pytest.mark.parametrize(
    "crit, message",
    [
        (Criteria(min_quality=0.8, max_quality=0.2), "above --max"),
        (Criteria(keep_fraction=1.5), "--keep-fraction"),
        (Criteria(per_group=2), "needs --group"),
        (Criteria(group="identity"), "only makes sense"),
        (Criteria(status=("okay",)), "unknown status"),
        (Criteria(top_k=-1), "--top-k"),
        (Criteria(min_quality=float("nan")), "finite"),
    ],
)
def test_bad_criteria_are_user_errors(basic, crit, message):
    with pytest.raises(UserError, match=message):
        select(basic, crit)


def test_missing_group_column_is_a_clear_error(basic):
    with pytest.raises(UserError, match="no column 'person'"):
        select(basic, Criteria(per_group=1, group="person"))


# ---------------------------------------------------------------------------------------------
# outputs
# ---------------------------------------------------------------------------------------------
def test_parquet_output_is_filtered_and_keeps_schema(basic, tmp_path):
    src = write(basic, tmp_path / "s.parquet")
    res = filter_scores(src, min_quality=0.5, output=tmp_path / "k.parquet")
    out = pq.read_table(tmp_path / "k.parquet")
    assert out.schema.equals(basic.schema)
    assert out["path"].to_pylist() == ["d/0.jpg", "d/2.jpg", "d/5.jpg", "d/7.jpg"]
    assert res.n_kept == 4
    filter_scores(src, min_quality=0.5, output=tmp_path / "r.parquet", rejected=True)
    assert pq.read_table(tmp_path / "r.parquet").num_rows == basic.num_rows - 4
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_existing_output_needs_overwrite(basic, tmp_path):
    src = write(basic, tmp_path / "s.parquet")
    (tmp_path / "k.parquet").write_bytes(b"precious")
    with pytest.raises(OutputExistsError):
        filter_scores(src, min_quality=0.5, output=tmp_path / "k.parquet")
    assert (tmp_path / "k.parquet").read_bytes() == b"precious"
    filter_scores(src, min_quality=0.5, output=tmp_path / "k.parquet", overwrite=True)
    assert pq.read_table(tmp_path / "k.parquet").num_rows == 4


def test_empty_input_and_all_rejected(tmp_path):
    empty = write(score_table([]), tmp_path / "empty.parquet")
    res = filter_scores(empty, min_quality=0.5, output=tmp_path / "e.parquet", paths_out=tmp_path / "e.txt")
    assert res.n_rows == 0 and res.n_kept == 0
    assert pq.read_table(tmp_path / "e.parquet").num_rows == 0
    assert (tmp_path / "e.txt").read_bytes() == b""
    t = write(score_table([dict(path=f"{i}.jpg", quality=0.1 * i) for i in range(3)]), tmp_path / "s.parquet")
    res = filter_scores(
        t, min_quality=0.99, output=tmp_path / "none.parquet", paths_out=tmp_path / "none.txt"
    )
    assert res.n_kept == 0 and res.kept_images == []
    out = pq.read_table(tmp_path / "none.parquet")
    assert out.num_rows == 0 and out.schema.names == t_names()
    filter_scores(t, min_quality=0.99, paths_out=tmp_path / "rej.txt", rejected=True)
    assert (tmp_path / "rej.txt").read_text().splitlines() == ["0.jpg", "1.jpg", "2.jpg"]


def t_names() -> list[str]:
    return schema.SCORE_COLUMNS + ["identity"]


def test_images_with_one_kept_face_are_kept_not_rejected(tmp_path):
    t = score_table(
        [
            dict(path="two.jpg", face_index=0, quality=0.9),
            dict(path="two.jpg", face_index=1, quality=0.1),
            dict(path="bad.jpg", face_index=0, quality=0.2),
        ]
    )
    res = filter_scores(t, min_quality=0.5)
    assert res.kept_images == ["two.jpg"] and res.rejected_images == ["bad.jpg"]


def test_odd_paths_in_path_lists(tmp_path):
    names = ["new\nline.jpg", "<img src=x onerror=alert(1)>.jpg", "spa ce.jpg", "ünï.jpg"]
    t = score_table([dict(path=n, quality=0.9) for n in names])
    with pytest.raises(UserError, match="use -0"):
        filter_scores(t, min_quality=0.5, paths_out=tmp_path / "l.txt")
    filter_scores(t, min_quality=0.5, paths_out=tmp_path / "l0.txt", null=True)
    assert (tmp_path / "l0.txt").read_bytes().split(b"\0")[:-1] == [os.fsencode(n) for n in names]


def test_cli_paths_on_stdout_and_nul(app, basic, tmp_path):
    src = write(basic, tmp_path / "s.parquet")
    r = runner.invoke(app, ["filter", str(src), "--min", "0.5", "-o", "-"])
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines() == ["d/0.jpg", "d/2.jpg", "d/5.jpg", "d/7.jpg"]
    r = runner.invoke(app, ["filter", str(src), "--top-k", "2", "-o", "-", "-0"])
    assert r.exit_code == 0
    assert r.stdout_bytes == b"d/0.jpg\0d/7.jpg\0"


def test_cli_repeated_status_and_path_list_file(app, basic, tmp_path):
    src = write(basic, tmp_path / "s.parquet")
    r = runner.invoke(app, ["filter", str(src), "--status", "no_face", "--status", "unreadable", "-o", "-"])
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines() == ["d/noface.jpg", "d/broken.jpg"]
    r = runner.invoke(app, ["filter", str(src), "--min", "0.75", "-o", str(tmp_path / "keep.txt")])
    assert r.exit_code == 0 and (tmp_path / "keep.txt").read_text() == "d/0.jpg\nd/7.jpg\n"
    r = runner.invoke(app, ["filter", str(src), "--min", "0.75", "-o", str(tmp_path / "keep.txt")])
    assert r.exit_code != 0 and "already exists" in r.output


def test_cli_dry_run_writes_nothing(app, basic, tmp_path):
    src = write(basic, tmp_path / "s.parquet")
    r = runner.invoke(
        app,
        [
            "filter",
            str(src),
            "--min",
            "0.5",
            "-o",
            str(tmp_path / "k.parquet"),
            "--dry-run",
            "--to",
            str(tmp_path / "out"),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "4 of 10 rows kept" in r.stdout and "would write 4 kept rows" in r.stdout
    assert "would be copied" in r.stdout
    assert not (tmp_path / "k.parquet").exists() and not (tmp_path / "out").exists()


def test_cli_errors_are_one_line(app, basic, tmp_path):
    src = write(basic, tmp_path / "s.parquet")
    r = runner.invoke(app, ["filter", str(src), "--per-group", "2", "-o", "-"])
    assert r.exit_code != 0
    assert "needs --group" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["filter", str(tmp_path / "nope.parquet"), "--min", "0.1"])
    assert r.exit_code != 0 and "no such file" in r.output


def test_csv_input(tmp_path):
    (tmp_path / "s.csv").write_text("path,face_index,status,quality\na.jpg,0,ok,0.9\nb.jpg,0,ok,0.2\n")
    assert filter_scores(tmp_path / "s.csv", min_quality=0.5).kept_images == ["a.jpg"]


# ---------------------------------------------------------------------------------------------
# copies and links
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def tree(tmp_path) -> Path:
    """photos/{x,y}/*.jpg under tmp_path, returned as the cwd-like base."""
    for rel in ["photos/x/a.jpg", "photos/x/b.jpg", "photos/y/c.jpg", "other/d.jpg"]:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rel.encode())
    return tmp_path


@pytest.mark.parametrize("mode", ["copy", "symlink", "hardlink"])
def test_materialize_preserves_relative_paths(tree, mode):
    out = tree / "out"
    res = materialize(["photos/x/a.jpg", "photos/y/c.jpg"], out, mode=mode, base=tree)
    assert res.done == 2 and not res.failed
    assert (out / "x/a.jpg").read_bytes() == b"photos/x/a.jpg"
    assert (out / "y/c.jpg").read_bytes() == b"photos/y/c.jpg"
    if mode == "symlink":
        assert os.path.islink(out / "x/a.jpg") and os.path.isabs(os.readlink(out / "x/a.jpg"))
    if mode == "hardlink":
        assert os.path.samefile(out / "x/a.jpg", tree / "photos/x/a.jpg")


def test_materialize_root_and_existing(tree):
    out = tree / "out"
    res = materialize(["photos/x/a.jpg"], out, root=str(tree), base=tree)
    assert (out / "photos/x/a.jpg").exists() and res.done == 1
    (out / "photos/x/a.jpg").write_bytes(b"mine")
    res = materialize(["photos/x/a.jpg"], out, root=str(tree), base=tree)
    assert res.existing == 1 and (out / "photos/x/a.jpg").read_bytes() == b"mine"
    res = materialize(["photos/x/a.jpg"], out, root=str(tree), base=tree, overwrite=True)
    assert res.done == 1 and (out / "photos/x/a.jpg").read_bytes() == b"photos/x/a.jpg"


def test_materialize_never_writes_outside(tree):
    out = tree / "out"
    outside = tree / "victim"
    outside.mkdir()
    paths = ["photos/x/a.jpg", "photos/x/../../other/d.jpg", str(tree / "other/d.jpg"), "/etc/hostname"]
    res = materialize(paths, out, root=str(tree / "photos/x"), base=tree, mode="copy")
    for dirpath, _, files in os.walk(out):
        for f in files:
            assert os.path.realpath(os.path.join(dirpath, f)).startswith(str(out.resolve()) + os.sep)
    # ../../other/d.jpg relative to photos/x -> __/__/other/d.jpg; the absolute copy collides with it
    assert (out / "__/__/other/d.jpg").exists()
    assert any("same destination" in why for _, why in res.failed)
    assert list(outside.iterdir()) == []


def test_materialize_refuses_symlink_pointing_outside(tree):
    out = tree / "out"
    outside = tree / "victim"
    outside.mkdir()
    out.mkdir()
    os.symlink(outside, out / "x")  # out/x -> ../victim: following it would write outside
    res = materialize(["photos/x/a.jpg", "photos/y/c.jpg"], out, base=tree)
    assert res.done == 1 and len(res.failed) == 1
    assert "outside the target" in res.failed[0][1]
    assert list(outside.iterdir()) == []
    # a symlinked directory that stays inside is fine
    os.unlink(out / "x")
    (out / "real").mkdir()
    os.symlink(out / "real", out / "x")
    res = materialize(["photos/x/a.jpg"], out, base=tree, root=str(tree / "photos"))
    assert res.done == 1 and (out / "real/a.jpg").exists()


def test_overwrite_replaces_a_symlink_instead_of_writing_through_it(tree):
    out = tree / "out"
    (out / "x").mkdir(parents=True)
    victim = tree / "victim.txt"
    victim.write_bytes(b"keep me")
    os.symlink(victim, out / "x/a.jpg")
    res = materialize(["photos/x/a.jpg", "photos/y/c.jpg"], out, base=tree, overwrite=True)
    assert res.done == 2
    assert victim.read_bytes() == b"keep me"
    assert not os.path.islink(out / "x/a.jpg") and (out / "x/a.jpg").read_bytes() == b"photos/x/a.jpg"


@pytest.mark.parametrize("mode", ["copy", "symlink", "hardlink"])
def test_source_inside_target_is_never_replaced_by_itself(tree, mode):
    res = materialize(
        ["photos/x/a.jpg"], tree / "photos", root=str(tree / "photos"), base=tree, mode=mode, overwrite=True
    )
    assert res.existing == 1 and res.done == 0
    assert not os.path.islink(tree / "photos/x/a.jpg")
    assert (tree / "photos/x/a.jpg").read_bytes() == b"photos/x/a.jpg"


def test_bad_rows_do_not_stop_the_batch(app, tree):
    t = score_table(
        [
            dict(path="photos/x/a.jpg", quality=0.9),
            dict(path="photos/x/gone.jpg", quality=0.9),
            dict(path="bad\0name.jpg", quality=0.9),
            dict(path="photos/y/c.jpg", quality=0.9),
        ]
    )
    src = write(t, tree / "s.parquet")
    res = materialize(t["path"].to_pylist(), tree / "out", base=tree, root=str(tree / "photos"))
    assert res.done == 2 and len(res.failed) == 2
    r = runner.invoke(
        app,
        [
            "filter",
            str(src),
            "--min",
            "0.5",
            "--to",
            str(tree / "out2"),
            "--base",
            str(tree),
            "--root",
            str(tree / "photos"),
        ],
    )
    assert r.exit_code == 1 and "gone.jpg" in r.output
    assert (tree / "out2/x/a.jpg").exists() and (tree / "out2/y/c.jpg").exists()


def test_cli_rejected_symlinks(app, tree):
    t = score_table([dict(path="photos/x/a.jpg", quality=0.9), dict(path="photos/x/b.jpg", quality=0.2)])
    src = write(t, tree / "s.parquet")
    r = runner.invoke(
        app,
        [
            "filter",
            str(src),
            "--min",
            "0.5",
            "--rejected",
            "--to",
            str(tree / "rej"),
            "--mode",
            "symlink",
            "--base",
            str(tree),
        ],
    )
    assert r.exit_code == 0, r.output
    assert [p.name for p in (tree / "rej").rglob("*.jpg")] == ["b.jpg"]
    assert os.path.islink(tree / "rej/b.jpg")


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(["..", ".", "", "a", "b.jpg", "C:", "D:x", "\\", "/", "é", " ", "\n"]),
        min_size=1,
        max_size=8,
    )
)
def test_safe_relative_parts_stay_inside(comps):
    path = "/".join(comps) or "x"
    root = "/data/root"
    abs_path = os.path.normpath(os.path.join(root, path))
    try:
        parts = safe_relative_parts(abs_path, root)
    except ValueError:
        return
    for p in parts:
        # only the platform's separators split: on POSIX a backslash is part of a file name
        assert p not in ("", ".", "..") and os.sep not in p and (os.altsep is None or os.altsep not in p)
        assert not (len(p) >= 2 and p[1] == ":" and p[0].isalpha())
    target = "/t/target"
    joined = os.path.normpath(os.path.join(target, *parts))
    assert joined.startswith(target + "/")
