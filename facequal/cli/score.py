"""`facequal score`: detect, align and score every face; write Parquet. Also what `embed` shares:
running a job with its progress bar and summary, and the check that inputs were found."""

from __future__ import annotations

from pathlib import Path

import typer

from facequal import options
from facequal.cli import flags as o
from facequal.cli.app import app, err_console, handles_errors, say, warn


def print_summary(summary, elapsed: float, output: str, stats: dict[str, int] | None = None) -> int:
    """Print the end-of-run summary table on stderr; returns the number of bad inputs.

    ``summary`` is the run's :class:`facequal.pipeline.store.RunSummary` (counted while the output was
    written, so no table is held); ``stats`` (``Sources.stats``) adds an "inputs" line.
    """
    from rich.table import Table

    from facequal import schema

    counts = {k: summary.status_counts.get(k, 0) for k in schema.STATUSES}
    bad = sum(v for k, v in counts.items() if k not in (schema.OK, schema.NO_FACE))
    t = Table(title=f"facequal: {output}", show_header=False, title_justify="left")
    t.add_row("images", f"{summary.images:,}")
    t.add_row("faces", f"{counts[schema.OK]:,}")
    t.add_row("no face", f"{counts[schema.NO_FACE]:,}")
    t.add_row("errors", ", ".join(f"{k} {v:,}" for k, v in counts.items()
                                  if k not in (schema.OK, schema.NO_FACE) and v) or "0")
    if summary.median_quality is not None:
        t.add_row("median quality", f"{summary.median_quality:.3f}")
    labels = {"duplicates": "duplicate paths read once", "empty_paths": "empty paths skipped",
              "outside_manifest": "paths outside the manifest's folder",
              "escaped_names": "non-UTF-8 names escaped", "ignored_columns": "manifest columns not carried",
              "non_image_files": "non-image files skipped"}
    noted = [f"{labels.get(k, k)} {v:,}" for k, v in (stats or {}).items() if v]
    if noted:
        t.add_row("inputs", ", ".join(noted))
    rate = summary.images / elapsed if elapsed > 0 else 0.0
    t.add_row("wall time", f"{elapsed:.1f} s ({rate:.0f} images/s)")
    err_console.print(t)
    return bad


def check_found_inputs(job, inputs: list[Path] | None, *, resume: bool, from_scores: Path | None) -> None:
    """Refuse a run that found no image at all (an empty folder, a folder of other files): it used
    to exit 0 with an empty output and no word. With a manifest, ``--from-scores`` or ``--resume``
    an empty input list can be meant (a filtered manifest, a finished run), so it is a warning."""
    from facequal.errors import UserError
    from facequal.pipeline.sources import IMAGE_EXTENSIONS, MANIFEST_EXTENSIONS, printable_path

    if job.n_found:
        if not len(job.refs):
            warn(f"--shard {job.shard[0]}/{job.shard[1]} holds none of the {job.n_found:,} inputs; "
                 "the output will be empty")
        return
    where = ", ".join(printable_path(str(p)) for p in inputs or []) or str(from_scores)
    skipped = job.sources.stats.get("non_image_files", 0)
    why = f"no image files found in {where}" + (f"; {skipped:,} non-image files skipped" if skipped else "")
    listed = from_scores is not None or any(p.suffix.lower() in MANIFEST_EXTENSIONS for p in inputs or [])
    if resume or listed:
        warn(why + "; the output will be empty")
        return
    raise UserError(why + f" (image files end in {', '.join(sorted(IMAGE_EXTENSIONS))})")


def run_command(task: str, flags: dict, *, label: str):
    """What `score` and `embed` do with their flags (named as RunOptions' fields, one mapping
    for the CLI and the API): make the job, check that inputs were found, run it; returns it."""
    from facequal.api import Job
    from facequal.options import RunOptions

    inputs, resume = flags["inputs"], bool(flags["resume"])
    job = Job([str(p) for p in inputs or []], task=task, options=RunOptions.pick(flags))
    check_found_inputs(job, inputs, resume=resume, from_scores=flags["from_scores"])
    run_job(job, flags["output"], overwrite=bool(flags["overwrite"]), resume=resume, quiet=bool(flags["quiet"]),
            label=label)
    return job


def run_job(job, output: str, *, overwrite: bool, resume: bool, quiet: bool, label: str) -> None:
    """Run ``job`` into ``output`` with a progress bar, then print the summary (unless quiet).

    The output is checked and locked before any work (:meth:`facequal.api.Job.run`). An OS
    error that stops the run (a full disk, a file system gone read-only) is one line: the
    previous output is replaced only by a finished one, so it is still there.
    """
    from facequal._io import os_error_message
    from facequal.cli.progress import RunProgress
    from facequal.errors import UserError

    progress = RunProgress(quiet=quiet, label=label)
    try:
        job.run(output, overwrite=overwrite, resume=resume, progress=progress, collect=False)
    except UserError:  # OutputExistsError is a FileExistsError too: its own message, not a disk error's
        raise
    except OSError as e:
        raise UserError(f"{os_error_message(e, e.filename or output)}; the run stopped, and {output} is as it "
                        "was before it (rerun with --resume to go on)") from None
    finally:
        progress.stop()
    if not quiet:
        print_summary(job.summary, progress.elapsed, output, stats=job.sources.stats)


def count_bad(summary) -> int:
    """Inputs that could not be processed (any status but ok / no_face)."""
    from facequal import schema

    return sum(v for k, v in summary.status_counts.items() if k not in (schema.OK, schema.NO_FACE))


@app.command("score")
@handles_errors
@o.run_flags(after="model", batch_size=None)
def score_cmd(
    model: o.Model = None,
    aligned: bool = typer.Option(False, "--aligned", help="Inputs are already-aligned crops: skip detection."),
    # The default is explicit, so --max-pixels 0 is refused, not taken for the default.
    max_pixels: int = typer.Option(options.MAX_PIXELS, "--max-pixels",
                                   help="Images with more pixels get the status too_large (>= 1)."),
    save_crops: Path = typer.Option(None, "--save-crops", help="Write the aligned crops (PNG) here."),
    strict: bool = typer.Option(False, "--strict", help="Exit 1 if any input could not be read."),
    **flags: object,
) -> None:
    """Detect, align and score every face; write one row per face (and per faceless image)."""
    job = run_command("quality", {**locals(), **flags}, label="scoring")
    bad = count_bad(job.summary)
    if strict and bad:
        say(f"facequal: --strict: {bad} input(s) could not be processed")
        raise typer.Exit(1)
