"""Unclear or wrong exits: every bad input ends in exit 2 with a message naming it and a fix, never a traceback
or an "internal error"; control characters from certificates and variable names reach no output raw.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from tests.adversarial.conftest import (
    POSTGRES,
    REPO,
    assert_refused,
    assert_untouched,
    invoke,
    run_stub,
    seed_files,
)
from tests.support import forge
from tests.support.pki import TestCA
from tests.unit.conftest import encrypt_key

RAW_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # anything but tab and newline, as it reaches a terminal


def _bytes_env(env: dict, **raw: bytes) -> dict:
    out = {k.encode(): v.encode() for k, v in env.items()}
    out.update({k.encode(): v for k, v in raw.items()})
    out[b"PYTHONIOENCODING"] = b"utf-8"  # strict, as under LANG=en_US.UTF-8 in an image
    return out


# --- Numbers, bytes and names ---------------------------------------------------------------------

@pytest.mark.parametrize("command", ["check", "run"])
def test_an_absurd_expiry_warning_is_refused(box, command):
    before = box.snapshot()
    env = box.env(PCK_EXPIRY_WARN_DAYS="1000000000")
    result = run_stub(box, env) if command == "run" else invoke([command], env)
    assert_refused(result, "PCK_EXPIRY_WARN_DAYS", "out of range", "3650", stdout_ok=command == "check")
    assert_untouched(box, before)


@pytest.mark.parametrize("var", ["PATRONI_SUPERUSER_PASSWORD", "PATRONI_REPLICATION_PASSWORD", "PGSSLKEY_PASSWORD",
                                 "PATRONI_RESTAPI_KEYFILE_PASSWORD"])
@pytest.mark.parametrize("command", ["check", "run"])
def test_password_bytes_that_are_not_utf8_are_refused(box, pki, var, command):
    ca, pair = pki
    if var == "PGSSLKEY_PASSWORD":
        box.mount({**seed_files(ca, pair), "server.key": encrypt_key(pair, b"pass\xffword")})
    before = box.snapshot()
    env = _bytes_env(box.env(), **{var: b"pass\xffword"})
    result = run_stub(box, env) if command == "run" else invoke([command], env)
    assert_refused(result, var, "not valid UTF-8", stdout_ok=command == "check")
    assert_untouched(box, before)


def test_a_password_file_that_is_not_utf8_is_refused(box, pki):
    ca, pair = pki
    box.mount({**seed_files(ca, pair), "server.key": encrypt_key(pair, b"pw"), "key.pass": b"p\xff\xfe\n"})
    before = box.snapshot()
    result = run_stub(box, box.env(PGSSLKEY_PASSWORD_FILE=str(box.certs / "key.pass")))
    assert_refused(result, "PGSSLKEY_PASSWORD_FILE", "not valid UTF-8")
    assert_untouched(box, before)


@pytest.mark.parametrize("command", ["check", "run"])
def test_a_variable_name_that_is_not_utf8_is_refused_and_shown_escaped(box, command):
    """A name from a byte-typed environment must not crash a strict UTF-8 stdout (check prints there)."""
    before = box.snapshot()
    raw = {k.encode(): v.encode() for k, v in box.env().items()}
    raw[b"PCK_CLIENT_CERT_AUT\xff"] = b"true"
    raw[b"PYTHONIOENCODING"] = b"utf-8"
    result = run_stub(box, raw) if command == "run" else invoke([command], raw)
    assert_refused(result, "PCK_CLIENT_CERT_AUT\\xff", "did you mean PCK_CLIENT_CERT_AUTH",
                   stdout_ok=command == "check")
    assert "\ufffd" not in result.output and "\\udcff" not in result.output
    assert_untouched(box, before)


@pytest.mark.parametrize("typo, meant", [("PCK_CLIENT_CERT_AUTHH", "PCK_CLIENT_CERT_AUTH"),
                                         ("PCK_RUNTIME_DIRR", "PCK_RUNTIME_DIR"),
                                         ("PGSSLMDOE", "PGSSLMODE"),
                                         ("PGSSLROOTCRT", "PGSSLROOTCERT")])
@pytest.mark.parametrize("command", ["check", "run"])
def test_a_misspelled_variable_is_refused_with_the_name_it_resembles(box, typo, meant, command):
    """PCK_CLIENT_CERT_AUTHH=true would leave mutual TLS off; PGSSLMDOE=verify-full would leave TLS at prefer."""
    before = box.snapshot()
    env = box.env(**{typo: "true" if "AUTH" in typo else "verify-full" if "MODE" in typo or "MDOE" in typo
                     else str(box.root)})
    result = run_stub(box, env) if command == "run" else invoke([command], env)
    assert_refused(result, typo, f"did you mean {meant}?", stdout_ok=command == "check")
    assert_untouched(box, before)


def test_libpqs_own_variables_are_not_typos(box):
    """PGSSLCRL, PGSSLSNI and friends are libpq's; Patroni's children read them. They pass."""
    env = box.env(PGSSLSNI="1", PGSSLCOMPRESSION="0", PGSSLMINPROTOCOLVERSION="TLSv1.2", PGSSLCERTMODE="allow")
    result = invoke(["check"], env)
    assert result.returncode == 0, result.output


@pytest.mark.parametrize("var", ["PATRONI_POSTGRESQL_CONNECT_ADDRESS", "PATRONI_RESTAPI_CONNECT_ADDRESS"])
@pytest.mark.parametrize("host, words", [("a.example,b.example", "comma"), ("a.example b.example", "space"),
                                         ("a.example\nb.example", "control characters"),
                                         ("a.example\x1b[2J", "control characters")])
def test_connect_addresses_libpq_would_misread_are_refused(box, var, host, words):
    before = box.snapshot()
    port = "8008" if "RESTAPI" in var else "5432"
    result = run_stub(box, box.env(**{var: f"{host}:{port}"}))
    assert_refused(result, var, words)
    assert not RAW_CONTROL.search(result.output), result.output
    assert_untouched(box, before)


# --- Commands ---------------------------------------------------------------------------------

def test_run_a_program_that_does_not_exist_is_refused_before_anything_is_written(box):
    before = box.snapshot()
    result = invoke(["run", "--", "/nonexistent"], box.env())
    assert_refused(result, "run --", "'/nonexistent'", "not an executable program")
    assert_untouched(box, before)


@pytest.mark.parametrize("dir_mode, file_mode", [(0o700, 0o755), (0o755, 0o700)],
                         ids=["root-only-directory", "root-only-program"])
def test_run_a_program_the_run_user_cannot_execute_is_refused_before_anything_is_written(box, dir_mode, file_mode):
    """Root finds it and may execute it; postgres, after the drop, cannot."""
    private = box.root / "private"
    private.mkdir()
    program = private / "prog"
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(file_mode)
    private.chmod(dir_mode)
    before = box.snapshot()
    result = invoke(["run", "--", str(program)], box.env())
    assert_refused(result, "run --", str(program), "postgres")
    assert_untouched(box, before)


def test_control_a_program_the_run_user_can_execute_starts(box):
    program = box.root / "bin" / "group-prog"
    program.write_text(f"#!/bin/sh\necho ran > {box.root / 'marks' / 'exec-marker'}\n")
    program.chmod(0o750)
    os.chown(program, 0, POSTGRES.pw_gid)
    result = invoke(["run", "--", str(program)], box.env())
    assert result.returncode == 0, result.output
    assert box.marker.read_text() == "ran\n"


# --- Certificates that parse lazily, or not at all --------------------------------------------------

DAMAGED = {"duplicate-extension": forge.duplicate_san, "version-4": forge.version_4}


@pytest.mark.parametrize("damage", sorted(DAMAGED))
@pytest.mark.parametrize("where", ["server.crt", "ca.crt"])
@pytest.mark.parametrize("command", ["check", "run", "inspect"])
def test_a_damaged_certificate_is_refused_as_damaged(box, pki, damage, where, command):
    ca, pair = pki
    bad = DAMAGED[damage](ca, "*.demo.ns.svc.cluster.local")
    files = dict(seed_files(ca, pair))
    if where == "server.crt":
        files.update({"server.crt": bad.cert_pem, "server.key": bad.key_pem})
    else:
        files["ca.crt"] = bad.cert_pem
    box.mount(files)
    before = box.snapshot()
    path = str(box.certs / where)
    if command == "inspect":
        result = invoke(["certs", "inspect", path], box.env())
        assert_refused(result, path, stdout_ok=True)
    else:
        env = box.env()
        result = run_stub(box, env) if command == "run" else invoke([command], env)
        assert_refused(result, "PGSSLCERT" if where == "server.crt" else "PGSSLROOTCERT", path,
                       stdout_ok=command == "check")
    assert re.search(r"damaged|does not parse|cannot be parsed", result.output), result.output
    assert_untouched(box, before)


@pytest.mark.parametrize("damage", sorted(DAMAGED))
def test_certs_generate_renew_from_a_damaged_ca_is_refused(pki, tmp_path, damage):
    ca, _ = pki
    (tmp_path / "ca.crt").write_bytes(DAMAGED[damage](ca, "ca.example").cert_pem)
    (tmp_path / "ca.key").write_bytes(forge.pem_key(ca.key))
    before = sorted(os.listdir(tmp_path))
    result = invoke(["certs", "generate", "--renew", "--out-dir", str(tmp_path)], {})
    assert_refused(result, "--renew", "does not parse" if damage == "version-4" else "damaged")
    assert sorted(os.listdir(tmp_path)) == before


def test_control_the_forged_certificates_are_otherwise_sound(pki):
    """The damage is the only thing wrong: the same builder without the patch gives a certificate that loads,
    and the patched one is validly signed (so a refusal cannot be a signature check in disguise)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    ca, _ = pki
    dup = x509.load_pem_x509_certificate(forge.duplicate_san(ca, "a.example").cert_pem)
    ca.cert.public_key().verify(dup.signature, dup.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256()))
    with pytest.raises(x509.DuplicateExtension):
        list(dup.extensions)


# --- Keys whose decryption would never end ----------------------------------------------------------

@pytest.mark.parametrize("iterations", [2**31 - 1, 2**32, 2**70], ids=["2^31-1", "2^32", "2^70"])
@pytest.mark.parametrize("command", ["check", "run"])
def test_an_encrypted_key_asking_for_absurd_kdf_iterations_is_refused_at_once(box, pki, iterations, command):
    """2^31-1 PBKDF2 rounds take minutes (the start, or a watcher look, hangs); 2^32 and more made cryptography's
    Rust code panic, an exception that is not an Exception (a raw traceback, and the watcher's death)."""
    ca, pair = pki
    key = forge.with_kdf_iterations(encrypt_key(pair, b"pw"), iterations)
    box.mount({**seed_files(ca, pair), "server.key": key})
    before = box.snapshot()
    env = box.env(PGSSLKEY_PASSWORD="pw")
    result = run_stub(box, env, timeout=10) if command == "run" else invoke([command], env, timeout=10)
    assert_refused(result, "PGSSLKEY", "iterations", stdout_ok=command == "check")
    assert_untouched(box, before)


def test_control_an_encrypted_key_with_a_high_but_ordinary_iteration_count_starts(box, pki, tmp_path):
    """600,000 rounds (OWASP's advice for PBKDF2-SHA256), encrypted for real by openssl."""
    ca, pair = pki
    (tmp_path / "plain.key").write_bytes(pair.key_pem)
    subprocess.run(["openssl", "pkcs8", "-topk8", "-v2", "aes-256-cbc", "-iter", "600000", "-passout", "pass:pw",
                    "-in", str(tmp_path / "plain.key"), "-out", str(tmp_path / "enc.key")], check=True, timeout=30)
    box.mount({**seed_files(ca, pair), "server.key": (tmp_path / "enc.key").read_bytes()})
    result = invoke(["check"], box.env(PGSSLKEY_PASSWORD="pw"))
    assert result.returncode == 0, result.output


# --- Control characters from certificates -----------------------------------------------------------

EVIL = "evil\nforged line\x1b[31m red"


def _assert_escaped(text: str) -> None:
    assert "forged line" in text, text
    assert "\x1b" not in text and "\nforged line" not in text, text
    assert "\\x1b" in text and "\\n" in text, text


def test_check_report_shows_a_subject_with_newline_and_esc_escaped(box, pki):
    ca, _ = pki
    pair = forge.with_subject(ca, EVIL, "*.demo.ns.svc.cluster.local", organization="O\rx")
    box.mount({**seed_files(ca, pair)})
    result = invoke(["check"], box.env())
    assert result.returncode == 0, result.output
    _assert_escaped(result.stdout)
    assert "\r" not in result.stdout


@pytest.mark.parametrize("command", ["check", "run"])
def test_a_refusal_naming_a_subject_with_control_characters_shows_it_escaped(box, pki, command):
    stranger = TestCA(EVIL)
    pair = stranger.issue("*.demo.ns.svc.cluster.local")
    ca, _ = pki
    box.mount(seed_files(ca, pair))
    before = box.snapshot()
    env = box.env(PGSSLMODE="verify-ca")
    result = run_stub(box, env) if command == "run" else invoke([command], env)
    assert_refused(result, "PGSSLCERT", "not signed", stdout_ok=command == "check")
    _assert_escaped(result.output)
    assert_untouched(box, before)


@pytest.mark.parametrize("json", [False, True])
def test_certs_inspect_shows_a_subject_with_control_characters_escaped(pki, tmp_path, json):
    ca, _ = pki
    pair = forge.with_subject(ca, EVIL, "evil.example")
    path = tmp_path / "evil.crt"
    path.write_bytes(pair.cert_pem)
    result = invoke(["certs", "inspect", str(path), "--warn-days", "10000", *(["--json"] if json else [])], {})
    assert result.returncode == 0, result.output
    assert "\x1b" not in result.output and "\nforged line" not in result.output, result.output
    assert "forged line" in result.stdout and "warning" in result.stderr  # the subject was shown, a warning printed


def test_certs_inspect_warning_naming_a_path_with_control_characters_is_escaped(pki, tmp_path):
    ca, pair = pki
    path = tmp_path / "key\x1b[2Jname.key"
    path.write_bytes(pair.key_pem)
    path.chmod(0o644)
    result = invoke(["certs", "inspect", str(path)], {})
    assert result.returncode == 0, result.output
    assert "mode 0644" in result.stderr and "\x1b" not in result.output, result.output


# --- PGSSLMODE=disable reads nothing ---------------------------------------------------------------

@pytest.mark.parametrize("stale", [
    {"PGSSLCERT": "/nonexistent/server.crt"},
    {"PGSSLKEY": "/nonexistent/server.key", "PGSSLROOTCERT": "/nonexistent/ca.crt"},
    {"PGSSLKEY_PASSWORD_FILE": "/nonexistent/key.pass"},
    {"PGSSLKEY_PASSWORD_FILE": "fifo"},
], ids=["cert", "key-and-ca", "password-file", "password-fifo"])
def test_disable_with_stale_tls_variables_starts(box, stale):
    """The seed's "disable SSL to recover" path: leftovers in the pod spec must not block it."""
    if stale.get("PGSSLKEY_PASSWORD_FILE") == "fifo":
        os.mkfifo(box.root / "key.pass")
        stale = {"PGSSLKEY_PASSWORD_FILE": str(box.root / "key.pass")}
    result = run_stub(box, box.env(PGSSLMODE="disable", **stale))
    assert result.returncode == 0, result.output
    assert box.marker.read_text().startswith("exec as postgres")
    assert "ignored" in result.stderr, result.stderr
    assert not os.path.lexists(box.runtime / "tls")  # nothing staged in disable


# --- The image's HEALTHCHECK -----------------------------------------------------------------------

def test_healthcheck_timeout_leaves_room_above_the_probes_own():
    text = (REPO / "Dockerfile.citus").read_text()
    block = re.search(r"^HEALTHCHECK(.*?)CMD (.*)$", text, re.M | re.S)
    assert block, "Dockerfile.citus has no HEALTHCHECK"
    outer = float(re.search(r"--timeout=(\d+)s", block.group(1)).group(1))
    command = block.group(2)
    assert "probe" in command
    inner = re.search(r'"--timeout",\s*"([\d.]+)"', command)
    probe_timeout = float(inner.group(1)) if inner else 5.0  # the probe's default
    startup = 2.0  # Python and the imports of a cold container, generously
    assert outer >= probe_timeout + startup, (outer, probe_timeout)
