"""Fuzz the whole read -> check -> stage path with arbitrary bytes and file types on a real file system.

Whatever the Secret holds (garbage, a damaged PEM, a FIFO, a device, a directory, a
huge sparse file, nothing), the outcome is TlsMaterial or InputError, within a second,
and whatever is staged is a consistent set: the staged key belongs to the staged certificate.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import tempfile

import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from entrypoint.boot.commands import gather_facts
from entrypoint.boot.material import TlsMaterial, check_material, files_to_read, read_files
from entrypoint.boot.settings import parse_settings
from entrypoint.boot.stage import stage_material
from entrypoint.errors import InputError
from entrypoint.pki.keys import key_matches
from entrypoint.pki.load import load_certificates, load_private_key
from tests.support.pki import TestCA
from tests.unit.conftest import CONNECT_HOST, env_with

CA = TestCA("fuzz CA")
GOOD = CA.issue(CONNECT_HOST, "localhost")
OTHER = CA.issue(CONNECT_HOST)
GOOD_FILES = {"ca.crt": CA.cert_pem, "server.crt": GOOD.cert_pem, "server.key": GOOD.key_pem}


def _mutate(data: bytes, cut: int, flip: int, dup: bool) -> bytes:
    cut %= len(data) + 1
    out = bytearray(data[:cut] if cut else data)
    if out:
        out[flip % len(out)] ^= 0x41
    return bytes(out + out) if dup else bytes(out)


CONTENT = st.one_of(
    st.tuples(st.just("bytes"), st.binary(max_size=600)),
    st.tuples(st.just("mutated"), st.tuples(st.integers(0, 2000), st.integers(0, 2000), st.booleans())),
    st.tuples(st.just("good"), st.none()),
    st.tuples(st.just("other"), st.none()),  # a valid certificate or key of another pair
    st.tuples(st.sampled_from(["fifo", "dir", "devzero", "missing", "huge", "loop", "empty"]), st.none()),
)


def _place(directory: str, name: str, how) -> None:
    kind, arg = how
    path = os.path.join(directory, name)
    if kind == "bytes":
        open(path, "wb").write(arg)
    elif kind == "mutated":
        open(path, "wb").write(_mutate(GOOD_FILES[name], *arg))
    elif kind == "good":
        open(path, "wb").write(GOOD_FILES[name])
    elif kind == "other":
        open(path, "wb").write({"ca.crt": TestCA("x").cert_pem, "server.crt": OTHER.cert_pem,
                                "server.key": OTHER.key_pem}[name])
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "dir":
        os.mkdir(path)
    elif kind == "devzero":
        os.symlink("/dev/zero", path)
    elif kind == "huge":
        with open(path, "wb") as handle:
            handle.truncate(64 * 1024 * 1024)
    elif kind == "loop":
        os.symlink(name, path)
    elif kind == "empty":
        open(path, "wb").close()


class _Deadline:
    def __enter__(self):
        signal.signal(signal.SIGALRM, self._hang)
        signal.alarm(5)

    def __exit__(self, *exc):
        signal.alarm(0)

    @staticmethod
    def _hang(*_):
        raise AssertionError("the read/check/stage path hung")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ca=CONTENT, cert=CONTENT, key=CONTENT,
       mode=st.sampled_from(["prefer", "require", "verify-ca", "verify-full"]), mtls=st.booleans())
@example(ca=("good", None), cert=("good", None), key=("good", None), mode="verify-full", mtls=True)
@example(ca=("fifo", None), cert=("good", None), key=("good", None), mode="require", mtls=False)
def test_any_secret_ends_in_material_or_input_error_and_stages_a_consistent_set(ca, cert, key, mode, mtls):
    base = tempfile.mkdtemp(prefix="pck-fuzz-")
    try:
        certs, run = os.path.join(base, "certs"), os.path.join(base, "run")
        os.mkdir(certs)
        os.mkdir(run)
        for name, how in (("ca.crt", ca), ("server.crt", cert), ("server.key", key)):
            _place(certs, name, how)
        env = env_with(PGSSLMODE=mode, PCK_CERT_DIR=certs, PCK_RUNTIME_DIR=run,
                       PCK_CLIENT_CERT_AUTH="true" if mtls and mode != "prefer" else "false")
        with _Deadline():
            try:
                s = parse_settings(env, gather_facts(env))
                material = check_material(s, read_files(files_to_read(s)), dt.datetime.now(dt.timezone.utc))
            except InputError as err:
                assert err.problems and all(p.where and p.what and p.fix for p in err.problems)
                return
            assert isinstance(material, TlsMaterial)
            paths = stage_material(s, material, os.getuid(), os.getgid())
        if paths.server_cert:
            staged_cert = load_certificates(open(paths.server_cert, "rb").read())[0]
            staged_key = load_private_key(open(paths.server_key, "rb").read(), None)
            assert key_matches(staged_key, staged_cert)
        if paths.ca:
            assert b"PRIVATE KEY" not in open(paths.ca, "rb").read()
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("name", ["ca.crt", "server.crt", "server.key"])
def test_the_fuzzer_places_a_fifo_that_really_is_one(tmp_path, name):
    _place(str(tmp_path), name, ("fifo", None))
    assert os.path.exists(tmp_path / name) and not os.path.isfile(tmp_path / name)
