"""Copy, symlink or hardlink selected images into a target directory without ever writing
outside it (``facequal filter --to``).

:func:`safe_relative_parts` neutralises each source's path relative to a root (``..`` and drive
letters cannot climb out); :func:`materialize` creates the folders with
:func:`facequal._io.ensure_dirs_inside` (a symlinked folder is followed only when it stays inside
the target) and places each file through an exclusively created temp entry and an atomic rename,
so an existing symlink at a destination is replaced, never written through.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from facequal import _io
from facequal.errors import UserError

MODES: tuple[str, ...] = ("copy", "symlink", "hardlink")

_DRIVE = re.compile(r"^([A-Za-z]):")


def absolute(path: str, base: str | Path | None = None) -> str:
    """``path`` made absolute against ``base`` (default: the cwd), lexically (no symlink resolution)."""
    b = os.path.abspath(base) if base is not None else os.getcwd()
    return os.path.normpath(os.path.join(b, path))


def common_root(abs_paths: Iterable[str]) -> str:
    """The deepest directory containing every path (``/`` when they share nothing)."""
    dirs = {os.path.dirname(p) for p in abs_paths}
    if not dirs:
        return os.getcwd()
    return os.path.commonpath(sorted(dirs))


def safe_relative_parts(abs_path: str, root: str) -> tuple[str, ...]:
    """The components of ``abs_path`` relative to ``root``, neutralised so they stay inside a directory.

    ``..`` becomes ``__``, ``.`` and empty components vanish, and a leading drive letter ``C:``
    becomes ``C_``. Only the platform's separators (``os.sep``, ``os.altsep``) separate
    components: on POSIX a backslash is part of a file name. Raises ValueError when nothing is left.
    """
    rel = os.path.relpath(abs_path, root) if os.path.isabs(abs_path) else abs_path
    seps = re.escape(os.sep + (os.altsep or ""))
    parts: list[str] = []
    for comp in re.split(f"[{seps}]+", rel):
        if comp in ("", "."):
            continue
        if comp == "..":
            parts.append("__")
            continue
        parts.append(_DRIVE.sub(r"\1_", comp))
    if not parts:
        raise ValueError(f"{abs_path!r} has no file name relative to {root!r}")
    return tuple(parts)


# A destination that would lead outside the target directory (or is otherwise unusable).
UnsafeTarget = _io.UnsafePath


@dataclass
class Materialized:
    """What :func:`materialize` did (or would do, in a dry run)."""

    mode: str
    target: str
    done: int = 0
    existing: int = 0  # destination already there (skipped, no --overwrite)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (source path, reason)
    # of ``existing``: destinations that are not what ``mode`` makes (a symlink where a copy was
    # asked, a file where a symlink was asked, a link to another file); --overwrite replaces them
    other_kind: int = 0


def plan_destinations(
    paths: Sequence[str], *, root: str | None = None, base: str | Path | None = None
) -> tuple[str, list[tuple[str, str, tuple[str, ...] | None]]]:
    """Map each score-file path to (path, absolute source, relative parts or None on error).

    The source is the real file name (:func:`facequal.pipeline.sources.fs_path_of` undoes the ``\\xNN``
    escapes of non-UTF-8 names). ``root`` defaults to the common parent directory of the paths.
    """
    from facequal.pipeline.sources import fs_path_of

    abs_paths = []
    for p in paths:
        try:
            abs_paths.append(absolute(fs_path_of(p), base))
        except ValueError:
            abs_paths.append("")
    root_abs = absolute(root, base) if root is not None else common_root(a for a in abs_paths if a)
    plan: list[tuple[str, str, tuple[str, ...] | None]] = []
    for p, a in zip(paths, abs_paths, strict=True):
        try:
            plan.append((p, a, safe_relative_parts(a, root_abs) if a else None))
        except ValueError:
            plan.append((p, a, None))
    return root_abs, plan


# What an existing destination is, for a given mode (see _classify).
_ABSENT, _SAME, _OTHER, _OTHER_KIND, _SOURCE = "absent", "same", "other", "other kind", "source"


def _classify(dest: str, src: str, mode: str) -> str:
    """What is at ``dest`` with respect to ``src`` and ``mode``.

    ``_SAME``: already what ``mode`` would make, never redone -- for copy / hardlink a regular
    file that is the source's inode (a hardlink, or the source itself), for symlink a link to
    the source. ``_SOURCE``: the source file itself (the target contains the sources), never
    replaced. ``_OTHER_KIND``: a symlink where a copy / hardlink was asked (the data would go
    with the source), or a file / another file's link where a symlink was asked. ``_OTHER``:
    some other regular file (replaced only with ``overwrite``).
    """
    try:
        st = os.lstat(dest)
    except FileNotFoundError:
        return _ABSENT
    try:
        src_st = os.stat(src)
    except OSError:
        src_st = None
    is_link = os.path.islink(dest)
    if not is_link and src_st is not None and os.path.samestat(st, src_st):
        if mode != "symlink":
            return _SAME
        # the same inode, not a link: the source itself, or a hardlink of it
        same_path = os.path.realpath(dest) == os.path.realpath(src)
        return _SOURCE if same_path else _OTHER_KIND
    if mode == "symlink":
        if is_link and src_st is not None:
            try:
                if os.path.samestat(os.stat(dest), src_st):
                    return _SAME
            except OSError:
                pass  # a dangling link
        return _OTHER_KIND
    return _OTHER_KIND if is_link else _OTHER


def materialize(
    paths: Sequence[str],
    target: str | Path,
    *,
    mode: str = "copy",
    root: str | None = None,
    base: str | Path | None = None,
    overwrite: bool = False,
    dry_run: bool = False,
) -> Materialized:
    """Copy, symlink or hardlink each file of ``paths`` into ``target``, preserving relative paths.

    The relative path is taken against ``root`` (default: the common parent of ``paths``) and
    neutralised by :func:`safe_relative_parts`; nothing is ever written outside ``target``.
    A destination already holding what ``mode`` makes (the same inode for copy / hardlink, a
    link to the source for symlink) is skipped; other existing destinations are skipped unless
    ``overwrite`` (a symlink is never taken for a copy: ``--mode copy --overwrite`` over an
    earlier ``--mode symlink`` replaces the links with real files). A file that fails is
    recorded in ``failed`` and the others go on. Symlinks point at the absolute source path.
    """
    if mode not in MODES:
        raise UserError(f"unknown mode {mode!r} (one of: {', '.join(MODES)})")
    target_p = Path(target)
    if target_p.exists() and not target_p.is_dir():
        raise UserError(f"{target}: exists and is not a directory")
    res = Materialized(mode=mode, target=str(target))
    _, plan = plan_destinations(paths, root=root, base=base)
    seen: dict[tuple[str, ...], str] = {}
    if not dry_run:
        try:
            target_p.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(_io.os_error_message(e, f"{target}: cannot create directory")) from None
    target_real = os.path.realpath(target_p)
    for path, src, parts in plan:
        if parts is None:
            res.failed.append((path, "no usable file name"))
            continue
        if parts in seen:
            res.failed.append((path, f"same destination as {seen[parts]!r}"))
            continue
        seen[parts] = path
        try:
            if not os.path.isfile(src):
                res.failed.append(
                    (
                        path,
                        "source does not exist"
                        if not os.path.lexists(src)
                        else "source is not a regular file",
                    )
                )
                continue
            if dry_run:
                parent = os.path.join(target_real, *parts[:-1])
            else:
                # a symlinked folder inside the target is followed only when it stays inside
                parent = _io.ensure_dirs_inside(target_real, parts[:-1])
            dest = os.path.join(parent, parts[-1])
            kind = _classify(dest, src, mode)
            if kind in (_SAME, _SOURCE) or (kind != _ABSENT and not overwrite):
                res.existing += 1
                res.other_kind += kind == _OTHER_KIND
                continue
            if os.path.isdir(dest) and not os.path.islink(dest):
                raise UnsafeTarget(f"{dest} is a directory")
            if not dry_run:
                _place(src, parent, dest, mode)
            res.done += 1
        except UnsafeTarget as e:
            res.failed.append((path, str(e)))
        except (OSError, ValueError) as e:
            reason = getattr(e, "strerror", None) or str(e)
            if mode == "hardlink" and getattr(e, "errno", None) == 18:
                reason = "cannot hardlink across file systems (use --mode copy or symlink)"
            res.failed.append((path, reason))
    return res


def _place(src: str, parent: str, dest: str, mode: str) -> None:
    """Create ``dest`` from ``src`` via a temp name in ``parent`` and an atomic rename.

    The temp entry is created exclusively (a copy goes into a file made with ``O_EXCL``; a link
    under a fresh random name, which ``symlink`` / ``link`` never follow), and os.replace swaps
    the directory entry itself, so an existing symlink at ``dest`` is replaced, never written
    through.
    """
    name = os.path.basename(dest)
    if mode == "copy":
        tmp = os.fspath(_io.make_temp_file(parent, name))
    else:
        tmp = os.path.join(parent, _io.temp_name(name))
    try:
        if mode == "copy":
            shutil.copy2(src, tmp)
        elif mode == "symlink":
            os.symlink(src, tmp)
        else:
            os.link(src, tmp)
        os.replace(tmp, dest)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
