"""The folder of a paged report: what may be written where, facequal's marker in it, and the
final swap into place.

A paged report (``-o report/``) is built in a fresh temp folder beside the output and renamed
onto it at the end, so a reader (or a crash) sees the old report or the new one, never half of
either. The folder carries ``.facequal-report.json`` (the same idea as the dataset marker of
score outputs), which names the entries facequal wrote at its top. An existing output folder is
used only when it is empty, or when it carries the marker and holds nothing but what a report
holds (``index.html``, ``pages/NNNNN.html``, ``thumbs/NNNN/NNNNNNN.webp|jpg``); only then may
``--overwrite`` replace it, and the old folder is deleted only after the new one is in place.
Anything else (a folder of photos, a file, a link) is refused before any work.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
from pathlib import Path

from facequal import __version__
from facequal._io import make_temp_dir, os_error_message, probe_writable, temp_name
from facequal.errors import OutputExistsError, UserError

MARKER = ".facequal-report.json"
INDEX = "index.html"
PAGES = "pages"
THUMBS = "thumbs"
TOP_ENTRIES = (MARKER, INDEX, PAGES, THUMBS)
_PAGE_NAME = re.compile(r"\d{5,}\.html")
_SHARD_NAME = re.compile(r"\d{4,}")
_THUMB_NAME = re.compile(r"\d{7,}\.(webp|jpg)")


def is_folder_output(output: str | os.PathLike[str]) -> bool:
    """A report output ending with a slash, or naming an existing folder, is a paged report."""
    s = os.fspath(output)
    return s.endswith(("/", os.sep)) or (os.path.isdir(s) and not os.path.islink(s))


def folder_path(output: str | os.PathLike[str]) -> Path:
    """The output folder as a path (``-o ./`` becomes the absolute name of the current folder)."""
    s = os.fspath(output).rstrip("/" + os.sep) or os.fspath(output)[:1]
    p = Path(s or ".")
    return Path(os.path.abspath(p)) if p.name in ("", ".", "..") else p


def _foreign_in(folder: Path, rel: str, name_rule: re.Pattern[str], *, files: bool) -> str | None:
    """The first entry of ``folder / rel`` that is not a report's own (None: all are, or there is
    no such sub-folder): names matching ``name_rule``, regular files (``files``) or folders, never
    links."""
    sub = folder / rel
    if not os.path.lexists(sub):
        return None
    if not stat.S_ISDIR(os.lstat(sub).st_mode):
        return rel
    for e in os.scandir(sub):
        kind_ok = e.is_file(follow_symlinks=False) if files else e.is_dir(follow_symlinks=False)
        if not (name_rule.fullmatch(e.name) and kind_ok):
            return f"{rel}/{e.name}"
    return None


def _foreign_entry(folder: Path) -> str | None:
    """The first entry of a marked report folder that a report does not hold (None: all are)."""
    for name in sorted(os.listdir(folder)):
        if name not in TOP_ENTRIES:
            return name
    found = _foreign_in(folder, PAGES, _PAGE_NAME, files=True) or \
        _foreign_in(folder, THUMBS, _SHARD_NAME, files=False)
    if found or not os.path.isdir(folder / THUMBS):
        return found
    for shard in sorted(os.listdir(folder / THUMBS)):
        found = _foreign_in(folder, f"{THUMBS}/{shard}", _THUMB_NAME, files=True)
        if found:
            return found
    return None


def _has_marker(folder: Path) -> bool:
    path = folder / MARKER
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return False
        with open(path, "rb") as fh:
            doc = json.loads(fh.read(1 << 16))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("facequal_report") == 1


def check_report_folder(output: str | os.PathLike[str], overwrite: bool) -> Path:
    """Check a paged report's output folder before any work; returns its path.

    New, or an existing empty folder: fine. A folder facequal made (marker, and nothing a report
    does not hold): refused without ``overwrite``. Anything else: refused, with one line naming
    what is in the way.
    """
    out = folder_path(output)
    shown = os.fspath(output)
    if os.path.islink(out):
        raise UserError(f"-o {shown} is a symlink; facequal replaces only folders it made, never a link: "
                        "give the real path")
    if os.path.lexists(out):
        if not out.is_dir():
            raise UserError(f"-o {shown} exists and is not a folder; a paged report is a folder "
                            "(name a file ending in .html for the single-page report)")
        try:
            entries = os.listdir(out)
            marked = bool(entries) and _has_marker(out)
            foreign = _foreign_entry(out) if marked else None
        except OSError as e:
            raise UserError(os_error_message(e, shown)) from None
        if entries and not marked:
            raise UserError(f"-o {shown} is not empty and facequal did not make it (it holds "
                            f"{sorted(entries)[0]!r}); a paged report is written only into a new or "
                            "empty folder, or one facequal made: choose another output")
        if foreign is not None:
            raise UserError(f"-o {shown} holds {foreign}, which facequal did not write; move it away first")
        if entries and not overwrite:
            raise OutputExistsError(f"{shown}: already exists (use --overwrite to replace it)")
    parent = out.parent
    if not parent.is_dir():
        raise UserError(f"{shown}: directory {parent} does not exist")
    probe_writable(parent, shown)
    return out


def new_build_folder(out: Path) -> Path:
    """A fresh, private temp folder beside ``out`` to build the report in, with its marker."""
    try:
        tmp = make_temp_dir(out.parent, out.name)
        for sub in (PAGES, THUMBS):
            os.mkdir(tmp / sub)
        doc = {"facequal_report": 1, "facequal_version": __version__, "files": sorted(TOP_ENTRIES)}
        with open(tmp / MARKER, "x", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=1)
    except OSError as e:
        raise UserError(os_error_message(e, out)) from None
    return tmp


def discard_build_folder(tmp: Path) -> None:
    """Remove a temp build folder this run made (after a failure): created exclusively by
    :func:`new_build_folder` under a random name, it holds nothing but this run's files."""
    shutil.rmtree(tmp, ignore_errors=True)


def _remove_if(path: Path, name_rule: re.Pattern[str] | None, *, folder: bool) -> None:
    """Remove ``path`` when it is what a report writes there: a regular file whose name matches
    ``name_rule`` or an empty real folder (``folder``); anything else is left alone."""
    try:
        mode = os.lstat(path).st_mode
        if folder and stat.S_ISDIR(mode):
            os.rmdir(path)  # only when empty: whatever we did not remove keeps it
        elif not folder and stat.S_ISREG(mode) and (name_rule is None or name_rule.fullmatch(path.name)):
            os.unlink(path)
    except OSError:
        pass


def remove_old_report(folder: Path) -> str | None:
    """Delete an old report folder entry by entry, only the files a report writes (marker, index,
    ``pages/NNNNN.html``, ``thumbs/NNNN/NNNNNNN.webp``) and then its emptied folders. Anything
    else (a file dropped in after the checks) stays, with the folder holding it; returns that
    folder's path when something stayed, else None."""
    thumbs = folder / THUMBS
    if stat.S_ISDIR(_lmode(thumbs)):
        for shard in os.scandir(thumbs):
            if _SHARD_NAME.fullmatch(shard.name) and shard.is_dir(follow_symlinks=False):
                for e in os.scandir(shard.path):
                    _remove_if(Path(e.path), _THUMB_NAME, folder=False)
                _remove_if(Path(shard.path), None, folder=True)
    if stat.S_ISDIR(_lmode(folder / PAGES)):
        for e in os.scandir(folder / PAGES):
            _remove_if(Path(e.path), _PAGE_NAME, folder=False)
    for sub in (THUMBS, PAGES):
        _remove_if(folder / sub, None, folder=True)
    for name in (INDEX, MARKER):
        _remove_if(folder / name, None, folder=False)
    _remove_if(folder, None, folder=True)
    return str(folder) if os.path.lexists(folder) else None


def _lmode(path: Path) -> int:
    try:
        return os.lstat(path).st_mode
    except OSError:
        return 0


def swap_into_place(tmp: Path, out: Path, shown: str, overwrite: bool) -> str | None:
    """Rename the finished ``tmp`` onto ``out``. An old report there (checked again: it must
    still be facequal's) is first renamed aside and removed entry by entry once the new one is in
    place (:func:`remove_old_report`); returns a note when something not a report's stayed."""
    try:
        aside = None
        if os.path.lexists(out):
            check_report_folder(shown, overwrite)  # the folder may have changed during the build
            if os.listdir(out):
                aside = out.parent / temp_name(out.name, ".old")
                os.rename(out, aside)
        os.replace(tmp, out)  # onto an empty folder, or into the free name
    except OSError as e:
        if aside is not None and not os.path.lexists(out):
            os.rename(aside, out)  # put the old report back
        raise UserError(os_error_message(e, shown) + " (any earlier report there is unchanged)") from None
    if aside is not None:
        left = remove_old_report(aside)
        if left is not None:
            return (f"the earlier report was set aside as {left}: files that facequal did not write appeared "
                    "in it during the build, so it was not deleted")
    return None
