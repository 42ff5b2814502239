"""`facequal score`: detect, align and score every face; write Parquet."""

from __future__ import annotations

from pathlib import Path

import typer

from facequal.cli.app import app, err_console, handles_errors


def print_summary(summary, elapsed: float, output: str, stats: dict[str, int] | None = None) -> int:
    """Print the end-of-run summary table on stderr; returns the number of bad inputs.

    ``summary`` is the run's :class:`facequal.store.RunSummary` (counted while the output was
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
              "escaped_names": "non-UTF-8 names escaped", "ignored_columns": "manifest columns not carried"}
    noted = [f"{labels.get(k, k)} {v:,}" for k, v in (stats or {}).items() if v]
    if noted:
        t.add_row("inputs", ", ".join(noted))
    rate = summary.images / elapsed if elapsed > 0 else 0.0
    t.add_row("wall time", f"{elapsed:.1f} s ({rate:.0f} images/s)")
    err_console.print(t)
    return bad


def count_bad(summary) -> int:
    """Inputs that could not be processed (any status but ok / no_face)."""
    from facequal import schema

    return sum(v for k, v in summary.status_counts.items() if k not in (schema.OK, schema.NO_FACE))


@app.command("score")
@handles_errors
def score_cmd(
    inputs: list[Path] = typer.Argument(None, help="Image files, folders (walked recursively) or Parquet manifests."),
    output: str = typer.Option(..., "-o", "--output", help="Output .parquet file, or a folder ending in '/'."),
    from_scores: Path = typer.Option(None, "--from-scores", help="Score exactly the faces of a scores file."),
    model: str = typer.Option(None, "--model", help="Bundled model name or path to an ONNX file."),
    contract: Path = typer.Option(None, "--contract", help="JSON contract for a model that carries none."),
    faces: str = typer.Option("largest", "--faces", help="'largest' (one per image) or 'all'."),
    det_size: int = typer.Option(640, "--det-size", help="Longer side the detector sees (larger are downscaled)."),
    det_threshold: float = typer.Option(0.6, "--det-threshold", help="Detector confidence threshold."),
    min_face: float = typer.Option(0.0, "--min-face", help="Ignore faces whose box is smaller (pixels)."),
    pad: float = typer.Option(0.0, "--pad", help="Always pad the canvas by this fraction (tight crops)."),
    aligned: bool = typer.Option(False, "--aligned", help="Inputs are already-aligned crops: skip detection."),
    max_pixels: int = typer.Option(100_000_000, "--max-pixels", help="Refuse images with more pixels."),
    path_column: str = typer.Option("path", "--path-column", help="Manifest column holding image paths."),
    identity_from: str = typer.Option(None, "--identity-from", help="'parent': identity = parent folder."),
    shard: str = typer.Option(None, "--shard", help="I/N: process only shard I of N."),
    batch_size: int = typer.Option(64, "--batch-size", help="Faces per model call."),
    jobs: int = typer.Option(0, "--jobs", "-j", help="Worker processes (0 = all cores)."),
    threads: int = typer.Option(1, "--threads", help="onnxruntime threads per worker."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    backend: str = typer.Option("local", "--backend", help="local (worker processes here) or dask (a Dask cluster)."),
    scheduler: str = typer.Option(None, "--scheduler", help="Dask scheduler (tcp://HOST:PORT) for --backend dask."),
    save_crops: Path = typer.Option(None, "--save-crops", help="Write the aligned crops (PNG) here."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run / add new inputs."),
    strict: bool = typer.Option(False, "--strict", help="Exit 1 if any input could not be read."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
) -> None:
    """Detect, align and score every face; write one row per face (and per faceless image)."""
    from facequal.api import Job
    from facequal.errors import UserError
    from facequal.models.session import providers_for
    from facequal.progress import RunProgress

    if not inputs and not from_scores:
        raise UserError("give INPUT paths or --from-scores FILE")
    providers_for(device)  # fail fast, with the reason, before any work
    job = Job([str(p) for p in inputs or []], task="quality", model=model,
              from_scores=str(from_scores) if from_scores else None,
              contract=str(contract) if contract else None, faces=faces, det_size=det_size,
              det_threshold=det_threshold, min_face=min_face, pad=pad, aligned=aligned,
              max_pixels=max_pixels, path_column=path_column, identity_from=identity_from,
              shard=shard, batch_size=batch_size, jobs=jobs or None, threads=threads, device=device,
              save_crops=str(save_crops) if save_crops else None,
              backend=backend, scheduler=scheduler)
    progress = RunProgress(quiet=quiet)
    try:
        job.run(output, overwrite=overwrite, resume=resume, progress=progress, collect=False)
    finally:
        progress.stop()
    if not quiet:
        print_summary(job.summary, progress.elapsed, output, stats=job.sources.stats)
    bad = count_bad(job.summary)
    if strict and bad:
        err_console.print(f"facequal: --strict: {bad} input(s) could not be processed")
        raise typer.Exit(1)
