"""`pooler drain` against real processes: it finds PgBouncer by its command line, sends SIGINT, waits for the exit.

The stand-in is a real process whose command line is PgBouncer's (`…/pgbouncer <ini>`): a
link named `pgbouncer` to Python, so each case can choose how it answers SIGINT. Real
PgBouncer's safe shutdown is proven in tests/integration/test_pooler.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

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


@pytest.fixture
def runtime(tmp_path):
    (tmp_path / "run").mkdir()
    return tmp_path / "run"


def _start(tmp_path, ini: str, behaviour: str) -> subprocess.Popen:
    link = tmp_path / "bin" / "pgbouncer"
    link.parent.mkdir(exist_ok=True)
    if not link.exists():
        link.symlink_to(sys.executable)
    proc = subprocess.Popen([str(link), "-c", STAND_IN[behaviour], ini], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    return proc


def test_sigint_then_wait_for_the_exit(tmp_path, runtime, capsys):
    proc = _start(tmp_path, str(runtime / "pgbouncer.ini"), "exits")
    other = _start(tmp_path, str(tmp_path / "elsewhere" / "pgbouncer.ini"), "exits")  # another pooler's: untouched
    try:
        assert find_pgbouncer(str(runtime / "pgbouncer.ini")) == [proc.pid]
        started = time.monotonic()
        assert drain(0, 10, {"PCK_RUNTIME_DIR": str(runtime)}) == 0
        assert proc.wait(1) == 0 and time.monotonic() - started >= 0.3  # it waited for the shutdown
        assert "SIGINT sent" in capsys.readouterr().err
        assert other.poll() is None
    finally:
        for p in (proc, other):
            p.kill()
            p.wait()


def test_a_pgbouncer_that_outlives_the_timeout_is_reported_and_left_to_the_kubelet(tmp_path, runtime, capsys):
    proc = _start(tmp_path, str(runtime / "pgbouncer.ini"), "ignores")
    try:
        assert drain(0, 0.5, {"PCK_RUNTIME_DIR": str(runtime)}) == 1
        assert "still runs after 0.5 s" in capsys.readouterr().err
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_nothing_running_is_not_an_error(runtime, capsys):
    assert drain(0, 1, {"PCK_RUNTIME_DIR": str(runtime)}) == 0
    assert "nothing to drain" in capsys.readouterr().err


@pytest.mark.parametrize("args", [["--timeout", "-1"], ["--delay", "soon"], ["--timeout", "nan"]])
def test_bad_arguments_exit_2_with_the_reason(runtime, args):
    result = subprocess.run([ENTRYPOINT, "pooler", "drain", *args], capture_output=True, text=True, timeout=30,
                            env={"PATH": os.environ["PATH"], "PCK_RUNTIME_DIR": str(runtime)})
    assert result.returncode == 2 and "seconds" in result.stderr and "Traceback" not in result.stderr
