"""The one reader for every file a user points the product at: regular files only, bounded in size, never blocking.

A Secret mount, an environment variable or a command-line flag can name anything: a
FIFO (an open would block forever), a device (`/dev/zero` reads until memory runs out),
a directory, a socket, a symlink loop, a 200 MB file. `read_file` refuses each of them
with an OSError whose `strerror` says what the path is and what is allowed, so callers
turn it into a Problem without knowing the cases. It opens with O_NONBLOCK (a FIFO
swapped in after the first look cannot block either) and checks the type again on the
open descriptor, then reads at most the kind's limit plus one byte.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass

KIB = 1024
MIB = 1024 * KIB


@dataclass(frozen=True)
class Kind:
    """What a file is expected to hold, and how large it may be."""

    name: str  # for messages: "a certificate", "a CA bundle", ...
    limit: int  # bytes


# Generous bounds: a leaf plus intermediates is a few KB; the public Mozilla bundle is
# about 220 KB; a CRL of a CA that revoked many certificates can reach megabytes.
CERTIFICATE = Kind("a certificate file", 256 * KIB)
CA_BUNDLE = Kind("a CA bundle", 4 * MIB)
PRIVATE_KEY = Kind("a private key", 64 * KIB)
CRL = Kind("a CRL file", 16 * MIB)
SECRET_TEXT = Kind("a password file", 4 * KIB)
SMALL_TEXT = Kind("a small text file", 4 * KIB)
CONFIG = Kind("a configuration file", 1 * MIB)

_TYPES = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


class FileRefused(OSError):
    """The path exists but is not something the product reads (wrong type, too large)."""


def describe_type(mode: int) -> str:
    for test, name in _TYPES:
        if test(mode):
            return name
    return "not a regular file"


def _refuse(path: str, why: str, code: int = errno.EINVAL) -> FileRefused:
    return FileRefused(code, why, path)


def _check(path: str, st: os.stat_result, kind: Kind) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise _refuse(path, f"is {describe_type(st.st_mode)}, not a regular file")
    if st.st_size > kind.limit:
        raise _refuse(path, f"is {_size(st.st_size)}, more than {kind.name} may hold ({_size(kind.limit)})",
                      errno.EFBIG)


def _size(count: int) -> str:
    if count >= MIB:
        return f"{count / MIB:.1f} MiB"
    if count >= KIB:
        return f"{count / KIB:.0f} KiB"
    return f"{count} bytes"


def read_file(path: str, kind: Kind) -> bytes:
    """Return the bytes of the regular file at `path` (symlinks followed).

    Raises FileNotFoundError, PermissionError and other OSErrors as the system gives
    them (ELOOP for a symlink loop), and FileRefused for anything that is not a regular
    file of at most `kind.limit` bytes. Never blocks on a FIFO and never reads a device.
    """
    _check(path, os.stat(path), kind)  # before the open: opening some devices has side effects
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        _check(path, os.fstat(fd), kind)  # what was opened, should the path have been swapped meanwhile
        chunks = []
        remaining = kind.limit + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 64 * KIB))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > kind.limit:  # grew while being read
        raise _refuse(path, f"grew past {_size(kind.limit)} while being read, more than {kind.name} may hold",
                      errno.EFBIG)
    return data


def why(exc: OSError) -> str:
    """A short reason for a failed read, for a Problem's `what`."""
    if isinstance(exc, FileRefused):
        return exc.strerror or "refused"
    if exc.errno == errno.ELOOP:
        return "is a symbolic link loop"
    if exc.errno == errno.ENOTDIR:
        return "has a path component that is not a directory"
    return exc.strerror or str(exc)
