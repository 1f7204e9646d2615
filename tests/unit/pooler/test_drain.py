"""`pooler drain` against real processes: it finds PgBouncer as `pooler run` execs it, sends SIGINT, waits.

The stand-in is a real process that looks as PgBouncer does to drain: a program file named
`pgbouncer` (a copy of Python, so each case chooses how it answers SIGINT), run by the run
user, with `<runtime dir>/pgbouncer.ini` as its last argument. Real PgBouncer's safe
shutdown is proven in tests/integration/test_pooler.py.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from entrypoint.pooler import drain as drain_module
from entrypoint.pooler.drain import drain, find_pgbouncer
from tests.support.cluster import ENTRYPOINT

# On SIGINT: exit after 0.3 s (a safe shutdown), or ignore it (a transaction that never ends).
STAND_IN = {
    "exits": "import signal, sys, time\n"
             "signal.signal(signal.SIGINT, lambda *a: (time.sleep(0.3), sys.exit(0)))\n"
             "print('ready', flush=True)\ntime.sleep(60)\n",
    "ignores": "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nprint('ready', flush=True)\n"
               "time.sleep(60)\n",
}
AS_ROOT = {"PCK_RUN_AS": "root"}  # the stand-ins run as root; PgBouncer runs as the run user


@pytest.fixture
def scratch():
    """A directory anyone may enter (pytest's tmp_path sits under a 0700 directory), with the stand-in programs."""
    path = Path(tempfile.mkdtemp(prefix="pck-drain-"))
    path.chmod(0o755)
    (path / "bin").mkdir(mode=0o755)
    shutil.copy(os.path.realpath(sys.executable), path / "bin" / "pgbouncer")  # its own file, named pgbouncer
    (path / "link").mkdir(mode=0o755)
    (path / "link" / "pgbouncer").symlink_to(os.path.realpath(sys.executable))  # a name only: exe is python
    (path / "run").mkdir()
    procs: list = []
    yield path, procs
    for proc in procs:
        proc.kill()
        proc.wait()
    shutil.rmtree(path)


def _start(scratch, behaviour: str, ini: str = "", program: str = "bin", user: str = "root") -> subprocess.Popen:
    path, procs = scratch
    proc = subprocess.Popen([str(path / program / "pgbouncer"), "-c", STAND_IN[behaviour],
                             ini or str(path / "run" / "pgbouncer.ini")], stdout=subprocess.PIPE, text=True,
                            user=user)
    procs.append(proc)
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    return proc


def _env(scratch, runtime: str = "") -> dict:
    return {**AS_ROOT, "PCK_RUNTIME_DIR": runtime or str(scratch[0] / "run")}


def test_sigint_then_wait_for_the_exit(scratch, capsys):
    proc = _start(scratch, "exits")
    others = [_start(scratch, "exits", ini=str(scratch[0] / "elsewhere" / "pgbouncer.ini")),  # another pooler's
              _start(scratch, "exits", program="link"),  # named pgbouncer, but another program
              _start(scratch, "exits", user="nobody")]  # not the run user
    assert find_pgbouncer(str(scratch[0] / "run" / "pgbouncer.ini"), 0) == [proc.pid]
    started = time.monotonic()
    assert drain(0, 10, _env(scratch)) == 0
    assert proc.wait(1) == 0 and time.monotonic() - started >= 0.3  # it waited for the shutdown
    assert "SIGINT sent" in capsys.readouterr().err
    assert [p.poll() for p in others] == [None, None, None]


def test_the_runtime_dir_is_read_as_run_reads_it(scratch):
    proc = _start(scratch, "exits")
    assert drain(0, 10, _env(scratch, runtime=str(scratch[0]) + "//run/.")) == 0
    assert proc.wait(1) == 0


@pytest.mark.parametrize("err", [errno.EPERM, errno.ENOSYS])
def test_without_pidfds_the_start_time_pins_the_process(scratch, monkeypatch, capsys, err):
    """A seccomp profile without pidfd_open, or a kernel before 5.3: still signalled, still waited for."""
    def refused(pid, flags=0):
        raise OSError(err, os.strerror(err))
    monkeypatch.setattr(drain_module.os, "pidfd_open", refused)
    proc = _start(scratch, "exits")
    assert drain(0, 10, _env(scratch)) == 0
    assert proc.wait(1) == 0 and "exited after" in capsys.readouterr().err


def test_a_pgbouncer_that_outlives_the_timeout_is_reported_and_left_to_the_kubelet(scratch, capsys):
    first, second = _start(scratch, "ignores"), _start(scratch, "ignores")
    started = time.monotonic()
    assert drain(0, 0.5, _env(scratch)) == 1
    assert time.monotonic() - started < 1.5  # one deadline for both, not one each
    assert capsys.readouterr().err.count("still runs after 0.5 s") == 2
    assert first.poll() is None and second.poll() is None


def test_nothing_running_is_not_an_error(scratch, capsys):
    assert drain(0, 1, _env(scratch)) == 0
    assert "nothing to drain" in capsys.readouterr().err


@pytest.mark.parametrize("args", [["--timeout", "-1"], ["--delay", "soon"], ["--timeout", "nan"]])
def test_bad_arguments_exit_2_with_the_reason(scratch, args):
    result = subprocess.run([ENTRYPOINT, "pooler", "drain", *args], capture_output=True, text=True, timeout=30,
                            env={"PATH": os.environ["PATH"], **_env(scratch)})
    assert result.returncode == 2 and "seconds" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [["drain", "--delay", "0"], ["probe", "readiness"]])
def test_a_runtime_dir_run_would_refuse_is_refused_not_replaced_by_the_default(scratch, command):
    """`..` in PCK_RUNTIME_DIR: `pooler run` refuses it; drain and probe must not act on /run/patroni-citus-k8s."""
    result = subprocess.run([ENTRYPOINT, "pooler", *command], capture_output=True, text=True, timeout=30,
                            env={"PATH": os.environ["PATH"], **_env(scratch, runtime=f"{scratch[0]}/run/../run")})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "PCK_RUNTIME_DIR" in result.stderr and "'..'" in result.stderr and "Traceback" not in result.stderr
