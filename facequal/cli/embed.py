"""`facequal embed`: face embeddings through the same sources / detection / alignment as `score`."""

from __future__ import annotations

from pathlib import Path

import typer

from facequal.cli.app import app, handles_errors
from facequal.cli.score import print_summary


@app.command("embed")
@handles_errors
def embed_cmd(
    inputs: list[Path] = typer.Argument(None, help="Image files, folders or Parquet manifests."),
    output: str = typer.Option(..., "-o", "--output", help="Output .parquet file, or a folder ending in '/'."),
    from_scores: Path = typer.Option(None, "--from-scores", help="Embed exactly the faces of this scores file."),
    model: str = typer.Option(None, "--model", help="Embedding model: 'dlib-resnet-v1' (default) or an ONNX path."),
    contract: Path = typer.Option(None, "--contract", help="JSON contract for a model that carries none."),
    faces: str = typer.Option("largest", "--faces", help="'largest' (one per image) or 'all'."),
    det_size: int = typer.Option(640, "--det-size", help="Longer side the detector sees."),
    det_threshold: float = typer.Option(0.6, "--det-threshold", help="Detector confidence threshold."),
    min_face: float = typer.Option(0.0, "--min-face", help="Ignore smaller faces (pixels)."),
    pad: float = typer.Option(0.0, "--pad", help="Always pad the canvas by this fraction."),
    path_column: str = typer.Option("path", "--path-column", help="Manifest column holding image paths."),
    identity_from: str = typer.Option(None, "--identity-from", help="'parent': identity = parent folder."),
    shard: str = typer.Option(None, "--shard", help="I/N: process only shard I of N."),
    batch_size: int = typer.Option(32, "--batch-size", help="Faces per model call."),
    jobs: int = typer.Option(0, "--jobs", "-j", help="Worker processes (0 = all cores)."),
    threads: int = typer.Option(1, "--threads", help="onnxruntime threads per worker."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    backend: str = typer.Option("local", "--backend", help="local (worker processes here) or dask (a Dask cluster)."),
    scheduler: str = typer.Option(None, "--scheduler", help="Dask scheduler (tcp://HOST:PORT) for --backend dask."),
    flip_tta: bool = typer.Option(None, "--flip-tta/--no-flip-tta",
                                  help="Average each embedding with that of the mirrored face "
                                       "(default: on for dlib-resnet-v1, off for other models)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
) -> None:
    """Compute one L2-normalised embedding per face, keyed by (path, face_index)."""
    from facequal.api import Job
    from facequal.errors import UserError
    from facequal.progress import RunProgress

    if not inputs and not from_scores:
        raise UserError("give INPUT paths or --from-scores FILE")
    job = Job([str(p) for p in inputs or []], task="embedding", model=model,
              contract=str(contract) if contract else None, faces=faces, det_size=det_size,
              det_threshold=det_threshold, min_face=min_face, pad=pad, path_column=path_column,
              identity_from=identity_from, shard=shard, batch_size=batch_size, jobs=jobs or None,
              threads=threads, device=device, from_scores=str(from_scores) if from_scores else None,
              backend=backend, scheduler=scheduler, flip_tta=flip_tta)
    progress = RunProgress(quiet=quiet, label="embedding")
    try:
        job.run(output, overwrite=overwrite, resume=resume, progress=progress, collect=False)
    finally:
        progress.stop()
    if not quiet:
        print_summary(job.summary, progress.elapsed, output, stats=job.sources.stats)
