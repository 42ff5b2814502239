"""Library errors: ValueError / FileExistsError / FileNotFoundError subclasses; the Python API
names the parameter (det_size), the CLI the flag (--det-size)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import facequal
from facequal.cli import app
from facequal.errors import InputNotFoundError, OutputExistsError, UserError

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "faces" / "astronaut.jpg"


def test_api_message_names_the_parameter():
    with pytest.raises(ValueError, match="det_size") as info:
        facequal.score([str(EXAMPLE)], det_size=-5)
    assert "--det-size" not in str(info.value)
    assert isinstance(info.value, UserError)


def test_cli_message_names_the_flag(tmp_path):
    res = CliRunner().invoke(app, ["score", str(EXAMPLE), "-o", str(tmp_path / "x.parquet"),
                                   "--det-size", "-5"])
    assert res.exit_code == 2
    assert "--det-size" in res.output


def test_missing_input_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        facequal.score([str(tmp_path / "missing")])
    assert issubclass(InputNotFoundError, UserError)


def test_existing_output_is_a_file_exists_error(tmp_path):
    out = tmp_path / "x.parquet"
    out.write_bytes(b"not ours")
    with pytest.raises(FileExistsError):
        facequal.score([str(EXAMPLE)], output=out)
    assert issubclass(OutputExistsError, ValueError)


def test_api_checks_empty_input_and_device_like_the_cli():
    with pytest.raises(ValueError, match="from_scores"):
        facequal.score([])
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(UserError, match="no CUDA provider"):
            facequal.score([str(EXAMPLE)], device="cuda")


def test_api_verbs_take_explicit_keywords():
    import inspect

    for verb in (facequal.score, facequal.iter_score, facequal.embed, facequal.filter, facequal.report,
                 facequal.pool, facequal.evaluate, facequal.calibrate, facequal.audit):
        assert verb.__doc__
    for verb in (facequal.score, facequal.iter_score, facequal.embed, facequal.filter):
        params = inspect.signature(verb).parameters
        assert not any(p.kind is p.VAR_KEYWORD for p in params.values()), verb
    assert {"det_size", "faces", "device", "backend", "from_scores", "jobs"} <= set(
        inspect.signature(facequal.score).parameters)


def test_filter_returns_the_kept_table(tmp_path):
    table = facequal.score([str(EXAMPLE.parent)], jobs=1)
    kept = facequal.filter(table, min_quality=0.4)
    assert 0 < kept.num_rows < table.num_rows
    assert all(q >= 0.4 for q in kept["quality"].to_pylist())
    assert kept.column_names == table.column_names
