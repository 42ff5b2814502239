"""`--help` lists the choices of the closed options and the bundled models, with no <bool>
placeholder after a flag."""

from __future__ import annotations

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from facequal.cli import app
from facequal.models.zoo import bundled_names


def _help(*verb: str) -> str:
    res = CliRunner().invoke(app, [*verb, "--help"], env={"COLUMNS": "200"}, terminal_width=200)
    assert res.exit_code == 0, res.output
    return res.output


def test_score_help_lists_choices_and_models():
    text = _help("score")
    assert "<subject|largest|all|center>" in text
    assert "<cpu|cuda>" in text
    assert "<local|dask>" in text
    for name in bundled_names("quality"):
        assert name in text


@pytest.mark.parametrize("verb", ["score", "embed", "filter", "report", "pool", "eval", "calibrate"])
def test_help_has_no_bool_placeholder(verb):
    assert "<bool>" not in _help(verb)


def test_a_choice_typo_is_refused_by_the_parser(tmp_path):
    res = CliRunner().invoke(app, ["score", str(tmp_path), "-o", str(tmp_path / "x.parquet"), "--faces", "biggest"])
    assert res.exit_code == 2
    assert "biggest" in res.output


def test_the_command_list_gives_each_verb_one_unbroken_sentence():
    # a docstring's wrapped first paragraph used to break mid-sentence in `facequal --help`
    lines = _help().splitlines()
    verbs = [c.name for c in get_command(app).commands.values()]
    assert len(verbs) >= 9
    for verb in verbs:
        row = next(i for i, line in enumerate(lines) if line.lstrip("│ ").startswith(verb + " "))
        follow = lines[row + 1].strip("│ ")
        assert not follow or any(follow.startswith(v + " ") for v in verbs) or follow.startswith("╰"), (verb, follow)
