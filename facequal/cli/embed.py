"""`facequal embed`: face embeddings through the same sources / detection / alignment as `score`."""

from __future__ import annotations

import typer

from facequal import options
from facequal.cli import flags as o
from facequal.cli.app import app, handles_errors
from facequal.cli.score import run_command


@app.command("embed")
@handles_errors
@o.run_flags(after="model", batch_size=options.EMBED_BATCH_SIZE)
def embed_cmd(
    model: str = typer.Option(None, "--model", help="Embedding model: 'dlib-resnet-v1' (default) or an ONNX path."),
    flip_tta: bool = typer.Option(None, "--flip-tta/--no-flip-tta",
                                  help="Average each embedding with that of the mirrored face "
                                       "(default: on for dlib-resnet-v1, off for other models)."),
    **flags: object,
) -> None:
    """Compute one L2-normalised embedding per face, keyed by (path, face_index)."""
    run_command("embedding", {**locals(), **flags}, label="embedding")
