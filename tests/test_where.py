"""`filter --where`: the expression language keeps the rows a reader of the README expects,
never runs Python, and says in one line what is wrong with a bad expression."""

from __future__ import annotations

import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import facequal
from facequal.cli import app
from facequal.curate.where import parse_where
from facequal.errors import UserError


@pytest.fixture()
def table() -> pa.Table:
    return pa.table({
        "path": ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg", "f.jpg"],
        "quality": pa.array([0.9, 0.8, 0.3, None, 0.7, 0.6], pa.float32()),
        "yaw": pa.array([5.0, -60.0, 20.0, None, math.nan, -44.0], pa.float32()),
        "eye_distance": pa.array([50.0, 80.0, 30.0, None, 45.0, 41.0], pa.float32()),
        "n_faces": pa.array([1, 2, 1, None, 1, 3], pa.int32()),
        "mislabel": pa.array([False, True, False, None, False, False]),
        "duplicate_of": pa.array([None, None, "a.jpg", None, None, None], pa.string()),
        "status": ["ok", "ok", "ok", "no_face", "ok", "ok"],
        "bbox": pa.array([[0, 0, 1, 1]] * 6, pa.list_(pa.float32(), 4)),
    })


def kept(table: pa.Table, text: str) -> list[str]:
    mask = parse_where(text).mask(table)
    return [p for p, k in zip(table["path"].to_pylist(), mask, strict=True) if k]


@pytest.mark.parametrize(("text", "expected"), [
    ("abs(yaw) <= 45 and eye_distance >= 40", ["a.jpg", "f.jpg"]),
    ("yaw > 10 or eye_distance > 60", ["b.jpg", "c.jpg"]),
    ("not (abs(yaw) > 45)", ["a.jpg", "c.jpg", "f.jpg"]),
    ("-50 < yaw <= 20", ["a.jpg", "c.jpg", "f.jpg"]),
    ("yaw is null", ["d.jpg", "e.jpg"]),  # NaN counts as missing
    ("yaw is not null and n_faces == 1", ["a.jpg", "c.jpg"]),
    ("not mislabel and duplicate_of is null", ["a.jpg", "e.jpg", "f.jpg"]),
    ("mislabel or quality < 0.5", ["b.jpg", "c.jpg"]),
    ("status != 'ok'", ["d.jpg"]),
    ('duplicate_of = "a.jpg"', ["c.jpg"]),
    ("eye_distance / 2 + 1 >= 26 and n_faces * 1 = 1", ["a.jpg"]),
    ("-yaw > 40", ["b.jpg", "f.jpg"]),
    ("`quality` >= .75 AND NOT mislabel", ["a.jpg"]),
    ("quality >= 1e-1 and true", ["a.jpg", "b.jpg", "c.jpg", "e.jpg", "f.jpg"]),
])
def test_expressions_keep_the_rows_they_say(table, text, expected):
    assert kept(table, text) == expected


def test_a_row_without_a_value_passes_neither_a_test_nor_its_negation(table):
    assert "d.jpg" not in kept(table, "yaw > 0") and "d.jpg" not in kept(table, "not (yaw > 0)")
    # ... unless the other side of an or decides: unknown or true is true
    assert "d.jpg" in kept(table, "yaw > 0 or status == 'no_face'")
    assert "d.jpg" not in kept(table, "yaw > 0 and status == 'no_face'")


@pytest.mark.parametrize(("text", "says"), [
    ("abs(yw) < 3", "unknown column 'yw'"),
    ("yaw >", "expected a column, a number or '(' at character 6, found the end"),
    ("(yaw > 3", "expected ')'"),
    ("yaw > 3 yaw", "expected 'and', 'or' or the end"),
    ("yaw", "column 'yaw' is a number, not a condition"),
    ("bbox > 3", "column 'bbox' holds"),
    ("status > 'a'", "compares numbers"),
    ("status == 3", "cannot compare text with a number"),
    ("abs(status) > 1", "needs a number"),
    ("__import__('os').system('true')", ".system("),
    ("__import__('os')", "expected 'and', 'or' or the end"),
    ("yaw ; 3", "cannot read ';"),
    ("", "empty expression"),
])
def test_bad_expressions_say_what_is_wrong(table, text, says):
    with pytest.raises(UserError) as e:
        parse_where(text).mask(table)
    assert says in e.value.cli_message() and e.value.cli_message().startswith("--where: ")
    assert "\n" not in e.value.cli_message()


def test_where_runs_with_the_other_criteria_and_before_the_ranking(table):
    # --top-k ranks only the rows --where kept: the best two frontal faces, not the best two
    got = facequal.filter(table, where="abs(yaw) < 30", top_k=2)
    assert got["path"].to_pylist() == ["a.jpg", "c.jpg"]
    assert facequal.filter(table, where="abs(yaw) < 30", min_quality=0.5)["path"].to_pylist() == ["a.jpg"]


def test_cli_filter_where(tmp_path, table):
    src = tmp_path / "scores.parquet"
    pq.write_table(table, src)
    out = tmp_path / "kept.parquet"
    res = CliRunner().invoke(app, ["filter", str(src), "--where", "abs(yaw) <= 45 and eye_distance >= 40",
                                   "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert pq.read_table(out)["path"].to_pylist() == ["a.jpg", "f.jpg"]
    assert "where: -4" in res.output


def test_cli_bad_where_is_one_line_and_writes_nothing(tmp_path, table):
    src = tmp_path / "scores.parquet"
    pq.write_table(table, src)
    out = tmp_path / "kept.parquet"
    for text in ("abs(yw) <= 45", "yaw >> 3"):
        res = CliRunner().invoke(app, ["filter", str(src), "--where", text, "-o", str(out)])
        assert res.exit_code != 0
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("facequal: error: --where: "), res.output
        assert "Traceback" not in res.output
        assert not out.exists()


def test_python_callers_see_the_parameter_name(table):
    with pytest.raises(ValueError, match=r"^where: unknown column"):
        facequal.filter(table, where="nope > 1")
