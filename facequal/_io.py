"""File-system helpers every writer in facequal uses: output checks run before any work, atomic
writes that honour the umask, exclusively created temp files, containment checks and one-line
messages for OS errors.

The rules they enforce (see README, "What facequal will never do"):

* a file is written to an exclusively created temp file in its destination folder and renamed
  into place, so a reader sees the old file or the new one, never half of either, and a
  failure (disk full, a kill) leaves the old one intact;
* the temp file's permissions are those of a plain ``open()`` under the process umask
  (``mkstemp`` alone makes 0600, which colleagues on a shared cluster cannot read);
* nothing is written through a symlink: ``os.replace`` swaps the directory entry itself, and
  temp names are random and opened with ``O_EXCL`` (a planted link makes the open fail).
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from facequal.errors import OutputExistsError, UserError

if TYPE_CHECKING:
    import pyarrow as pa

TEMP_SUFFIX = ".tmp"


def umask() -> int:
    """The process umask (read without changing it for longer than the call)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """Permissions a new regular file gets from ``open()``: 0666 less the umask."""
    return 0o666 & ~umask()


def dir_mode() -> int:
    """Permissions a new folder gets from ``mkdir``: 0777 less the umask."""
    return 0o777 & ~umask()


def os_error_message(e: OSError, what: str | os.PathLike[str]) -> str:
    """One line for an OS error while writing ``what``, naming disk-full and read-only cases."""
    if e.errno == errno.ENOSPC:
        return f"{what}: no space left on the device"
    if e.errno == errno.EDQUOT:
        return f"{what}: disk quota exceeded"
    if e.errno == errno.EROFS:
        return f"{what}: the file system is read-only"
    if e.errno == errno.ENAMETOOLONG:
        return f"{what}: file name too long for the file system"
    if e.errno in (errno.EACCES, errno.EPERM):
        return f"{what}: permission denied"
    return f"{what}: {e.strerror or e}"


def _temp_prefix(name: str) -> str:
    # Keep temp names short whatever the destination's length (a 248-character output name
    # plus a prefix and suffix would exceed the usual 255-byte limit).
    return f".{name[:40]}."


def make_temp_file(folder: str | os.PathLike[str], name: str, suffix: str = TEMP_SUFFIX) -> Path:
    """Create a new, empty temp file in ``folder`` exclusively (random name, ``O_EXCL``) with the
    permissions of a plain ``open()``; returns its path. The caller renames or removes it."""
    fd, tmp = tempfile.mkstemp(dir=os.fspath(folder), prefix=_temp_prefix(name), suffix=suffix)
    try:
        os.fchmod(fd, file_mode())
    finally:
        os.close(fd)
    return Path(tmp)


def make_temp_dir(folder: str | os.PathLike[str], name: str) -> Path:
    """Create a new temp folder in ``folder`` (random name) with the permissions of ``mkdir``."""
    tmp = Path(tempfile.mkdtemp(dir=os.fspath(folder), prefix=_temp_prefix(name)))
    os.chmod(tmp, dir_mode())
    return tmp


def probe_writable(folder: str | os.PathLike[str], what: str | os.PathLike[str]) -> None:
    """Raise a one-line UserError (naming ``what``) unless a file can be created in ``folder``:
    creates and removes an exclusive temp file, which catches what permission bits do not (a
    read-only file system, ``/proc``, root squash). For checking an output before any work."""
    try:
        os.unlink(make_temp_file(folder, "facequal-write-test"))
    except OSError as e:
        raise UserError(os_error_message(e, f"{what}: cannot create a file in {os.fspath(folder)}")) from None


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Run ``write(tmp)`` on an exclusively created temp file beside ``path``, then rename it
    onto ``path``. On any failure the temp file is removed and ``path`` is left as it was;
    OS errors become a one-line :class:`UserError` that says the old file is intact."""
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    try:
        tmp = make_temp_file(parent, p.name)
    except OSError as e:
        raise UserError(os_error_message(e, p)) from None
    try:
        write(tmp)
        os.replace(tmp, p)
    except OSError as e:
        kept = " (any earlier file there is unchanged)" if os.path.lexists(p) else ""
        raise UserError(os_error_message(e, p) + kept) from None
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
    return p


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes | str) -> Path:
    """Write ``data`` (text is UTF-8 encoded) to ``path`` atomically."""
    payload = data.encode("utf-8") if isinstance(data, str) else data

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            fh.write(payload)

    return atomic_write(path, write)


def check_output(path: str | os.PathLike[str], overwrite: bool) -> Path:
    """Refuse an existing output unless ``overwrite``; refuse a folder or a missing parent folder."""
    p = Path(path)
    if p.is_dir():
        raise UserError(f"{p}: is a directory, expected a file name")
    if (p.exists() or p.is_symlink()) and not overwrite:
        raise OutputExistsError(f"{p}: already exists (use --overwrite to replace it)")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"{p}: directory {parent} does not exist")
    return p


def check_output_writable(path: str | os.PathLike[str], overwrite: bool) -> Path:
    """:func:`check_output`, then make sure a file can be created in that folder (a read-only file
    system, ``/proc``): run before any rendering or computing, so a report or an evaluation is not
    done for nothing."""
    p = check_output(path, overwrite)
    probe_writable(p.parent if str(p.parent) else Path("."), p)
    return p


def write_output(path: str | os.PathLike[str], data: bytes | str, overwrite: bool = False) -> Path:
    """Write ``data`` (text is UTF-8 encoded) to the output ``path`` atomically, after
    :func:`check_output` (an existing file is replaced only with ``overwrite``)."""
    p = check_output(path, overwrite)
    atomic_write_bytes(p, data)
    return p


def write_parquet_output(table: pa.Table, path: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Write ``table`` as one Parquet file at the output ``path`` atomically, after
    :func:`check_output`."""
    import pyarrow.parquet as pq

    p = check_output(path, overwrite)
    atomic_write(p, lambda tmp: pq.write_table(table, tmp))
    return p


def is_inside(child: str | os.PathLike[str], parent: str | os.PathLike[str]) -> bool:
    """Whether ``child`` is ``parent`` or lies inside it, after resolving links and '..'."""
    c = os.path.realpath(child)
    p = os.path.realpath(parent)
    return c == p or c.startswith(p.rstrip(os.sep) + os.sep)


def temp_name(name: str, suffix: str = TEMP_SUFFIX) -> str:
    """A fresh random file name for a temp entry beside ``name``, without creating it: for
    ``os.symlink`` / ``os.link``, which create exclusively (they fail on an existing name and
    never follow one)."""
    return f"{_temp_prefix(name)}{os.urandom(6).hex()}{suffix}"


class UnsafePath(Exception):
    """A destination that would lead outside its output folder (a symlinked folder pointing out
    of it, or a non-folder where a folder is needed). Callers decide whether it stops the run
    (crops) or fails one file (``filter --to``)."""


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def ensure_dirs_inside(root: str | os.PathLike[str], parts: Sequence[str],
                       what: str = "the target directory") -> str:
    """Create the folders ``root/parts[0]/parts[1]/...`` (``root`` must exist) and return the
    real path of the last one, never leaving ``root``.

    A symlinked folder on the way is followed only when it resolves inside ``root``; one that
    points outside, or a file where a folder is needed, raises :class:`UnsafePath`. A folder
    made meanwhile by another process (parallel workers) is fine. Other OS errors propagate.
    ``what`` names ``root`` in messages.
    """
    root_real = os.path.realpath(root)
    cur = root_real
    for comp in parts:
        nxt = os.path.join(cur, comp)
        try:
            st = os.lstat(nxt)
        except FileNotFoundError:
            try:
                os.mkdir(nxt)  # the mode is 0777 less the umask, like `mkdir`
            except FileExistsError:
                pass  # another worker made it (or planted something): look again
            st = os.lstat(nxt)
        if stat.S_ISLNK(st.st_mode):
            real = os.path.realpath(nxt)
            if not _within(real, root_real):
                raise UnsafePath(f"{nxt} is a symlink pointing outside {what}; refusing to follow it")
            if not os.path.isdir(real):
                raise UnsafePath(f"{nxt} exists and is not a folder")
            nxt = real
        elif not stat.S_ISDIR(st.st_mode):
            raise UnsafePath(f"{nxt} exists and is not a folder")
        cur = nxt
    real_parent = os.path.realpath(cur)
    if not _within(real_parent, root_real):  # a race or an odd mount: never write outside
        raise UnsafePath(f"{cur} resolves outside {what}")
    return real_parent
