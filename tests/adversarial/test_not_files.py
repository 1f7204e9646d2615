"""Files that are not files: a FIFO, /dev/zero, /dev/urandom, a directory, a socket, a symlink loop or a 200 MB
sparse file where a certificate, key, CA, passphrase or Patroni TLS file should be, in a kubelet-like mount.

Each goes through the real `check`, `run` and `certs inspect` with a hard time limit: a refusal (exit 2) naming
the variable, the path and what the path is, with a fix, and nothing written or started. Never a hang, never
an out-of-memory read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pytest

from tests.adversarial.conftest import NOT_FILES, assert_refused, assert_untouched, invoke, run_stub, seed_files
from tests.unit.conftest import encrypt_key


@dataclass(frozen=True)
class Target:
    """Which file of the mount is replaced, the variable that names it, and how the box is set up around it."""

    id: str
    name: str  # file name in the mount
    var: str
    mode: str = "verify-full"
    extra_env: tuple = ()  # (variable, file name in the mount)
    inspect: Optional[str] = "path"  # how `certs inspect` meets it: "path", "ca" (as --ca), or None


TARGETS = [
    Target("server.key", "server.key", "PGSSLKEY"),
    Target("server.crt", "server.crt", "PGSSLCERT"),
    Target("ca.crt", "ca.crt", "PGSSLROOTCERT", inspect="ca"),
    Target("ca.crt-require", "ca.crt", "PGSSLROOTCERT", mode="require", inspect=None),
    Target("password-file", "key.pass", "PGSSLKEY_PASSWORD_FILE", extra_env=(("PGSSLKEY_PASSWORD_FILE", "key.pass"),),
           inspect=None),
    Target("etcd3-cert", "etcd.crt", "PATRONI_ETCD3_CERT",
           extra_env=(("PATRONI_ETCD3_CERT", "etcd.crt"), ("PATRONI_ETCD3_KEY", "etcd.key")), inspect="path"),
]
COMMANDS = ["check", "run", "inspect"]
CASES = [(t, kind, command) for t in TARGETS for kind in NOT_FILES for command in COMMANDS
         if command != "inspect" or t.inspect]


def _set_up(box, pki, target: Target, kind: str) -> dict:
    ca, pair = pki
    files = dict(seed_files(ca, pair))
    if target.var == "PGSSLKEY_PASSWORD_FILE":
        files["server.key"] = encrypt_key(pair, b"pass-phrase")
    if target.var.startswith("PATRONI_ETCD3"):
        etcd = ca.issue("etcd-client")
        files.update({"etcd.crt": etcd.cert_pem, "etcd.key": etcd.key_pem})
    files[target.name] = kind
    box.mount(files)
    env = box.env(PGSSLMODE=target.mode)
    env.update({var: str(box.certs / name) for var, name in target.extra_env})
    return env


@pytest.mark.parametrize("target, kind, command", CASES, ids=[f"{t.id}-{k}-{c}" for t, k, c in CASES])
def test_not_a_file_is_refused_without_blocking_or_reading_it(box, pki, target, kind, command):
    env = _set_up(box, pki, target, kind)
    path = str(box.certs / target.name)
    before = box.snapshot()
    if command == "inspect":
        args = (["certs", "inspect", str(box.certs / "server.crt"), "--ca", path] if target.inspect == "ca"
                else ["certs", "inspect", path])
        result = invoke(args, env)
        assert_refused(result, path, NOT_FILES[kind], "certs inspect", stdout_ok=True)
    else:
        result = run_stub(box, env) if command == "run" else invoke([command], env)
        assert_refused(result, f"{target.var}: {path}", NOT_FILES[kind], "nothing was started",
                       stdout_ok=command == "check")
    assert_untouched(box, before)


def test_control_the_same_box_with_regular_files_starts(box, pki):
    """Proves the refusals above are about the planted files: the same set-up with real files runs the stub."""
    target = TARGETS[-1]
    env = _set_up(box, pki, target, "dir")
    ca, _ = pki
    etcd = ca.issue("etcd-client")
    fresh = box.current()
    (fresh / "etcd.crt").rmdir()
    (fresh / "etcd.crt").write_bytes(etcd.cert_pem)
    (fresh / "etcd.key").write_bytes(etcd.key_pem)
    result = run_stub(box, env)
    assert result.returncode == 0, result.output
    assert box.marker.read_text().startswith("exec as postgres")
