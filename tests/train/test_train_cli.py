"""`facequal train` from the command line: a few steps on a synthetic cache, then resume and score."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="training needs torch: pip install 'facequal[train]'")

from test_train_trainer import synthetic_cache  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from facequal.cli import app  # noqa: E402


def _setup(tmp_path: Path, **settings) -> tuple[Path, Path]:
    """Synthetic train / val caches and a tiny settings file: (cache dir, settings file)."""
    caches = tmp_path / "caches"
    synthetic_cache(caches / "train")
    synthetic_cache(caches / "val", seed=1)
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"cache": "unused", "out_dir": "unused", "width": 0.25, "p": 3, "k": 4,
                                "checkpoint_every": 2, "log_every": 1, **settings}))
    return caches, path


def test_train_command_trains_resumes_and_exports(tmp_path: Path) -> None:
    caches, settings = _setup(tmp_path, export_name="tiny.onnx")
    out = tmp_path / "run"
    runner = CliRunner()
    r = runner.invoke(app, ["train", str(settings), "--cache-dir", str(caches), "--out", str(out), "--steps", "4"])
    assert r.exit_code == 0, r.output
    assert (out / "tiny.onnx").is_file()
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps[-1] == 3
    # a longer run picks up from the checkpoint instead of starting over
    r = runner.invoke(app, ["train", str(settings), "--cache-dir", str(caches), "--out", str(out), "--steps", "6",
                            "--resume"])
    assert r.exit_code == 0, r.output
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 5
    # the same command without --resume does not throw the run away: one line, nothing touched
    ckpt = (out / "checkpoint.pt").read_bytes()
    log = (out / "log.jsonl").read_text()
    r = runner.invoke(app, ["train", str(settings), "--cache-dir", str(caches), "--out", str(out), "--steps", "6"])
    assert r.exit_code == 2 and "holds a training run (checkpoint at step 6 of 6)" in r.output
    assert "--resume" in r.output and "--overwrite" in r.output and "Traceback" not in r.output
    assert (out / "checkpoint.pt").read_bytes() == ckpt and (out / "log.jsonl").read_text() == log
    # the exported model scores faces through the normal pipeline
    from PIL import Image

    img = tmp_path / "face.png"
    Image.new("RGB", (96, 96), (120, 110, 100)).save(img)
    r = runner.invoke(app, ["score", str(img), "-o", str(tmp_path / "s.parquet"), "--model", str(out / "tiny.onnx"),
                            "--aligned", "-q", "-j", "1"])
    assert r.exit_code == 0, r.output


def test_train_overwrite_starts_over_with_a_fresh_log_and_keeps_other_files(tmp_path: Path) -> None:
    caches, settings = _setup(tmp_path, export=False)
    out = tmp_path / "run"
    runner = CliRunner()
    args = ["train", str(settings), "--cache-dir", str(caches), "--out", str(out), "--steps", "4"]
    assert runner.invoke(app, args).exit_code == 0
    (out / "notes.txt").write_text("mine")
    r = runner.invoke(app, [*args[:-1], "2", "--overwrite"])
    assert r.exit_code == 0, r.output
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == [0, 1]  # the new run's lines only, not appended to the old run's
    assert (out / "notes.txt").read_text() == "mine"


def test_train_never_removes_files_a_run_did_not_write(tmp_path: Path) -> None:
    """A file that only shares a run file's name is left alone, even with --overwrite or --resume."""
    caches, settings = _setup(tmp_path, export=False)
    runner = CliRunner()
    out = tmp_path / "run"
    out.mkdir()
    (out / "log.jsonl").write_text("my own notes, not a training log\n")
    (out / "checkpoint.pt").write_bytes(b"some other tool's weights")
    args = ["train", str(settings), "--cache-dir", str(caches), "--out", str(out), "--steps", "2"]
    r = runner.invoke(app, args)
    assert r.exit_code == 2 and "holds a training run:" in r.output and "Traceback" not in r.output
    # refused before any work: no cache is built for a run that cannot start
    r = runner.invoke(app, ["train", str(settings), "--cache-dir", str(tmp_path / "new-caches"), "--data",
                            str(tmp_path), "--out", str(out)])
    assert r.exit_code == 2 and "holds a training run" in r.output and not (tmp_path / "new-caches").exists()
    r = runner.invoke(app, [*args, "--overwrite"])
    assert r.exit_code == 2 and "was not written by a facequal training run" in r.output
    assert (out / "log.jsonl").read_text() == "my own notes, not a training log\n"
    assert (out / "checkpoint.pt").read_bytes() == b"some other tool's weights"
    # a fresh run (--resume with nothing to resume) keeps a foreign best.pt too
    other = tmp_path / "other"
    other.mkdir()
    (other / "best.pt").write_bytes(b"not ours")
    r = runner.invoke(app, ["train", str(settings), "--cache-dir", str(caches), "--out", str(other),
                            "--steps", "2", "--resume"])
    assert r.exit_code == 0, r.output
    assert (other / "best.pt").read_bytes() == b"not ours"


def test_train_command_needs_data_for_missing_caches(tmp_path: Path) -> None:
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"cache": str(tmp_path / "none" / "train"), "out_dir": str(tmp_path / "o")}))
    r = CliRunner().invoke(app, ["train", str(settings)])
    assert r.exit_code == 2 and "--data" in r.output
