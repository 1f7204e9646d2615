"""The one safe reader on real files: FIFOs, devices, directories, sockets, loops and oversized files are refused at once."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import time

import pytest

from entrypoint.pki import reader
from entrypoint.pki.reader import FileRefused, read_file

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def _refused(path, kind=reader.CERTIFICATE) -> str:
    with pytest.raises(OSError) as caught:
        read_file(str(path), kind)
    return reader.why(caught.value)


def test_a_regular_file_is_read_whole(tmp_path):
    path = tmp_path / "ca.crt"
    path.write_bytes(b"x" * 1000)
    assert read_file(str(path), reader.CERTIFICATE) == b"x" * 1000


def test_a_symlink_to_a_regular_file_is_followed(tmp_path):
    (tmp_path / "..data").mkdir()
    (tmp_path / "..data" / "ca.crt").write_bytes(b"pem")
    (tmp_path / "ca.crt").symlink_to("..data/ca.crt")
    assert read_file(str(tmp_path / "ca.crt"), reader.CA_BUNDLE) == b"pem"


def test_a_fifo_is_refused_without_blocking(tmp_path):
    """Run in a child with a deadline: a blocking open would hang the whole test run otherwise."""
    fifo = tmp_path / "server.key"
    os.mkfifo(fifo)
    code = ("import sys; from entrypoint.pki import reader\n"
            "try:\n    reader.read_file(sys.argv[1], reader.PRIVATE_KEY)\n"
            "except OSError as e:\n    print(reader.why(e))\n")
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", code, str(fifo)], capture_output=True, text=True, timeout=20,
                            env={"PYTHONPATH": REPO, "PATH": "/usr/bin:/bin"})
    assert "is a FIFO (named pipe), not a regular file" in result.stdout, result.stderr
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom", "/dev/null"])
def test_a_device_linked_as_a_certificate_is_refused_unread(tmp_path, device):
    link = tmp_path / "server.crt"
    link.symlink_to(device)
    assert "is a character device, not a regular file" in _refused(link)


def test_a_directory_and_a_socket_are_refused(tmp_path):
    assert "is a directory" in _refused(tmp_path)
    sock_path = tmp_path / "s"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(sock_path))
        assert "is a socket" in _refused(sock_path)


def test_a_symlink_loop_is_refused(tmp_path):
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    assert _refused(tmp_path / "a") == "is a symbolic link loop"


def test_a_huge_sparse_file_is_refused_by_its_size_without_reading_it(tmp_path):
    path = tmp_path / "ca.crt"
    with open(path, "wb") as handle:
        handle.truncate(200 * reader.MIB)  # sparse: 200 MB on paper, nothing on disk
    started = time.monotonic()
    why = _refused(path, reader.CA_BUNDLE)
    assert "200.0 MiB, more than a CA bundle may hold (4.0 MiB)" in why
    assert time.monotonic() - started < 1


def test_the_limit_is_per_kind(tmp_path):
    path = tmp_path / "key"
    path.write_bytes(b"k" * (reader.PRIVATE_KEY.limit + 1))
    assert "more than a private key may hold" in _refused(path, reader.PRIVATE_KEY)
    path.write_bytes(b"k" * reader.PRIVATE_KEY.limit)
    assert len(read_file(str(path), reader.PRIVATE_KEY)) == reader.PRIVATE_KEY.limit


def test_missing_and_not_a_directory_keep_their_system_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_file(str(tmp_path / "nope"), reader.CERTIFICATE)
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(NotADirectoryError):
        read_file(str(tmp_path / "file" / "below"), reader.CERTIFICATE)
    assert reader.why(OSError(errno.ENOTDIR, "x")) == "has a path component that is not a directory"


def test_refusals_are_oserrors_naming_the_path(tmp_path):
    with pytest.raises(FileRefused) as caught:
        read_file(str(tmp_path), reader.CERTIFICATE)
    assert isinstance(caught.value, OSError) and caught.value.filename == str(tmp_path)
