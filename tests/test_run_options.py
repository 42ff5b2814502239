"""One set of run options for the CLI and the API (facequal.options.RunOptions)."""

from __future__ import annotations

import inspect
from dataclasses import fields
from pathlib import Path

import pytest

import facequal
from facequal.cli.embed import embed_cmd
from facequal.cli.score import score_cmd
from facequal.options import BATCH_SIZE, CUDA_BATCH_SIZE, EMBED_BATCH_SIZE, RunOptions, default_batch_size

# Options that only one task has (the rest are shared by score, iter_score and embed).
ONLY_SCORE = {"aligned", "save_crops", "max_pixels"}
ONLY_EMBED = {"flip_tta"}
NOT_A_FLAG = {"chunk_size"}  # an API tuning knob
INTERNAL = {"max_side"}  # the reduced-scale JPEG decoding bound: neither a flag nor a keyword


def test_every_run_option_is_a_keyword_of_the_api_and_a_flag_of_the_cli():
    names = {f.name for f in fields(RunOptions)} - INTERNAL
    for fn, skip in ((facequal.score, ONLY_EMBED), (facequal.iter_score, ONLY_EMBED),
                     (facequal.embed, ONLY_SCORE)):
        params = inspect.signature(fn).parameters
        missing = names - skip - set(params)
        assert not missing, (fn.__name__, missing)
        for name in names - skip:
            assert params[name].kind is inspect.Parameter.KEYWORD_ONLY, (fn.__name__, name)
    for cmd, skip in ((score_cmd, ONLY_EMBED | NOT_A_FLAG), (embed_cmd, ONLY_SCORE | NOT_A_FLAG)):
        missing = names - skip - set(inspect.signature(cmd).parameters)
        assert not missing, (cmd.__name__, missing)


def test_pick_takes_the_options_and_ignores_the_rest():
    opts = RunOptions.pick({"inputs": ["a"], "output": "o.parquet", "overwrite": True, "quiet": True,
                            "jobs": 0, "save_crops": Path("crops"), "contract": Path("c.json"), "pad": 0.5})
    assert opts.jobs is None  # 0: all cores
    assert opts.save_crops == "crops" and opts.contract == "c.json"
    assert opts.pad == 0.5 and opts.faces == RunOptions().faces


def test_job_options_override_and_task_batch_defaults(tiny_model, face_folder):
    job = facequal.api.Job([face_folder], model=str(tiny_model), options=RunOptions(threads=1), jobs=1)
    assert job.jobs == 1 and job.run_options.threads == 1
    assert job.config.batch_size == BATCH_SIZE
    assert RunOptions(batch_size=None).batch_size is None and EMBED_BATCH_SIZE != BATCH_SIZE
    # A GPU gets larger quality-model calls by default; embeddings keep theirs on both.
    assert default_batch_size("quality", "cpu") == BATCH_SIZE < CUDA_BATCH_SIZE == default_batch_size("quality", "cuda")
    assert default_batch_size("embedding", "cpu") == default_batch_size("embedding", "cuda") == EMBED_BATCH_SIZE
    given = facequal.api.Job([face_folder], model=str(tiny_model), batch_size=5, jobs=1)
    assert given.config.batch_size == 5


def test_options_are_checked_by_the_api_with_the_parameter_named(face_folder, tiny_model):
    with pytest.raises(ValueError) as e:
        facequal.api.Job([face_folder], model=str(tiny_model), options=RunOptions(det_size=-1))
    assert e.value.param == "det_size"


def test_api_defaults_are_the_run_options_defaults_and_unknown_keywords_are_refused():
    from dataclasses import MISSING

    defaults = {f.name: f.default for f in fields(RunOptions) if f.default is not MISSING}
    # score's None is the device's default (default_batch_size); embed's is one number
    for fn, batch in ((facequal.score, None), (facequal.iter_score, None),
                      (facequal.embed, EMBED_BATCH_SIZE)):
        params = inspect.signature(fn).parameters
        assert params["batch_size"].default == batch, fn.__name__
        for name, p in params.items():
            if name in defaults and name != "batch_size":
                assert p.default == defaults[name], (fn.__name__, name)
    with pytest.raises(TypeError, match=r"score\(\) got an unexpected keyword argument 'detsize'"):
        facequal.score(["x"], detsize=320)
    with pytest.raises(TypeError, match="flip_tta"):  # an embedding option is not a scoring keyword
        facequal.score(["x"], flip_tta=True)


def test_cli_commands_share_the_flag_declarations_with_their_own_defaults():
    from typer.testing import CliRunner

    from facequal.cli import app

    runner = CliRunner()
    shown = {}
    for cmd in ("score", "embed"):
        r = runner.invoke(app, [cmd, "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
        assert r.exit_code == 0, r.output
        shown[cmd] = r.output
        for flag in ("--from-scores", "--det-size", "--faces", "--shard", "--backend", "--resume", "--quiet"):
            assert flag in r.output, (cmd, flag)
    batch = [line for line in shown["embed"].splitlines() if "--batch-size" in line]
    assert batch and f"[default: {EMBED_BATCH_SIZE}]" in " ".join(batch)
    assert "--save-crops" in shown["score"] and "--save-crops" not in shown["embed"]
    assert "--flip-tta" in shown["embed"] and "--flip-tta" not in shown["score"]


def test_the_typed_keywords_are_the_run_options():
    """What type checkers see (``**options: Unpack[RunKeywords]``) is what the verbs take."""
    from facequal.options import INTERNAL_FIELDS, EmbedKeywords, RunKeywords

    names = {f.name for f in fields(RunOptions)} - INTERNAL_FIELDS
    assert set(EmbedKeywords.__annotations__) | set(RunKeywords.__annotations__) == names
    assert set(RunKeywords.__annotations__) == names - ONLY_EMBED
    assert set(inspect.signature(facequal.score).parameters) >= set(RunKeywords.__annotations__)
    assert set(inspect.signature(facequal.embed).parameters) >= names
