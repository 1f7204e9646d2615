"""The rotation watcher as it really runs: `run -- <a long-running program>` as root over a kubelet-like `..data`
mount, the watcher forked before the exec, files swapped under it.

Whatever is swapped in (a damaged certificate, /dev/zero, a FIFO, a key that does not match, files flapping
mid-read, names planted where it writes, a full disk), the watcher stays alive, keeps the staged set whole (the
staged key always belongs to the staged certificate), logs the refusal once, no traceback, and takes the next good
set. It is gone within a second of its parent's death, whether it stayed root or dropped to postgres.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import pytest

from entrypoint.pki.keys import key_matches
from entrypoint.pki.load import load_certificates, load_private_key
from tests.adversarial.conftest import (
    POSTGRES,
    PYTHON,
    REPO,
    WILDCARD,
    Box,
    assert_refused,
    assert_untouched,
    invoke,
    make_box,
    seed_files,
    wait_for,
)
from tests.support import forge
from tests.support.pki import TestCA
from tests.unit.conftest import encrypt_key

INTERVAL = "0.2"
# The exec'd program: harmless, long-running, and it counts the SIGHUPs the watcher sends after a restage.
HUP_COUNTER = ("import signal, time\n"
               "signal.signal(signal.SIGHUP, lambda *_: print('HUP', flush=True))\n"
               "while True:\n    time.sleep(3600)\n")
EVIL = "evil\nforged line\x1b[31m"


def _ppid_and_state(pid: int):
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), fields[0]


def _children(pid: int) -> List[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            info = _ppid_and_state(int(entry))
            if info and info[0] == pid:
                out.append(int(entry))
    return out


def gone(pid: int) -> bool:
    """Exited: no such process, or a zombie waiting for whoever adopted it."""
    info = _ppid_and_state(pid)
    return info is None or info[1] in ("Z", "X")


@dataclass
class Running:
    """One `run` with its watcher: logs, the staged set, and the signals the exec'd program got."""

    box: Box
    proc: subprocess.Popen
    logs: Path
    root: str = ""  # /proc/<pid>/root when it runs in a mount namespace of its own
    watcher: int = 0
    stopped: bool = field(default=False)

    def log(self) -> str:
        return (self.logs / "stderr").read_text(errors="backslashreplace")

    def hups(self) -> int:
        return (self.logs / "stdout").read_text().count("HUP")

    def path(self, p: Path) -> str:
        return self.root + str(p)

    def staged(self):
        """(serial of the staged certificate, whether the staged key belongs to it), read as one generation."""
        tls = self.path(self.box.runtime / "tls")
        for _ in range(20):
            try:
                generation = os.path.join(os.path.dirname(tls), os.readlink(tls))
                cert = load_certificates(open(os.path.join(generation, "server.crt"), "rb").read())[0]
                key = load_private_key(open(os.path.join(generation, "server.key"), "rb").read(), None)
                return cert.serial_number, key_matches(key, cert)
            except FileNotFoundError:  # pruned between readlink and open: look again
                time.sleep(0.01)
        raise AssertionError("the staged set kept vanishing")

    def watcher_uid(self) -> int:
        with open(f"/proc/{self.watcher}/status") as handle:
            return int(re.search(r"^Uid:\s+(\d+)", handle.read(), re.M).group(1))

    def alive(self) -> bool:
        return not gone(self.watcher) and self.proc.poll() is None

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        if self.watcher and not gone(self.watcher):
            os.kill(self.watcher, signal.SIGKILL)


def start(box: Box, env: dict, prefix: Optional[list] = None, module: str = "entrypoint", root: str = "") -> Running:
    logs = box.root / "logs"
    logs.mkdir(exist_ok=True)
    argv = [*(prefix or []), PYTHON, "-m", module, "run", "--", "/usr/bin/python3", "-c", HUP_COUNTER]
    with open(logs / "stdout", "wb") as out, open(logs / "stderr", "wb") as err:
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=out, stderr=err, start_new_session=True)
    running = Running(box, proc, logs, root=root.replace("{pid}", str(proc.pid)))
    _RUNNING.append(running)
    try:
        wait_for(lambda: "watch: watching" in running.log() or proc.poll() is not None, 15, "the watcher to start")
        assert proc.poll() is None, running.log()
        running.watcher = wait_for(lambda: next(iter(_children(proc.pid)), None), 5, "the watcher's pid")
    except BaseException:
        running.stop()
        raise
    return running


_RUNNING: List[Running] = []


@pytest.fixture(autouse=True)
def _stop_everything():
    yield
    while _RUNNING:
        _RUNNING.pop().stop()


@pytest.fixture
def wbox(pki):
    b = make_box("pck-adv-watch-")
    b.mount(seed_files(*pki))
    yield b
    shutil.rmtree(b.root, ignore_errors=True)


def _env(box: Box, **changes) -> dict:
    return box.env(PCK_CERT_WATCH_INTERVAL=INTERVAL, **changes)


def _steady(running: Running, serial: int, seconds: float = 1.0) -> None:
    """For `seconds` (several looks), the watcher lives and the staged set stays `serial`, whole."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert running.alive(), running.log()
        assert running.staged() == (serial, True), running.log()
        time.sleep(0.05)


def _takes_good_set(running: Running, pair, hups_before: int) -> None:
    running.box.mount({"ca.crt": running.ca_pem, "server.crt": pair.cert_pem, "server.key": pair.key_pem},
                      **running.mount_how)
    wait_for(lambda: running.staged() == (pair.cert.serial_number, True), 6, "the good set to be staged")
    wait_for(lambda: running.hups() > hups_before, 3, "Patroni's SIGHUP after the restage")
    assert running.alive()


def _bad_swaps(ca: TestCA, pair):
    other = ca.issue(WILDCARD)
    dup = forge.duplicate_san(ca, WILDCARD)
    v4 = forge.version_4(ca, WILDCARD)
    stranger = TestCA(EVIL).issue(WILDCARD)
    return {
        "duplicate-extension": ({"server.crt": dup.cert_pem, "server.key": dup.key_pem}, "damaged"),
        "version-4": ({"server.crt": v4.cert_pem, "server.key": v4.key_pem}, "does not parse"),
        "devzero": ({"server.crt": "devzero", "server.key": other.key_pem}, "character device"),
        "fifo": ({"server.crt": other.cert_pem, "server.key": "fifo"}, "FIFO"),
        "mismatched-key": ({"server.crt": other.cert_pem, "server.key": pair.key_pem}, "does not belong"),
        "sparse-ca": ({"ca.crt": "sparse", "server.crt": other.cert_pem, "server.key": other.key_pem}, "200.0 MiB"),
        "stranger-with-control-characters": ({"server.crt": stranger.cert_pem, "server.key": stranger.key_pem},
                                             "not signed"),
    }


BAD = ["duplicate-extension", "version-4", "devzero", "fifo", "mismatched-key", "sparse-ca",
       "stranger-with-control-characters"]


def _launch(box: Box, pki, mount_how: Optional[dict] = None, **kw) -> Running:
    ca, pair = pki
    mount_how = mount_how or {}
    box.mount(seed_files(ca, pair), **mount_how)
    running = start(box, kw.pop("env", None) or _env(box), **kw)
    running.ca_pem, running.mount_how = ca.cert_pem, mount_how  # type: ignore[attr-defined]
    return running


@pytest.mark.parametrize("bad", BAD)
def test_a_bad_swap_is_refused_once_the_old_set_stays_whole_and_the_next_good_set_is_taken(wbox, pki, bad):
    ca, pair = pki
    running = _launch(wbox, pki)
    serial = pair.cert.serial_number
    assert running.staged() == (serial, True)
    files, words = _bad_swaps(ca, pair)[bad]
    wbox.mount({**seed_files(ca, pair), **files})
    wait_for(lambda: "refused new TLS material" in running.log(), 6, "the refusal")
    _steady(running, serial)
    log = running.log()
    assert words in log, log
    assert log.count("refused new TLS material") == 1, log  # once per change, not once per look
    assert "Traceback" not in log and "error in this look" not in log and running.hups() == 0, log
    if "control" in bad:
        assert "\x1b" not in log and "\\x1b" in log and "\nforged line" not in log, log
    _takes_good_set(running, ca.issue(WILDCARD), 0)
    assert "Traceback" not in running.log()


@pytest.mark.parametrize("rounds", [2**31 - 1, 2**32], ids=["2^31-1", "2^32"])
def test_an_encrypted_key_with_absurd_kdf_work_neither_blocks_nor_kills_the_watcher(wbox, pki, rounds):
    """Minutes of PBKDF2 would block every look (and the exit with the parent); 2^32 panicked cryptography."""
    ca, pair = pki
    wbox.mount({**seed_files(ca, pair), "server.key": encrypt_key(pair, b"pw")})
    running = start(wbox, _env(wbox, PGSSLKEY_PASSWORD="pw"))
    running.ca_pem, running.mount_how = ca.cert_pem, {}  # type: ignore[attr-defined]
    new = ca.issue(WILDCARD)
    wbox.mount({**seed_files(ca, new), "server.key": forge.with_kdf_iterations(encrypt_key(new, b"pw"), rounds)})
    wait_for(lambda: "refused new TLS material" in running.log(), 6, "the refusal")
    _steady(running, pair.cert.serial_number)
    assert "iterations" in running.log() and "Traceback" not in running.log()
    wbox.mount({**seed_files(ca, new), "server.key": encrypt_key(new, b"pw")})
    wait_for(lambda: running.staged() == (new.cert.serial_number, True), 6, "the good encrypted set")


@pytest.mark.parametrize("owner", ["root", "postgres"])
def test_the_watcher_signals_only_a_postmaster_of_the_run_user(wbox, pki, owner):
    """postmaster.pid is the run user's file: as root, the watcher must not SIGHUP whatever PID it names."""
    ca, _ = pki
    running = _launch(wbox, pki)
    how = {} if owner == "root" else {"user": POSTGRES.pw_uid, "group": POSTGRES.pw_gid}
    victim = subprocess.Popen(["/usr/bin/sleep", "600"], start_new_session=True, **how)
    try:
        wbox.data.mkdir(parents=True, exist_ok=True)
        (wbox.data / "postmaster.pid").write_text(f"{victim.pid}\n{wbox.data}\n")
        _takes_good_set(running, ca.issue(WILDCARD), 0)
        time.sleep(0.3)
        if owner == "root":
            assert victim.poll() is None, "the watcher sent SIGHUP to a root process named by postmaster.pid"
        else:  # control: the run user's postmaster is signalled (sleep dies of SIGHUP)
            wait_for(lambda: victim.poll() is not None, 3, "the postmaster's SIGHUP")
            assert victim.returncode == -signal.SIGHUP
    finally:
        if victim.poll() is None:
            victim.kill()
        victim.wait()


def test_files_flapping_mid_read_never_stage_a_mixed_set(wbox, pki):
    """A writer swaps whole sets, mixed sets, a FIFO and a half file at random under the watcher for 3 s."""
    ca, pair = pki
    running = _launch(wbox, pki)
    a, b = ca.issue(WILDCARD), ca.issue(WILDCARD)
    half = a.cert_pem[: len(a.cert_pem) // 2]
    sets = [{"server.crt": a.cert_pem, "server.key": a.key_pem}, {"server.crt": b.cert_pem, "server.key": b.key_pem},
            {"server.crt": a.cert_pem, "server.key": b.key_pem}, {"server.crt": b.cert_pem, "server.key": "fifo"},
            {"server.crt": half, "server.key": a.key_pem}]
    stop = threading.Event()
    rng = random.Random(12)

    def flap():
        while not stop.is_set():
            wbox.mount({"ca.crt": ca.cert_pem, **rng.choice(sets)})
            time.sleep(rng.uniform(0.01, 0.3))

    writer = threading.Thread(target=flap)
    writer.start()
    seen = set()
    try:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            serial, whole = running.staged()
            assert whole, "a staged certificate with a key that does not belong to it"
            seen.add(serial)
            assert running.alive(), running.log()
            time.sleep(0.01)
    finally:
        stop.set()
        writer.join()
    assert seen <= {pair.cert.serial_number, a.cert.serial_number, b.cert.serial_number}
    final = ca.issue(WILDCARD)
    _takes_good_set(running, final, running.hups())
    assert "Traceback" not in running.log()


def test_a_file_rewritten_in_place_slowly_is_taken_only_once_whole(wbox, pki):
    """An editor or a careless script: the certificate written in two halves, then the key, in place."""
    ca, pair = pki
    running = _launch(wbox, pki)
    new = ca.issue(WILDCARD)
    here = wbox.current()
    with open(here / "server.crt", "wb") as handle:
        handle.write(new.cert_pem[:100])
        handle.flush()
        _steady(running, pair.cert.serial_number, 0.6)
        handle.write(new.cert_pem[100:])
    _steady(running, pair.cert.serial_number, 0.6)  # new certificate, old key: refused, old set kept
    (here / "server.key").write_bytes(new.key_pem)
    wait_for(lambda: running.staged() == (new.cert.serial_number, True), 6, "the completed set")
    assert "Traceback" not in running.log()


def test_things_planted_at_the_watchers_temporary_names_are_skipped_not_followed(wbox, pki):
    """Directories, files and links to a victim directory at every name the watcher will try next."""
    ca, pair = pki
    running = _launch(wbox, pki, module="tests.adversarial.predictable_names")
    used = max(int(n.split(".")[-1], 16) for n in os.listdir(wbox.runtime) if n.startswith("tls."))
    victim = wbox.root / "victim"
    victim.mkdir()
    (victim / "keep").write_text("untouched")
    before = victim.stat()
    planted = []
    # The counter is shared: the generation takes the first free tls. name after used+12, the link's temporary
    # name the first free .link- name after that, so both calls skip several planted names (within 16 tries).
    for n in range(used + 1, used + 21):
        for prefix, how in (("tls.", "dir"), (".link-", "link"), (".old-", "file")):
            if prefix == "tls." and n > used + 12:
                continue
            path = wbox.runtime / f"{prefix}{n:012x}"
            if how == "dir":
                path.mkdir()
                (path / "server.key").write_text("planted")
            elif how == "link":
                path.symlink_to(victim)
            else:
                path.write_text("planted")
            planted.append(path)
    new = ca.issue(WILDCARD)
    _takes_good_set(running, new, 0)
    staged_dir = os.path.join(wbox.runtime, os.readlink(wbox.runtime / "tls"))
    assert int(staged_dir.rsplit(".", 1)[1], 16) > used + 12  # every planted name was tried and skipped
    assert os.path.islink(wbox.runtime / "tls") and os.path.isdir(staged_dir)
    assert os.path.realpath(staged_dir) not in {os.path.realpath(p) for p in planted}
    assert open(os.path.join(staged_dir, "server.key")).read() != "planted"
    assert sorted(os.listdir(victim)) == ["keep"] and (victim / "keep").read_text() == "untouched"
    assert victim.stat().st_mtime_ns == before.st_mtime_ns
    assert "Traceback" not in running.log()


def test_a_full_disk_keeps_the_old_set_logs_once_and_the_set_is_taken_when_space_returns(wbox, pki):
    """The runtime dir is a 64 KiB tmpfs in a private mount namespace; the test fills it through /proc/<pid>/root."""
    ca, pair = pki
    wbox.runtime.mkdir()
    mount = (f"mount -t tmpfs -o size=64k,mode=0700,uid={POSTGRES.pw_uid},gid={POSTGRES.pw_gid} pck-adv-full "
             f"{wbox.runtime} && exec \"$@\"")
    running = _launch(wbox, pki, prefix=["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c",
                                         mount, "sh"], root="/proc/{pid}/root")
    assert running.staged() == (pair.cert.serial_number, True)
    filler = Path(running.path(wbox.runtime / "filler"))
    with open(filler, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError:
            pass
    new = ca.issue(WILDCARD)
    wbox.mount({**seed_files(ca, new)})
    wait_for(lambda: "No space left" in running.log(), 6, "the watcher to meet the full disk")
    _steady(running, pair.cert.serial_number, 2.0)
    log = running.log()
    assert log.count("No space left") == 1, log  # once, not once per look
    assert "Traceback" not in log and running.hups() == 0
    leftovers = [n for n in os.listdir(running.path(wbox.runtime)) if n.startswith(("tls.", ".link-"))]
    assert len(leftovers) == 1, leftovers  # the failed generation was removed again
    filler.unlink()
    wait_for(lambda: running.staged() == (new.cert.serial_number, True), 6, "the set once space is back")
    wait_for(lambda: running.hups() == 1, 3, "Patroni's SIGHUP")


@pytest.mark.parametrize("mount", ["root-only", "group-readable"])
def test_the_watcher_is_gone_within_a_second_of_its_parents_kill_9(wbox, pki, mount):
    how = {"mode": 0o600, "gid": 0} if mount == "root-only" else {"mode": 0o640, "gid": POSTGRES.pw_gid}
    running = _launch(wbox, pki, mount_how=how)
    assert running.watcher_uid() == (0 if mount == "root-only" else POSTGRES.pw_uid)
    assert "as root" in running.log() if mount == "root-only" else f"uid {POSTGRES.pw_uid}" in running.log()
    os.kill(running.proc.pid, signal.SIGKILL)
    killed = time.monotonic()
    running.proc.wait(timeout=5)
    wait_for(lambda: gone(running.watcher), 3, "the watcher to exit")
    assert time.monotonic() - killed <= 1.0


def test_control_a_live_parent_keeps_its_watcher(wbox, pki):
    """Proves the kill test measures the parent's death: with the parent alive the watcher stays for seconds."""
    running = _launch(wbox, pki)
    time.sleep(1.5)
    assert running.alive()


@pytest.mark.parametrize("interval", ["1e-9", "0.01", "nan", "inf", "-1", "3601"])
def test_a_watch_interval_outside_its_bounds_is_refused(box, interval):
    before = box.snapshot()
    result = invoke(["run", "--", "/usr/bin/true"], box.env(PCK_CERT_WATCH_INTERVAL=interval))
    assert_refused(result, "PCK_CERT_WATCH_INTERVAL", "0.2 to 3600")
    assert_untouched(box, before)
