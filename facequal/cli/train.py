"""`facequal train`: build the teacher caches (once) and train a LightQNet (needs `facequal[train]`)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from facequal.cli.app import app, err_console, handles_errors


def _require_torch() -> None:
    from facequal.errors import UserError

    try:
        import torch  # noqa: F401
    except ImportError:
        raise UserError("training needs torch: pip install 'facequal[train]'") from None


@app.command("train")
@handles_errors
def train_cmd(
    config: Path = typer.Argument(..., help="Training settings (JSON, see configs/train-dm100.json)."),
    data: Path = typer.Option(None, "--data", help="Data root with lfw/, celeba/, cfp/, lfw-pairs.tsv."),
    cache_dir: Path = typer.Option(None, "--cache-dir", help="Where the train/val teacher caches live."),
    out_dir: Path = typer.Option(None, "--out", help="Run folder (checkpoints, log, model)."),
    steps: int = typer.Option(None, "--steps", help="Override the number of steps."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the run folder's last checkpoint."),
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="Start over in a run folder that holds a run (replaces its checkpoint, log)."),
    threads: int = typer.Option(None, "--threads", help="torch threads."),
    jobs: int = typer.Option(2, "--jobs", "-j", help="Processes for building the caches."),
) -> None:
    """Train our LightQNet as the paper describes: IDQ loss on pairwise teacher labels, distillation.

    Builds the crop / teacher caches first when they are missing."""
    _require_torch()
    from facequal.errors import UserError
    from facequal.train import TrainConfig, run
    from facequal.train.build_cache import BuildConfig, build_cache
    from facequal.train.trainer import claim_run_folder

    try:
        settings = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{config}: cannot read training settings: {e}") from None
    if cache_dir is not None:
        settings["cache"] = str(cache_dir / "train")
        settings["val_cache"] = str(cache_dir / "val")
    if out_dir is not None:
        settings["out_dir"] = str(out_dir)
    if steps is not None:
        settings["steps"] = steps
    if threads is not None:
        settings["threads"] = threads
    settings["resume"] = resume
    settings["overwrite"] = overwrite
    try:
        cfg = TrainConfig.from_dict(settings)
    except (TypeError, ValueError) as e:
        raise UserError(f"{config}: {e}") from None
    claim_run_folder(cfg)  # a refusal comes before any cache is built
    for split, path in (("val", cfg.val_cache), ("train", cfg.cache)):
        if path and not (Path(path) / "meta.json").is_file():
            if data is None:
                raise UserError(f"the {split} cache {path} is missing: pass --data to build it")
            err_console.print(f"building the {split} cache in {path} (detection, alignment, teacher) ...")
            bc = (BuildConfig.for_validation(str(data), path, jobs=jobs) if split == "val"
                  else BuildConfig(data_root=str(data), out=path, jobs=jobs))
            build_cache(bc)
    summary = run(cfg)
    err_console.print_json(json.dumps({k: v for k, v in summary.items() if not isinstance(v, (list, dict))}))
