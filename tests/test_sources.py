"""Inputs: sorted recursive walks, hidden files, link loops, manifests and their errors, shards."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from facequal.errors import UserError
from facequal.pipeline.sources import collect, in_shard, parse_shard


def _touch(p):
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"x")
    return p


def test_walk_is_sorted_recursive_and_skips_hidden(tmp_path):
    for name in ["b/2.JPG", "b/1.png", "a.webp", ".hidden.jpg", ".dot/x.jpg", "c/readme.txt", "c/z.TIFF"]:
        _touch(tmp_path / name)
    refs = collect([str(tmp_path)]).refs
    rel = [os.path.relpath(r.path, tmp_path) for r in refs]
    assert rel == ["a.webp", "b/1.png", "b/2.JPG", "c/z.TIFF"]
    assert refs[0].path == os.path.join(str(tmp_path), "a.webp")


def test_symlink_loop_does_not_hang(tmp_path):
    _touch(tmp_path / "d" / "x.jpg")
    os.symlink(tmp_path / "d", tmp_path / "d" / "loop")
    refs = collect([str(tmp_path)]).refs
    assert [os.path.basename(r.path) for r in refs] == ["x.jpg"]


def test_identity_from_parent(tmp_path):
    _touch(tmp_path / "Alice" / "1.jpg")
    _touch(tmp_path / "Bob" / "1.jpg")
    src = collect([str(tmp_path)], identity_from="parent")
    assert [r.carried["identity"] for r in src.refs] == ["Alice", "Bob"]


def test_manifest_resolves_relative_paths_and_carries_columns(tmp_path):
    _touch(tmp_path / "imgs" / "p.jpg")
    m = tmp_path / "m.parquet"
    pq.write_table(pa.table({"file": ["imgs/p.jpg", "/abs/q.jpg"], "identity": ["x", "y"],
                             "score": pa.array([1, 2], pa.int16())}), m)
    src = collect([str(m)], path_column="file")
    assert [r.path for r in src.refs] == [os.path.join(str(tmp_path), "imgs/p.jpg"), "/abs/q.jpg"]
    assert src.refs[1].carried == {"identity": "y", "score": 2}
    assert src.carried_fields["score"].type == pa.int16()


def test_manifest_errors_name_the_column(tmp_path):
    m = tmp_path / "m.parquet"
    pq.write_table(pa.table({"file": ["a.jpg"]}), m)
    with pytest.raises(UserError, match="no path column 'path'"):
        collect([str(m)])
    pq.write_table(pa.table({"path": [1, 2]}), m)
    with pytest.raises(UserError, match="path column 'path' holds int64"):
        collect([str(m)])


def test_missing_input_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        collect([str(tmp_path / "nope")])


def test_shards_partition_the_inputs():
    paths = [f"img/{i}.jpg" for i in range(500)]
    shards = [parse_shard(f"{i}/4") for i in range(4)]
    owners = [sum(in_shard(p, s) for s in shards) for p in paths]
    assert owners == [1] * 500
    with pytest.raises(UserError):
        parse_shard("4/4")
