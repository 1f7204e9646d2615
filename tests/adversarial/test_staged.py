"""What is staged is what was checked: root copies nothing for the run user that it did not parse as the right PEM.

Real `run` as root with a root-only mount; the staged copies are read back from the runtime directory.
"""

from __future__ import annotations

import os
import stat

import pytest
from cryptography.hazmat.primitives import serialization

from entrypoint.pki.keys import key_matches
from entrypoint.pki.load import load_certificates, load_private_key
from tests.adversarial.conftest import POSTGRES, assert_refused, assert_untouched, invoke, run_stub, seed_files
from tests.support.pki import TestCA


def _staged(box, name: str) -> bytes:
    return (box.runtime / "tls" / name).read_bytes()


def test_a_ca_key_appended_to_ca_crt_never_reaches_the_staged_copy(box, pki):
    ca, pair = pki
    # The CA's own private key, as a careless `cat ca.crt ca.key > ca.crt` leaves it.
    key_pem = ca.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                   serialization.NoEncryption())
    box.mount({**seed_files(ca, pair), "ca.crt": ca.cert_pem + b"# notes anyone may read\n" + key_pem})
    result = run_stub(box, box.env())
    assert result.returncode == 0, result.output
    assert "also holds a private key" in result.stderr  # said once, as a warning
    staged = _staged(box, "ca.crt")
    assert b"PRIVATE KEY" not in staged and b"notes" not in staged
    assert staged == ca.cert_pem  # re-encoded from the parsed certificate, nothing else
    st = os.stat(box.runtime / "tls" / "ca.crt")
    assert stat.S_IMODE(st.st_mode) == 0o644 and st.st_uid == POSTGRES.pw_uid


def test_a_patroni_ca_file_with_a_key_inside_is_staged_without_it(box, pki):
    ca, pair = pki
    box.mount({**seed_files(ca, pair), "etcd-ca.crt": ca.cert_pem + pair.key_pem})
    result = run_stub(box, box.env(PATRONI_ETCD3_CACERT=str(box.certs / "etcd-ca.crt")))
    assert result.returncode == 0, result.output
    staged = [p for p in os.listdir(box.runtime / "tls") if "etcd3_cacert" in p]
    assert staged, os.listdir(box.runtime / "tls")
    data = _staged(box, staged[0])
    assert b"PRIVATE KEY" not in data and load_certificates(data)[0] == ca.cert


@pytest.mark.parametrize("var", ["PATRONI_ETCD3_CACERT", "PATRONI_RESTAPI_CERTFILE", "PATRONI_CTL_CACERT",
                                 "PATRONI_ETCD3_KEY"])
def test_a_root_only_system_file_named_as_a_patroni_tls_file_is_refused_not_handed_over(box, var):
    env = box.env(**{var: "/etc/shadow"})
    if var == "PATRONI_ETCD3_KEY":
        env["PATRONI_ETCD3_CERT"] = str(box.certs / "server.crt")
    before = box.snapshot()
    result = run_stub(box, env)
    assert_refused(result, var, "/etc/shadow", "not a PEM")
    shadow = open("/etc/shadow").read()
    assert not any(line and line in result.output for line in shadow.splitlines() if ":" in line)
    assert_untouched(box, before)


@pytest.mark.parametrize("what, words", [("garbage", "not a PEM private key"), ("mismatched", "does not belong"),
                                         ("certificate", "not a PEM private key")])
@pytest.mark.parametrize("command", ["check", "run"])
def test_a_bad_rest_api_key_is_refused(box, pki, what, words, command):
    ca, pair = pki
    other = ca.issue("*.demo.ns.svc.cluster.local")
    rest_key = {"garbage": b"-----BEGIN PRIVATE KEY-----\nnot base64 at all\n-----END PRIVATE KEY-----\n",
                "mismatched": other.key_pem, "certificate": pair.cert_pem}[what]
    box.mount({**seed_files(ca, pair), "rest.crt": pair.cert_pem, "rest.key": rest_key})
    env = box.env(PATRONI_RESTAPI_CERTFILE=str(box.certs / "rest.crt"),
                  PATRONI_RESTAPI_KEYFILE=str(box.certs / "rest.key"))
    before = box.snapshot()
    result = run_stub(box, env) if command == "run" else invoke([command], env)
    assert_refused(result, "PATRONI_RESTAPI_KEYFILE", str(box.certs / "rest.key"), words,
                   stdout_ok=command == "check")
    assert_untouched(box, before)


def test_a_rest_api_certificate_from_another_ca_or_for_another_name_is_refused(box, pki):
    ca, pair = pki
    stranger = TestCA("stranger").issue("*.demo.ns.svc.cluster.local")
    elsewhere = ca.issue("other.example")
    for cert, words in ((stranger, "was not signed"), (elsewhere, "does not cover")):
        box.mount({**seed_files(ca, pair), "rest.crt": cert.cert_pem, "rest.key": cert.key_pem})
        env = box.env(PATRONI_RESTAPI_CERTFILE=str(box.certs / "rest.crt"),
                      PATRONI_RESTAPI_KEYFILE=str(box.certs / "rest.key"))
        before = box.snapshot()
        assert_refused(run_stub(box, env), "PATRONI_RESTAPI_CERTFILE", words)
        assert_untouched(box, before)


def test_control_a_good_rest_api_pair_is_staged_re_encoded_and_matching(box, pki):
    ca, pair = pki
    rest = ca.issue("*.demo.ns.svc.cluster.local")
    box.mount({**seed_files(ca, pair), "rest.crt": rest.cert_pem + b"trailing junk\n", "rest.key": rest.key_pem})
    env = box.env(PATRONI_RESTAPI_CERTFILE=str(box.certs / "rest.crt"),
                  PATRONI_RESTAPI_KEYFILE=str(box.certs / "rest.key"))
    result = run_stub(box, env)
    assert result.returncode == 0, result.output
    names = os.listdir(box.runtime / "tls")
    cert = _staged(box, next(n for n in names if "restapi_certfile" in n))
    key = _staged(box, next(n for n in names if "restapi_keyfile" in n))
    assert b"junk" not in cert
    assert key_matches(load_private_key(key, None), load_certificates(cert)[0])
    key_file = box.runtime / "tls" / next(n for n in names if "restapi_keyfile" in n)
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
