"""Write a set of certificate files all together or not at all: keys 0600 from the first byte, nothing overwritten."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple


@dataclass(frozen=True)
class OutputFile:
    """One file to write: its name inside the output directory, content and mode."""

    name: str
    content: bytes
    mode: int


def write_files(out_dir: str, files: Sequence[OutputFile], replace: bool) -> None:
    """Write `files` into `out_dir` all together or not at all.

    Each file is created in a private temporary directory inside `out_dir` with
    O_CREAT|O_EXCL and its final mode (keys are never readable by others, not even for
    an instant), then linked into place. Without `replace`, an existing file is never
    touched (os.link refuses to overwrite); with it, the old file is kept aside until
    every new file is in place. On any error the directory is as it was before.

    Raises OSError (FileExistsError when a file exists and `replace` is false).
    """
    staging = tempfile.mkdtemp(prefix=".certs-", dir=out_dir)
    placed: List[Tuple[str, Optional[str]]] = []  # (destination, kept-aside old file)
    try:
        for f in files:
            fd = os.open(os.path.join(staging, f.name), os.O_CREAT | os.O_EXCL | os.O_WRONLY, f.mode)
            with os.fdopen(fd, "wb") as handle:
                handle.write(f.content)
                handle.flush()
                os.fsync(handle.fileno())
        for f in files:
            new, dest = os.path.join(staging, f.name), os.path.join(out_dir, f.name)
            old = None
            if replace and os.path.lexists(dest):
                old = os.path.join(staging, f.name + ".old")
                os.link(dest, old, follow_symlinks=False)
                os.replace(new, dest)
            else:
                _link_new(new, dest)
            placed.append((dest, old))
    except BaseException:
        for dest, old in reversed(placed):
            if old:
                os.replace(old, dest)
            else:
                os.unlink(dest)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _fsync_dir(out_dir)


def _link_new(src: str, dest: str) -> None:
    """Put `src` at `dest`, failing with FileExistsError rather than overwriting."""
    try:
        os.link(src, dest)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        # Some filesystems have no hard links; the existence check then has a small race.
        if os.path.lexists(dest):
            raise FileExistsError(errno.EEXIST, "File exists", dest) from exc
        os.rename(src, dest)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
