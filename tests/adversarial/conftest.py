"""The adversarial suite's world: a box of real directories with a kubelet-like Secret mount, the real command in
a subprocess with a hard time limit, and a snapshot of everything so "nothing was written" can be checked.

Every command runs as a separate process (`python -m entrypoint`, PYTHONPATH at this checkout), started in its
own session so a hang is killed with its whole group and reported as a failure, never a stuck suite.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Mapping, Union

import pytest

from tests.support.box import REPO, CommandBox
from tests.support.pki import Pair, TestCA

PYTHON = sys.executable
WILDCARD = "*.demo.ns.svc.cluster.local"
PASSWORDS = ("su-Adv-Secret-1", "repl-Adv-Secret-2")
POSTGRES = pwd.getpwnam("postgres")
HANG = 20.0  # seconds: any single command taking longer has hung
TEST_DEADLINE = 90  # seconds: the safety net for a whole test


def pytest_collection_modifyitems(config, items):
    here = os.path.dirname(__file__)
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="the adversarial suite starts the entrypoint as root, as the image does")
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _deadline():
    """A test that outlives TEST_DEADLINE fails (the commands have their own, shorter limits)."""
    def expired(*_):
        raise AssertionError(f"the test ran for more than {TEST_DEADLINE} s: something hung")
    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(TEST_DEADLINE)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


# --- Special files -------------------------------------------------------------------------------

def plant(path: Path, kind: str) -> None:
    """Put something that is not a regular file at `path`."""
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "devzero":
        os.symlink("/dev/zero", path)
    elif kind == "devurandom":
        os.symlink("/dev/urandom", path)
    elif kind == "dir":
        os.mkdir(path)
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        sock.close()  # the socket file stays
    elif kind == "loop":
        os.symlink(path.name, path)
    elif kind == "sparse":
        with open(path, "wb") as handle:
            handle.truncate(200 * 1024 * 1024)
    else:
        raise ValueError(kind)


NOT_FILES = {  # kind -> words the refusal must contain
    "fifo": "FIFO",
    "devzero": "character device",
    "devurandom": "character device",
    "dir": "directory",
    "socket": "socket",
    "loop": "symbolic link loop",
    "sparse": "200.0 MiB",
}

Content = Union[bytes, str, Callable[[Path], None]]  # bytes, a plant() kind, or a function that makes the file


# --- The box ---------------------------------------------------------------------------------------

@dataclass
class Box(CommandBox):
    """The shared command box, plus a kubelet-like Secret mount (`..data` swaps) and a snapshot of everything."""

    generation: int = 0

    MARKER = "marks/exec-marker"  # a directory the stub, as postgres after the drop, may write in
    PASSWORDS = PASSWORDS
    EXTRA_ENV = {"PYTHONDONTWRITEBYTECODE": "1", "PCK_CERT_WATCH_INTERVAL": "0"}

    def mount(self, files: Mapping[str, Content], mode: int = 0o600, gid: int = 0) -> Path:
        """Publish `files` as the kubelet does: a new `..<timestamp>` directory, then one rename of `..data`.

        The names in the mount root are links through `..data`, so a swap changes every file at once.
        """
        self.generation += 1
        self.certs.mkdir(exist_ok=True)
        fresh = self.certs / f"..2026_01_01_00_00_{self.generation:02d}.{os.getpid()}"
        fresh.mkdir(mode=0o755)
        for name, content in files.items():
            path = fresh / name
            if isinstance(content, bytes):
                path.write_bytes(content)
                os.chown(path, 0, gid)
                path.chmod(mode)
            elif isinstance(content, str):
                plant(path, content)
            else:
                content(path)
        old = os.readlink(self.certs / "..data") if os.path.lexists(self.certs / "..data") else None
        tmp = self.certs / "..data_tmp"
        os.symlink(fresh.name, tmp)
        os.replace(tmp, self.certs / "..data")
        for name in files:
            link = self.certs / name
            if not os.path.lexists(link):
                os.symlink(f"..data/{name}", link)
        if old:
            shutil.rmtree(self.certs / old, ignore_errors=True)
        return fresh

    def current(self) -> Path:
        """The directory `..data` points at now (to change one file in place, as an editor would)."""
        return self.certs / os.readlink(self.certs / "..data")

    def snapshot(self) -> Dict[str, tuple]:
        """Every entry in the box (not following links): type, mode, owner, size and mtime."""
        out = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            for name in [*dirnames, *filenames]:
                path = os.path.join(dirpath, name)
                st = os.lstat(path)
                out[path] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                             st.st_size if not stat.S_ISDIR(st.st_mode) else 0, st.st_mtime_ns)
        root = os.lstat(self.root)
        out[str(self.root)] = (stat.S_IMODE(root.st_mode), root.st_uid, root.st_gid, root.st_mtime_ns)
        return out


def seed_files(ca: TestCA, pair: Pair) -> dict:
    return {"ca.crt": ca.cert_pem, "server.crt": pair.cert_pem, "server.key": pair.key_pem}


@pytest.fixture(scope="session")
def pki():
    ca = TestCA("adversarial CA")
    return ca, ca.issue(WILDCARD, "localhost")


def make_box(prefix: str = "pck-adv-") -> Box:
    # Not pytest's tmp_path: after the privilege drop the postgres user must reach the stub and the dirs.
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)
    (root / "bin").mkdir()
    (root / "marks").mkdir()
    (root / "marks").chmod(0o1777)  # the stub runs as postgres after the drop
    stub = root / "bin" / "stub-patroni"
    stub.write_text(f"#!/bin/sh\necho \"exec as $(id -un) $*\" > {root / 'marks' / 'exec-marker'}\n")
    stub.chmod(0o755)
    shutil.copy(stub, root / "bin" / "patroni")
    return Box(root)


@pytest.fixture
def box(pki):
    b = make_box()
    b.mount(seed_files(*pki))
    yield b
    shutil.rmtree(b.root, ignore_errors=True)


# --- Running the command -------------------------------------------------------------------------------

@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def invoke(command: list, env: Mapping, timeout: float = HANG, module: str = "entrypoint",
           **how) -> Result:
    """`python -m entrypoint COMMAND...` in its own session; a run longer than `timeout` is a hang: killed, failed."""
    env = dict(env)
    if isinstance(next(iter(env), ""), bytes):
        env.setdefault(b"PYTHONPATH", str(REPO).encode())
    proc = subprocess.Popen([PYTHON, "-m", module, *command], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True, **how)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"{' '.join(command)} hung for more than {timeout:g} s")
    return Result(proc.returncode, out.decode("utf-8", "backslashreplace"), err.decode("utf-8", "backslashreplace"))


def run_stub(box: Box, env: Mapping, **how) -> Result:
    """`run -- <stub>`: the stub leaves a marker when it is exec'd."""
    return invoke(["run", "--", str(box.stub)], env, **how)


def assert_refused(result: Result, *words: str, stdout_ok: bool = False) -> None:
    """Exit 2, a headline, every word named, a fix, and no traceback."""
    output = result.output
    assert result.returncode == 2, output
    assert "problem" in output and "fix: " in output, output
    for word in words:
        assert word in output, (word, output)
    assert "Traceback" not in output and "internal error" not in output, output
    if not stdout_ok:
        assert result.stdout == "", result.stdout


def assert_untouched(box: Box, before: dict) -> None:
    """Nothing written: no runtime, socket or data dir, no marker, and every entry of the box exactly as it was."""
    assert box.traces() == []
    assert box.snapshot() == before


def wait_for(predicate: Callable[[], object], timeout: float, what: str, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(step)
