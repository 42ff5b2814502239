"""`facequal filter`, `facequal report` and `facequal pool`: thin typer wrappers over the API."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated

import typer

from facequal.cli.app import app, err_console, handles_errors

if TYPE_CHECKING:  # the CLI imports the implementations only inside the commands
    from facequal.curate.materialize import Materialized
    from facequal.curate.select import FilterResult


@app.command("filter")
@handles_errors
def filter_cmd(
    scores: Annotated[Path, typer.Argument(help="Score file (Parquet file, Parquet dataset dir or CSV).")],
    min_q: Annotated[float | None, typer.Option("--min", help="Keep faces with quality >= this.")] = None,
    max_q: Annotated[float | None, typer.Option("--max", help="Keep faces with quality <= this.")] = None,
    top_k: Annotated[int | None, typer.Option("--top-k", help="Keep the K best faces.")] = None,
    keep_fraction: Annotated[float | None, typer.Option(
        "--keep-fraction", help="Keep the best fraction (0-1) of the faces left by the other criteria.")] = None,
    per_group: Annotated[int | None, typer.Option(
        "--per-group", help="Keep the N best faces of each group (needs --group).")] = None,
    group: Annotated[str | None, typer.Option("--group", help="Column defining groups, e.g. identity.")] = None,
    status: Annotated[list[str] | None, typer.Option(
        "--status", help="Keep rows with this status (repeatable): ok, no_face, unreadable, ...")] = None,
    min_face: Annotated[float | None, typer.Option(
        "--min-face", help="Keep faces whose box's shorter side is at least this many pixels.")] = None,
    where: Annotated[
        str | None,
        typer.Option("--where", help="Keep rows where this holds, e.g. \"abs(yaw) <= 45 and eye_distance >= 40\" "
                     "(comparisons, + - * /, abs(), and/or/not, is null; see the README)."),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            "-o",
            "--output",
            help="'-': image paths on stdout; NAME.parquet: the rows; other names: a path list file.",
        ),
    ] = None,
    null: Annotated[bool, typer.Option("-0", "--null", help="Separate listed paths with NUL bytes.")] = False,
    to: Annotated[Path | None, typer.Option(
        "--to", help="Put copies / links of the kept images in this directory (relative paths kept).")] = None,
    mode: Annotated[str, typer.Option("--mode", help="copy, symlink or hardlink (with --to).")] = "copy",
    root: Annotated[str | None, typer.Option(
        "--root", help="Paths under --to are relative to this (default: the common parent).")] = None,
    base: Annotated[Path | None, typer.Option(
        "--base", help="Directory that relative paths in the score file are relative to (default: cwd).")] = None,
    rejected: Annotated[bool, typer.Option(
        "--rejected", help="Write the rejected side instead (rows not kept; images with no kept face).")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what would happen, write nothing.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")] = False,
) -> None:
    """Select faces by quality, status, face size or any column (--where); write rows, a path list or copies."""
    from facequal.curate.select import filter_scores
    from facequal.options import check_unit

    # Qualities are probabilities: a threshold outside [0, 1] keeps all or nothing (and used to
    # leave an empty --to folder). Checked before anything is read or created.
    check_unit("--min", min_q)
    check_unit("--max", max_q)

    table_out, paths_out = _filter_outputs(output, null)
    res = filter_scores(
        scores,
        min_quality=min_q,
        max_quality=max_q,
        top_k=top_k,
        keep_fraction=keep_fraction,
        per_group=per_group,
        group=group,
        status=status or None,
        min_face=min_face,
        where=where,
        output=table_out,
        paths_out=None if dry_run and output == "-" else paths_out,
        null=null,
        to=to,
        mode=mode,
        root=root,
        base=base,
        rejected=rejected,
        dry_run=dry_run,
        overwrite=overwrite,
    )
    err_console.print(res.summary(), highlight=False, soft_wrap=True)
    if dry_run:
        _print_dry_run(res, output, table_out)
    if res.materialized is not None:
        _print_materialized(res.materialized, "rejected" if rejected else "kept", dry_run=dry_run,
                            overwrite=overwrite)
    if output is None and to is None and not dry_run:
        err_console.print("facequal: note: nothing written; give -o FILE, -o -, --to DIR or --dry-run")


def _filter_outputs(output: str | None, null: bool) -> tuple[str | None, str | IO[bytes] | None]:
    """``-o`` as (Parquet rows file, path list target): ``-`` is stdout, ``NAME.parquet`` the rows,
    any other name a path list."""
    if output == "-":
        table_out, paths_out = None, sys.stdout.buffer  # image paths on stdout, as bytes
    elif output is not None and output.lower().endswith(".parquet"):
        table_out, paths_out = output, None
    else:
        table_out, paths_out = None, output
    if null and paths_out is None:
        err_console.print("facequal: warning: -0 only applies to a path list (-o - or -o FILE)")
    return table_out, paths_out


def _print_dry_run(res: FilterResult, output: str | None, table_out: str | None) -> None:
    """What a ``--dry-run`` would have written, on stdout."""
    side = "rejected" if res.rejected else "kept"
    n_rows = res.n_rows - res.n_kept if res.rejected else res.n_kept
    n_imgs = len(res.rejected_images if res.rejected else res.kept_images)
    typer.echo(f"dry run: {res.n_kept} of {res.n_rows} rows kept; {len(res.kept_images)} images kept, "
               f"{len(res.rejected_images)} rejected")
    for k, v in res.dropped.items():
        typer.echo(f"  dropped by {k.replace('_', '-')}: {v}")
    if table_out is not None:
        typer.echo(f"would write {n_rows} {side} rows to {table_out}")
    if output is not None and table_out is None:
        typer.echo(f"would list {n_imgs} {side} image paths to {'stdout' if output == '-' else output}")


def _print_materialized(m: Materialized, side: str, *, dry_run: bool, overwrite: bool) -> None:
    """What ``--to`` did (or would do): one line, then the failures; exit 1 when some failed."""
    verb = {"copy": "copied", "symlink": "symlinked", "hardlink": "hardlinked"}[m.mode]
    made = {"copy": "copies", "symlink": "symlinks to the source", "hardlink": "hardlinks"}[m.mode]
    existing = m.existing - m.other_kind
    line = (
        f"{'would be ' if dry_run else ''}{verb} {m.done} {side} images into {m.target}"
        + (f"; {existing} already there, skipped" if existing else "")
        + (" (--overwrite replaces them)" if existing and not overwrite else "")
        + (f"; {m.other_kind} skipped that are not {made} (--overwrite replaces them)" if m.other_kind else "")
        + (f"; {len(m.failed)} failed" if m.failed else "")
    )
    (typer.echo if dry_run else lambda s: err_console.print(s, highlight=False, soft_wrap=True))(line)
    for path, why in m.failed[:10]:
        err_console.print(f"facequal: warning: {path!r}: {why}", highlight=False, soft_wrap=True)
    if len(m.failed) > 10:
        err_console.print(f"facequal: warning: ... and {len(m.failed) - 10} more", highlight=False)
    if m.failed and not dry_run:
        raise typer.Exit(1)


@app.command("report")
@handles_errors
def report_cmd(
    scores: Annotated[Path, typer.Argument(help="Score file (Parquet file, Parquet dataset dir or CSV).")],
    output: Annotated[
        str,
        typer.Option(
            "-o",
            "--output",
            help="The HTML file to write (report.html), or a folder ending in / for a paged report of every face.",
        ),
    ],
    group: Annotated[str | None, typer.Option(
        "--group", help="Column to group by, one block per value (e.g. identity).")] = None,
    order: Annotated[str, typer.Option("--order", help="asc: lowest quality first; desc: highest first.")] = "asc",
    max_faces: Annotated[int, typer.Option(
        "--max-faces", help="Above this many faces the tiles are an even sample across the quality range.")] = 30_000,
    link: Annotated[bool, typer.Option("--link", help="Point tiles at crop_path files instead of embedding.")] = False,
    thumb_size: Annotated[int, typer.Option("--thumb-size", help="Thumbnail side in pixels.")] = 80,
    fmt: Annotated[str, typer.Option("--format", help="Embedded thumbnail format: webp or jpeg.")] = "webp",
    base: Annotated[Path | None, typer.Option(
        "--base", help="Directory that relative paths in the score file are relative to (default: cwd).")] = None,
    title: Annotated[str | None, typer.Option("--title", help="Page title.")] = None,
    threshold: Annotated[float, typer.Option("--threshold", help="Initial threshold of the page.")] = 0.5,
    jobs: Annotated[int, typer.Option("-j", "--jobs", help="Processes making thumbnails (0: all cores).")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
    page_size: Annotated[int, typer.Option("--page-size", help="Tiles per page of a paged report (-o DIR/).")] = 2000,
) -> None:
    """Write an HTML contact sheet of the faces, ranked by quality.

    One self-contained file, or a paged folder (-o DIR/) for big datasets."""
    from facequal.curate.report import build_report

    res = build_report(
        scores,
        output,
        group=group,
        order=order,
        max_faces=max_faces,
        link=link,
        thumb_size=thumb_size,
        fmt=fmt,
        base=base,
        title=title,
        threshold=threshold,
        jobs=jobs,
        overwrite=overwrite,
        page_size=page_size,
        source=str(scores),
        progress=lambda s: err_console.print(s, highlight=False),
    )
    for n in res.notes:
        err_console.print(f"facequal: note: {n}", highlight=False, soft_wrap=True)
    pages = (f" on {res.n_pages:,} page{'' if res.n_pages == 1 else 's'} ({res.n_files:,} files)"
             if res.n_files > 1 else "")
    err_console.print(
        f"wrote {res.path}: {res.n_shown:,} of {res.n_faces:,} faces{pages}, {res.size_bytes / 1e6:.1f} MB",
        highlight=False,
        soft_wrap=True,
    )


@app.command("pool")
@handles_errors
def pool_cmd(
    scores: Annotated[Path, typer.Option("--scores", help="Score file (quality per face).")],
    embeddings: Annotated[Path, typer.Option("--embeddings", help="Embeddings file (vector per face).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Templates Parquet file to write.")],
    by: Annotated[str, typer.Option("--by", help="Column defining the sets, e.g. identity.")] = "identity",
    method: Annotated[str, typer.Option("--method", help="mean, quality, softmax or topk.")] = "quality",
    tau: Annotated[float, typer.Option("--tau", help="Softmax temperature (method softmax).")] = 0.1,
    k: Annotated[int, typer.Option("--k", help="Faces averaged by method topk.")] = 3,
    min_quality: Annotated[float | None, typer.Option(
        "--min-quality", help="Discard faces below this quality before pooling.")] = None,
    if_empty: Annotated[
        str,
        typer.Option(
            "--if-empty",
            help="Groups with no face left by --min-quality: drop, best (keep the best face), error.",
        ),
    ] = "drop",
    embedding_column: Annotated[str, typer.Option("--embedding-column", help="Column of the vectors.")] = "embedding",
    drop_invalid: Annotated[
        bool,
        typer.Option(
            "--drop-invalid",
            help="Leave out unmatched faces, NaN qualities, missing groups (instead of stopping).",
        ),
    ] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
) -> None:
    """Pool the embeddings of each set into one quality-weighted, L2-normalised template."""
    from facequal.curate.pool import pool

    res = pool(
        scores,
        embeddings,
        by=by,
        method=method,
        tau=tau,
        k=k,
        min_quality=min_quality,
        if_empty=if_empty,
        embedding_column=embedding_column,
        drop_invalid=drop_invalid,
        output=output,
        overwrite=overwrite,
        warn=lambda m: err_console.print(f"facequal: warning: {m}", highlight=False, soft_wrap=True),
    )
    t = res.table
    err_console.print(
        f"wrote {output}: {t.num_rows} templates from {sum(t['n_members'].to_pylist())} faces "
        f"({method} pooling)",
        highlight=False,
        soft_wrap=True,
    )
