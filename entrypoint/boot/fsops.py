"""The few writes the entrypoint makes, done so that a planted link, a full disk or a crash never leaves a half state.

Every file is created with O_CREAT|O_EXCL|O_NOFOLLOW and its final mode from the first
byte (never readable by others, not even for an instant), owned by the run user, and
renamed into place. A set of files (the staged TLS material) is published as a new
generation directory and switched to with one rename of a symbolic link, so a reader
sees the old set or the new set, never a new certificate with an old key.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import stat
from typing import Mapping, Optional, Tuple

GENERATION_PREFIX = "tls."  # tls.<random>: one staged set; `tls` is the link to the current one


def _create(dir_fd: int, name: str, data: bytes, mode: int, owner: Optional[Tuple[int, int]]) -> None:
    fd = os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd)
    try:
        os.fchmod(fd, mode)  # the umask may have narrowed it; never widened beyond `mode`
        if owner is not None:
            os.fchown(fd, *owner)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _unique(dir_fd: int, prefix: str, make) -> str:
    """A fresh name in the directory made with `make(name)`; a name someone planted is skipped, not reused."""
    for _ in range(16):
        name = f"{prefix}{secrets.token_hex(6)}"
        try:
            make(name)
            return name
        except FileExistsError:
            continue
    raise OSError(errno.EEXIST, "could not find a free temporary name (something keeps creating them)", prefix)


def open_dir(path: str) -> int:
    """A descriptor for the directory itself; a symbolic link in its place is refused (ELOOP)."""
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)


def write_file(path: str, data: bytes, mode: int, owner: Optional[Tuple[int, int]]) -> None:
    """Atomically replace `path` with `data` (a temporary file beside it, then rename)."""
    directory, name = os.path.split(path)
    dir_fd = open_dir(directory)
    try:
        tmp = _unique(dir_fd, f".{name}.", lambda n: _create(dir_fd, n, data, mode, owner))
        try:
            os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            _remove(dir_fd, tmp)
            raise
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def publish_set(directory: str, link: str, files: Mapping[str, Tuple[bytes, int]],
                owner: Optional[Tuple[int, int]]) -> str:
    """Write `files` ({name: (bytes, mode)}) into a new generation directory and point `link` at it.

    Returns the generation's name. On any error the link still points at the previous
    set and the partial generation is removed. Older generations but the previous one
    are removed afterwards (a reader that resolved the link a moment ago still finds it).
    """
    dir_fd = open_dir(directory)
    try:
        previous = _target(dir_fd, link)
        generation = _unique(dir_fd, GENERATION_PREFIX, lambda n: os.mkdir(n, 0o755, dir_fd=dir_fd))
        try:
            _fill(dir_fd, generation, files, owner)
            _switch(dir_fd, link, generation, owner, _owners(owner))
        except BaseException:
            _remove(dir_fd, generation)
            raise
        os.fsync(dir_fd)
        _prune(dir_fd, keep={generation, previous, link}, owners=_owners(owner))
        return generation
    finally:
        os.close(dir_fd)


def _fill(dir_fd: int, generation: str, files: Mapping[str, Tuple[bytes, int]],
          owner: Optional[Tuple[int, int]]) -> None:
    gen_fd = os.open(generation, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        if os.fstat(gen_fd).st_uid != os.geteuid():  # swapped for someone else's directory between mkdir and open
            raise OSError(errno.EPERM, "the new staging directory was replaced while being filled", generation)
        os.fchmod(gen_fd, 0o755)
        for name, (data, mode) in files.items():
            _create(gen_fd, name, data, mode, owner)
        os.fsync(gen_fd)
        if owner is not None:  # only once full: the run user can then prune it after a later rotation
            os.fchown(gen_fd, *owner)
    finally:
        os.close(gen_fd)


def _owners(owner: Optional[Tuple[int, int]]) -> set:
    """Whose entries in the directory are ours to remove: this process's, and the run user's we stage for."""
    return {os.geteuid()} | ({owner[0]} if owner is not None else set())


def _switch(dir_fd: int, link: str, generation: str, owner: Optional[Tuple[int, int]], owners: set) -> None:
    """Make `link` point at `generation` with one rename; a real directory of ours in its place is moved aside first.

    Someone else's entry at `link` (a shared directory) is not ours to remove: OSError.
    """
    try:
        st = os.lstat(link, dir_fd=dir_fd)
    except FileNotFoundError:
        st = None
    if st is not None and st.st_uid not in owners:
        raise OSError(errno.EEXIST, f"{link} exists and belongs to uid {st.st_uid}, not to this product", link)
    if st is not None and not stat.S_ISLNK(st.st_mode):
        # An older layout (a plain tls/ directory) or something planted: moved away, never followed.
        aside = _unique(dir_fd, ".old-", lambda n: os.rename(link, n, src_dir_fd=dir_fd, dst_dir_fd=dir_fd))
        _remove(dir_fd, aside)
    tmp = _unique(dir_fd, ".link-", lambda n: os.symlink(generation, n, dir_fd=dir_fd))
    try:
        if owner is not None:  # the run user may replace it later (a watcher that dropped root, a sticky tmpfs)
            os.chown(tmp, *owner, dir_fd=dir_fd, follow_symlinks=False)
        os.replace(tmp, link, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        _remove(dir_fd, tmp)
        raise


def _target(dir_fd: int, link: str) -> Optional[str]:
    try:
        return os.readlink(link, dir_fd=dir_fd)
    except OSError:
        return None


def _prune(dir_fd: int, keep: set, owners: set) -> None:
    """Remove older generations and leftovers of ours; other users' entries (a shared directory) stay."""
    for name in os.listdir(dir_fd):
        if name in keep or not (name.startswith(GENERATION_PREFIX) or name.startswith((".link-", ".old-"))):
            continue
        try:
            if os.lstat(name, dir_fd=dir_fd).st_uid not in owners:
                continue
        except OSError:
            continue
        _remove(dir_fd, name)


def _remove(dir_fd: int, name: str) -> None:
    """Remove a file, link or directory tree we made, without following links; errors are ignored."""
    try:
        st = os.lstat(name, dir_fd=dir_fd)
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(name, dir_fd=dir_fd, ignore_errors=True)
        else:
            os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass
