"""`facequal eval` and `facequal calibrate`: quality evaluated on verification pairs."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from facequal.cli.app import app, err_console, handles_errors, say, warn

QUALITY_HELP = ("Quality sources: [LABEL=]PATH[:COLUMN[,COLUMN...]]. A facequal score file, or any "
                "CSV/Parquet with a path column and a score column ('-COLUMN': lower is better).")
EMB_HELP = "Embeddings: `facequal embed` output, or any Parquet/CSV with path and an embedding column."
PAIRS_HELP = ("Pair list: LFW pairs.txt layout (.txt/.tsv), or CSV/Parquet with path_a, path_b, mated "
              "(optional face_index_a, face_index_b, fold).")
FMRS = [1e-3, 1e-2]
LABELS = {"erc_auc": "ERC AUC", "edc_pauc": "EDC pAUC", "edc_pauc_minus_best": "pAUC - best"}


def _label(name: str) -> str:
    if name.startswith("erc_fnmr@"):
        return f"FNMR r={name.split('@')[1]}"
    return LABELS.get(name, name)


def _cell(e: Any, digits: int = 4) -> str:
    if e.low is None:
        return f"{e.value:.{digits}f}"
    return f"{e.value:.{digits}f}\n[{e.low:.{digits}f}, {e.high:.{digits}f}]"


def _pair_options(pairs: str | None, folds: str | None, all_pairs: bool, by: str, identities: str | None,
                  per_identity: int, non_mated: int, match_suffix: int | None, missing: str, seed: int,
                  embedding_column: str) -> dict[str, Any]:
    from facequal.eval.pairs import parse_folds
    from facequal.options import check_int

    check_int("--per-identity", per_identity, 1)
    check_int("--non-mated", non_mated, 1)
    if match_suffix is not None:
        check_int("--match-suffix", match_suffix, 0, note=" (0: match paths as stored)")
    check_int("--seed", seed, 0)
    return {"folds": parse_folds(folds) if folds else None, "all_pairs_by": by if all_pairs else None,
            "identities": identities, "per_identity": per_identity, "non_mated": non_mated,
            "match_suffix": match_suffix, "missing": missing, "seed": seed,
            "embedding_column": embedding_column}


def _warn(lines: list[str]) -> None:
    for w in lines:
        warn(w)


@app.command("eval")
@handles_errors
def eval_command(
    quality: Annotated[list[str], typer.Argument(help=QUALITY_HELP, show_default=False)],
    embeddings: str = typer.Option(..., "--embeddings", "-e", help=EMB_HELP, show_default=False),
    pairs: str = typer.Option(None, "--pairs", "-p", help=PAIRS_HELP, show_default=False),
    folds: str = typer.Option(None, "--folds", help="Pair-list folds to use, e.g. 6-10 or 4,5."),
    all_pairs: bool = typer.Option(False, "--all-pairs", help="All-pairs protocol instead of the list "
                                   "(with an LFW --pairs file: the people of the selected folds)."),
    by: str = typer.Option("identity", "--by", help="All-pairs identity: a column (of --identities, the "
                           "embeddings or a quality file), or 'parent' (parent folder name)."),
    identities: str = typer.Option(None, "--identities", help="Table with path and identity columns."),
    per_identity: int = typer.Option(50, "--per-identity", help="All-pairs: at most this many mated "
                                     "pairs per identity."),
    non_mated: int = typer.Option(20_000, "--non-mated", help="All-pairs: non-mated pairs to sample."),
    match_suffix: int = typer.Option(None, "--match-suffix", help="Match paths by their last N "
                                     "components (default: 2 for LFW lists, else as stored)."),
    fmr: Annotated[list[float], typer.Option("--fmr", help="Target FMR(s) fixing the threshold.")] = FMRS,
    edc_limit: float = typer.Option(0.2, "--edc-limit", help="EDC partial-area discard limit."),
    bootstrap: int = typer.Option(1000, "--bootstrap", help="Bootstrap replicates (0: no intervals)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap and the all-pairs sample."),
    missing: str = typer.Option("drop", "--missing", help="Images without a quality: 'drop' the pair "
                                "from every source, or 'worst' (reject them first)."),
    embedding_column: str = typer.Option("embedding", "--embedding-column", help="Embedding column."),
    json_out: str = typer.Option(None, "--json", help="Write the results as JSON here ('-': stdout)."),
    plot: str = typer.Option(None, "--plot", help="Write the ERC/EDC figure as PREFIX.png and PREFIX.svg."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing --json / --plot files."),
) -> None:
    """Evaluate quality sources on verification pairs: the paper's ERC, the EDC, bootstrap intervals."""
    from rich.console import Console

    from facequal._io import check_output_writable
    from facequal.eval.evaluate import evaluate, to_json, write_json
    from facequal.eval.plot import plot_paths, write_plot
    from facequal.options import check_int

    # Refuse outputs that exist or cannot be written, and options out of range, before any work.
    check_int("--bootstrap", bootstrap, 0)
    if json_out and json_out != "-":
        check_output_writable(json_out, overwrite)
    if plot:
        for p in plot_paths(plot):
            check_output_writable(p, overwrite)
    opts = _pair_options(pairs, folds, all_pairs, by, identities, per_identity, non_mated, match_suffix,
                         missing, seed, embedding_column)
    result = evaluate(quality, embeddings, pairs, fmrs=fmr, edc_limit=edc_limit, bootstrap=bootstrap, **opts)
    out = err_console if json_out == "-" else Console(highlight=False, markup=False)
    _warn(result.warnings)
    print_eval(result, out)
    if json_out == "-":
        sys.stdout.write(to_json(result.to_dict()))
    elif json_out:
        write_json(result.to_dict(), json_out, overwrite)
        say(f"wrote {json_out}")
    if plot:
        png, svg = write_plot(result, plot, overwrite)
        say(f"wrote {png} and {svg}")


def print_eval(result: Any, out: Any) -> None:
    """The terminal tables: one per FMR, then the paired differences."""
    from rich.table import Table

    acc = result.accounting
    out.print(f"{acc.used:,} pairs ({acc.mated:,} mated, {acc.non_mated:,} non-mated) of {acc.listed:,} "
              f"listed; {result.settings['bootstrap']} bootstrap replicates, "
              f"{result.settings['level']:.0%} intervals", highlight=False)
    for note in result.notes:
        out.print(note, highlight=False)
    for r in result.results:
        names = list(r.sources[0].figures)
        t = Table(title=f"FMR {r.fmr:g}: T = {r.threshold.value:.4f} ({r.accepted_non_mated} non-mated "
                        f"accepted), FNMR(0) = {r.fnmr0.value:.4f}", title_justify="left")
        t.add_column("source", no_wrap=True)
        for n in names:
            t.add_column(_label(n), justify="right")
        for s in r.sources:
            t.add_row(s.label, *(_cell(s.figures[n]) for n in names))
        out.print(t)
        if r.differences:
            d = Table(title=f"FMR {r.fmr:g}: paired differences (b - a; negative: b is better)",
                      title_justify="left")
            d.add_column("b - a")
            for n in names:
                if n != "edc_pauc_minus_best":       # equals the pAUC difference
                    d.add_column(_label(n), justify="right")
            for diff in r.differences:
                d.add_row(f"{diff.b} - {diff.a}", *(_cell(diff.figures[n]) for n in names
                                                     if n != "edc_pauc_minus_best"))
            out.print(d)


@app.command("calibrate")
@handles_errors
def calibrate_command(
    quality: str = typer.Argument(..., help=QUALITY_HELP, show_default=False),
    embeddings: str = typer.Option(..., "--embeddings", "-e", help=EMB_HELP, show_default=False),
    pairs: str = typer.Option(None, "--pairs", "-p", help=PAIRS_HELP, show_default=False),
    folds: str = typer.Option(None, "--folds", help="Pair-list folds to use, e.g. 4-5."),
    all_pairs: bool = typer.Option(False, "--all-pairs", help="All-pairs protocol instead of the list."),
    by: str = typer.Option("identity", "--by", help="All-pairs identity column, or 'parent'."),
    identities: str = typer.Option(None, "--identities", help="Table with path and identity columns."),
    per_identity: int = typer.Option(50, "--per-identity", help="All-pairs: mated pairs per identity."),
    non_mated: int = typer.Option(20_000, "--non-mated", help="All-pairs: non-mated pairs to sample."),
    match_suffix: int = typer.Option(None, "--match-suffix", help="Match paths by their last N components."),
    fmr: float = typer.Option(1e-3, "--fmr", help="Target FMR fixing the comparison threshold."),
    target_fnmr: float = typer.Option(None, "--target-fnmr", help="Recommend the least filtering that "
                                      "brings the FNMR to this."),
    target_discard: float = typer.Option(None, "--target-discard", help="Recommend the strictest "
                                         "threshold that discards at most this share of images."),
    seed: int = typer.Option(0, "--seed", help="Seed of the all-pairs sample."),
    missing: str = typer.Option("drop", "--missing", help="Images without a quality: 'drop' or 'worst'."),
    embedding_column: str = typer.Option("embedding", "--embedding-column", help="Embedding column."),
    json_out: str = typer.Option(None, "--json", help="Write the table as JSON here ('-': stdout)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --json file."),
) -> None:
    """Trade-off of a quality threshold, and the one to use: prints it on stdout for `filter --min`."""
    from rich.table import Table

    from facequal._io import check_output_writable
    from facequal.eval.calibrate import calibrate
    from facequal.eval.evaluate import to_json, write_json

    if json_out and json_out != "-":
        check_output_writable(json_out, overwrite)
    opts = _pair_options(pairs, folds, all_pairs, by, identities, per_identity, non_mated, match_suffix,
                         missing, seed, embedding_column)
    res = calibrate(quality, embeddings, pairs, target_fnmr=target_fnmr, target_discard=target_discard,
                    fmr=fmr, **opts)
    _warn(res.warnings)
    t = Table(title=f"{res.source.label}: FMR {res.fmr:g}, T = {res.threshold:.4f}, "
                    f"FNMR(0) = {res.fnmr0:.4f}, {res.n_images:,} images, {res.accounting.used:,} pairs",
              title_justify="left")
    for col in ("--min", "images discarded", "mated pairs discarded", "FNMR at T", "mated left",
                "non-mated left"):
        t.add_column(col, justify="right")
    for row in res.rows:
        mark = row is res.recommended
        t.add_row(row.min_text, f"{row.images_discarded:.1%}", f"{row.mated_discarded:.1%}",
                  f"{row.fnmr:.4f}",
                  f"{row.mated_remaining:,}", f"{row.non_mated_remaining:,}",
                  style="bold green" if mark else None)
    err_console.print(t)
    if json_out == "-":
        sys.stdout.write(to_json(res.to_dict()))
    elif json_out:
        write_json(res.to_dict(), json_out, overwrite)
        say(f"wrote {json_out}")
    if res.recommended is None:
        if res.target:
            raise typer.Exit(1)
        say("give --target-fnmr or --target-discard for a recommended --min")
        return
    rec = res.recommended
    say(f"recommended: --min {rec.min_text} (discards {rec.images_discarded:.1%} of images, "
        f"FNMR {rec.fnmr:.4f})")
    if json_out != "-":
        sys.stdout.write(rec.min_text + "\n")
