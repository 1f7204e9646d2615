"""check says "would start" only when PostgreSQL and libpq would accept the set: the real `check` over sets that
OpenSSL (as libpq and PostgreSQL 15 use it) or libpq's own name check refuses.

Where OpenSSL decides, the expectation is grounded first with `openssl verify` on the same files, so the case
cannot be wrong about OpenSSL. The chain and key rules live in entrypoint/pki/verify.py (held to real libpq by
tests/differential).
"""

from __future__ import annotations

import datetime as dt
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from tests.adversarial.conftest import WILDCARD, assert_refused, invoke, seed_files
from tests.support.box import NODE
from tests.support.pki import BACKDATE, NOW, issue_leaf, new_key, pem_cert


def _not_a_ca(name: str, issuer=None) -> tuple:
    """A certificate that signs others but says CA:FALSE; self-signed unless `issuer` (cert, key) is given."""
    key = new_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    signer_cert, signer_key = issuer or (None, key)
    cert = (x509.CertificateBuilder().subject_name(subject)
            .issuer_name(signer_cert.subject if signer_cert else subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - BACKDATE).not_valid_after(NOW + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
            .sign(signer_key, hashes.SHA256()))
    return cert, key


def _openssl_verify(tmp_path, ca_pem: bytes, leaf_pem: bytes, *flags: str) -> subprocess.CompletedProcess:
    (tmp_path / "ca.pem").write_bytes(ca_pem)
    (tmp_path / "leaf.pem").write_bytes(leaf_pem)
    return subprocess.run(["openssl", "verify", *flags, "-CAfile", str(tmp_path / "ca.pem"),
                           str(tmp_path / "leaf.pem")], capture_output=True, text=True, timeout=10)


def test_an_issuer_without_ca_true_is_refused_at_verify_ca(box, tmp_path):
    root, root_key = _not_a_ca("root without CA:TRUE")
    leaf = issue_leaf(root, root_key, (WILDCARD,), new_key())
    grounded = _openssl_verify(tmp_path, pem_cert(root), leaf.cert_pem)
    assert grounded.returncode != 0 and "invalid CA certificate" in grounded.stdout + grounded.stderr
    box.mount({"ca.crt": pem_cert(root), "server.crt": leaf.cert_pem, "server.key": leaf.key_pem})
    assert_refused(invoke(["check"], box.env(PGSSLMODE="verify-ca")), "PGSSLCERT", stdout_ok=True)


def test_an_intermediate_without_ca_true_is_refused_at_verify_full(box, tmp_path, pki):
    ca, _ = pki
    middle, middle_key = _not_a_ca("intermediate without CA:TRUE", issuer=(ca.cert, ca.key))
    leaf = issue_leaf(middle, middle_key, (WILDCARD,), new_key())
    chain = leaf.cert_pem + pem_cert(middle)
    grounded = _openssl_verify(tmp_path, ca.cert_pem, leaf.cert_pem, "-untrusted", _write(tmp_path, pem_cert(middle)))
    assert grounded.returncode != 0 and "invalid CA certificate" in grounded.stdout + grounded.stderr
    box.mount({"ca.crt": ca.cert_pem, "server.crt": chain, "server.key": leaf.key_pem})
    assert_refused(invoke(["check"], box.env()), "PGSSLCERT", stdout_ok=True)


def _write(tmp_path, data: bytes) -> str:
    path = tmp_path / "untrusted.pem"
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize("mode", ["require", "verify-full"])
def test_an_rsa_1024_leaf_is_refused(box, tmp_path, pki, mode):
    """PostgreSQL refuses to load it at OpenSSL's default security level ("ee key too small")."""
    ca, _ = pki
    leaf = ca.issue(WILDCARD, key_type="rsa-1024")
    grounded = _openssl_verify(tmp_path, ca.cert_pem, leaf.cert_pem, "-auth_level", "2")
    assert grounded.returncode != 0 and "too weak" in grounded.stdout + grounded.stderr
    box.mount({"ca.crt": ca.cert_pem, "server.crt": leaf.cert_pem, "server.key": leaf.key_pem})
    assert_refused(invoke(["check"], box.env(PGSSLMODE=mode)), "PGSSLCERT", stdout_ok=True)


def test_control_the_grounding_accepts_a_sound_set(tmp_path, pki):
    """The same openssl verify calls accept the suite's ordinary CA and leaf, so their refusals above mean it."""
    ca, pair = pki
    assert _openssl_verify(tmp_path, ca.cert_pem, pair.cert_pem, "-auth_level", "2").returncode == 0
    assert _openssl_verify(tmp_path, ca.cert_pem, ca.issue(WILDCARD, key_type="rsa-2048").cert_pem,
                           "-auth_level", "2").returncode == 0


# --- Names as libpq matches them ----------------------------------------------------------------------

def test_a_connect_address_with_a_trailing_dot_is_not_covered_by_the_name_without_it(box):
    """libpq compares the host with each dNSName as text (fe-secure-common.c): it does not strip a trailing dot."""
    result = invoke(["check"], box.env(PATRONI_POSTGRESQL_CONNECT_ADDRESS=f"{NODE}.:5432"))
    assert_refused(result, f"{NODE}.", "does not cover", stdout_ok=True)


def test_a_san_with_a_trailing_dot_does_not_cover_the_name_without_it(box, pki):
    ca, _ = pki
    leaf = ca.issue(WILDCARD + ".", "localhost")
    box.mount({**seed_files(ca, leaf)})
    assert_refused(invoke(["check"], box.env()), NODE, "does not cover", stdout_ok=True)


def test_a_rest_api_connect_address_with_a_trailing_dot_is_refused(box):
    result = invoke(["check"], box.env(PATRONI_RESTAPI_CONNECT_ADDRESS=f"{NODE}.:8008"))
    assert_refused(result, "PATRONI_RESTAPI_CONNECT_ADDRESS", "does not cover", stdout_ok=True)


def test_control_the_same_names_without_the_dot_would_start(box):
    result = invoke(["check"], box.env(PATRONI_RESTAPI_CONNECT_ADDRESS=f"{NODE}:8008"))
    assert result.returncode == 0 and "would start" in result.stdout, result.output
