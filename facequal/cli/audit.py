"""`facequal audit`: label noise and duplicates of a face dataset (thin wrapper over the library)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from facequal.cli.app import app, err_console, handles_errors
from facequal.options import IDENTITY_THRESHOLD as DEFAULT_IDENTITY_THRESHOLD
from facequal.options import MISLABEL_THRESHOLD as DEFAULT_MISLABEL_THRESHOLD


@app.command("audit")
@handles_errors
def audit_cmd(
    scores: Annotated[Path, typer.Argument(help="Score file (identity and quality per face).")],
    embeddings: Annotated[Path, typer.Option("--embeddings", help="Embeddings file (vector per face).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Audited Parquet file to write.")],
    by: Annotated[str, typer.Option("--by", help="Identity column, or 'parent' (the image's folder).")] = "identity",
    mislabel_threshold: Annotated[float, typer.Option(
        "--mislabel-threshold", help="Flag identity_outlier above this (0: closer to another identity than to "
        "its own, adjusted for how tight its identity is).")] = DEFAULT_MISLABEL_THRESHOLD,
    identities: Annotated[Path | None, typer.Option(
        "--identities", help="Also write identity pairs likely to be one person (Parquet).")] = None,
    identity_threshold: Annotated[float, typer.Option(
        "--identity-threshold", help="Same-person score of the pairs written (about 1: one person in two "
        "folders).")] = DEFAULT_IDENTITY_THRESHOLD,
    report: Annotated[Path | None, typer.Option(
        "--report", help="Also write an HTML page of the audit (suspects first).")] = None,
    no_duplicates: Annotated[bool, typer.Option("--no-duplicates", help="Skip the duplicate search.")] = False,
    root: Annotated[Path | None, typer.Option("--root", help="Folder the image paths are relative to.")] = None,
    embedding_column: Annotated[str, typer.Option("--embedding-column", help="Column of the vectors.")] = "embedding",
    drop_invalid: Annotated[bool, typer.Option(
        "--drop-invalid", help="Leave out unmatched faces and bad vectors (instead of stopping).")] = False,
    jobs: Annotated[int, typer.Option("-j", "--jobs", help="Worker processes for decoding images.")] = 1,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
) -> None:
    """Score each face for label noise (identity_outlier, mislabel) and link duplicate images."""
    from facequal.curate.audit import audit

    res = audit(scores, embeddings, by=by, mislabel_threshold=mislabel_threshold,
                identity_threshold=identity_threshold, duplicates=not no_duplicates, image_root=root,
                embedding_column=embedding_column, drop_invalid=drop_invalid, jobs=jobs, output=output,
                identities=identities, report=report, overwrite=overwrite,
                warn=lambda m: err_console.print(f"facequal: warning: {m}", highlight=False, soft_wrap=True))
    err_console.print(f"wrote {output}: {res.table.num_rows} rows, {res.n_mislabel} suspected mislabels, "
                      f"{res.n_duplicates} duplicate faces", highlight=False, soft_wrap=True)
    if identities is not None and res.identities is not None:
        err_console.print(f"wrote {identities}: {res.identities.num_rows} identity pairs likely to be one person",
                          highlight=False, soft_wrap=True)
    if report is not None:
        err_console.print(f"wrote {report}", highlight=False, soft_wrap=True)
