"""`facequal embed`: face embeddings through the same sources / detection / alignment as `score`."""

from __future__ import annotations

from pathlib import Path

import typer

from facequal import options
from facequal.cli import flags as o
from facequal.cli.app import app, handles_errors
from facequal.cli.score import check_found_inputs, run_job


@app.command("embed")
@handles_errors
def embed_cmd(
    inputs: o.Inputs = None,
    output: o.Output = ...,
    from_scores: Path = typer.Option(None, "--from-scores", help="Embed exactly the faces of this scores file."),
    model: str = typer.Option(None, "--model", help="Embedding model: 'dlib-resnet-v1' (default) or an ONNX path."),
    contract: o.Contract = None,
    faces: o.Faces = options.FACES,
    det_size: o.DetSize = options.DET_SIZE,
    det_threshold: o.DetThreshold = options.DET_THRESHOLD,
    min_face: o.MinFace = options.MIN_FACE,
    pad: o.Pad = options.PAD,
    path_column: o.PathColumn = "path",
    identity_from: o.IdentityFrom = None,
    shard: o.Shard = None,
    batch_size: o.BatchSize = options.EMBED_BATCH_SIZE,
    jobs: o.Jobs = 0,
    threads: o.Threads = options.THREADS,
    device: o.Device = options.DEVICE,
    backend: o.Backend = options.BACKEND,
    scheduler: o.Scheduler = None,
    flip_tta: bool = typer.Option(None, "--flip-tta/--no-flip-tta",
                                  help="Average each embedding with that of the mirrored face "
                                       "(default: on for dlib-resnet-v1, off for other models)."),
    overwrite: o.Overwrite = False,
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run."),
    quiet: o.Quiet = False,
) -> None:
    """Compute one L2-normalised embedding per face, keyed by (path, face_index)."""
    from facequal.api import Job
    from facequal.options import RunOptions

    # The flags are named as RunOptions' fields: one mapping for the CLI and the API.
    job = Job([str(p) for p in inputs or []], task="embedding", options=RunOptions.pick(locals()))
    check_found_inputs(job, inputs, resume=resume, from_scores=from_scores)
    run_job(job, output, overwrite=overwrite, resume=resume, quiet=quiet, label="embedding")
