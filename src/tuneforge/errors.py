"""The one exception type users see: a message that says what is wrong and what to change.

The CLI prints it without a traceback; everything else is a bug and keeps its traceback. Faults of the
machine's files that the user can fix (no permission, a symlink loop, a full disk, a read-only disk, a file
where a folder should be) are described by `os_fault` as one, naming the file:

    except OSError as exc:
        raise os_fault(exc, "data.path: ") or exc
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path


class TuneforgeError(Exception):
    """A problem with the user's input (config, data, model choice) that they can fix."""


PERMISSION = "Your user may not read or write it: fix its permissions (ls -l, chmod) or use another path"
# What to do about each fault; the operating system's own words say what happened.
ADVICE = {
    errno.EACCES: PERMISSION,
    errno.EPERM: PERMISSION,
    errno.ELOOP: "A symlink on that path leads back to itself: fix the link (readlink shows where each points) "
    "or give the real file",
    errno.ENOSPC: "The disk is full: free space there, or write somewhere else",
    errno.EDQUOT: "Your disk quota is used up: free space there, or write somewhere else",
    errno.EROFS: "That file system is read-only: write somewhere else",
    errno.ENOTDIR: "A part of the path is a file, not a folder: check the path",
    errno.EISDIR: "It is a folder where a file is needed: name a file",
    errno.ENAMETOOLONG: "The path, or a name in it, is too long: use a shorter one",
}
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def os_fault(exc: BaseException, prefix: str = "") -> TuneforgeError | None:
    """`exc`, or the OSError it arose from, as a TuneforgeError when it is a fault in ADVICE; else None."""
    found = user_fixable_os_error(exc)
    if found is None:
        return None
    names = [str(name) for name in (found.filename, found.filename2) if name is not None]
    where = f": {' -> '.join(names)}" if names else ""
    detail = ""
    if found.errno in DISK_FULL and names:
        detail = f" ({megabytes(free_space(Path(names[0])))} free there)"
    if found.errno == errno.ENOTDIR and names:
        blocker = first_file_above(Path(names[0]))
        detail = f" ({blocker} is a file)" if blocker else ""
    strerror = found.strerror or os.strerror(found.errno or 0)
    return TuneforgeError(f"{prefix}{strerror}{where}{detail}. {ADVICE[found.errno]}.")


def user_fixable_os_error(exc: BaseException) -> OSError | None:
    return next((e for e in chain(exc) if isinstance(e, OSError) and e.errno in ADVICE), None)


def chain(exc: BaseException | None) -> Iterator[BaseException]:
    """`exc` and the errors it arose from, as its traceback shows them (`raise ... from`, or raised while
    handling one)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)


def free_space(path: Path) -> int:
    """Bytes free on the file system that holds `path` (or its nearest existing folder)."""
    for folder in (path, *path.absolute().parents):
        try:
            return shutil.disk_usage(folder).free
        except OSError:
            continue
    return 0


def megabytes(size: int) -> str:
    return f"{size / 1e6:,.1f} MB"


def first_file_above(path: Path) -> Path | None:
    """The part of `path` that is a file where a folder should be, if one is."""
    for part in reversed(path.parents):
        if part.exists() and not part.is_dir():
            return part
    return None
