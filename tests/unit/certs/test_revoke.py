"""certs revoke and the CRL certs generate writes: checked with openssl, refusals leave ca.crl untouched."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from entrypoint.pki.crl import load_crls

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def certs(cwd, *args, env=None):
    return subprocess.run([sys.executable, "-m", "entrypoint", "certs", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": REPO, **(env or {})})


def openssl(*args):
    return subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def pki(tmp_path):
    result = certs(tmp_path, "generate", "--client", "app")
    assert result.returncode == 0, result.stderr
    return tmp_path / "certs"


def test_generate_writes_an_empty_signed_crl_with_a_long_next_update(pki):
    assert openssl("crl", "-verify", "-noout", "-CAfile", str(pki / "ca.crt"), "-in", str(pki / "ca.crl")).returncode == 0
    (crl,) = load_crls((pki / "ca.crl").read_bytes())
    assert list(crl) == [] and (crl.next_update_utc - crl.last_update_utc).days >= 3649
    verify = openssl("verify", "-crl_check", "-CAfile", str(pki / "ca.crt"), "-CRLfile", str(pki / "ca.crl"),
                     str(pki / "server.crt"))
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_revoking_a_certificate_adds_it_and_keeps_earlier_entries(pki):
    first = certs(pki.parent, "revoke", "--cert", str(pki / "client-app.crt"), "--reason", "keyCompromise")
    assert first.returncode == 0, first.stderr
    assert "kubectl create secret generic citusdemo-ssl-certs" in first.stdout
    assert "--from-file=ca.crl=certs/ca.crl" in first.stdout and "kubectl apply -f -" in first.stdout
    second = certs(pki.parent, "revoke", "--cert", str(pki / "server.crt"))
    assert second.returncode == 0, second.stderr
    (crl,) = load_crls((pki / "ca.crl").read_bytes())
    assert len(list(crl)) == 2
    assert openssl("crl", "-verify", "-noout", "-CAfile", str(pki / "ca.crt"), "-in", str(pki / "ca.crl")).returncode == 0
    for name in ("client-app.crt", "server.crt"):
        verify = openssl("verify", "-crl_check", "-CAfile", str(pki / "ca.crt"), "-CRLfile", str(pki / "ca.crl"),
                         str(pki / name))
        assert verify.returncode != 0 and "certificate revoked" in verify.stdout + verify.stderr


def test_revoke_by_serial_and_refresh(pki):
    serial = openssl("x509", "-noout", "-serial", "-in", str(pki / "client-app.crt")).stdout.split("=")[1].strip()
    assert certs(pki.parent, "revoke", "--serial", serial.lower()).returncode == 0
    before = load_crls((pki / "ca.crl").read_bytes())[0]
    refreshed = certs(pki.parent, "revoke", "--refresh", "--next-update", "30")
    assert refreshed.returncode == 0 and "re-signed" in refreshed.stdout
    after = load_crls((pki / "ca.crl").read_bytes())[0]
    assert [e.serial_number for e in after] == [e.serial_number for e in before]
    assert (after.next_update_utc - after.last_update_utc).days in (29, 30)


def _unchanged_after(pki, *args) -> subprocess.CompletedProcess:
    before = (pki / "ca.crl").read_bytes()
    result = certs(pki.parent, "revoke", *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert (pki / "ca.crl").read_bytes() == before
    assert "nothing was written" in result.stderr and "fix:" in result.stderr
    return result


def test_a_certificate_from_another_ca_is_refused(pki, tmp_path):
    other = tmp_path / "other"
    assert certs(tmp_path, "generate", "--out-dir", str(other)).returncode == 0
    assert "not by this CA" in _unchanged_after(pki, "--cert", str(other / "server.crt")).stderr


def test_an_already_revoked_serial_is_refused(pki):
    assert certs(pki.parent, "revoke", "--cert", str(pki / "server.crt")).returncode == 0
    assert "already revoked" in _unchanged_after(pki, "--cert", str(pki / "server.crt")).stderr


def test_a_missing_ca_key_is_refused(pki):
    os.unlink(pki / "ca.key")
    assert "ca.key" in _unchanged_after(pki, "--cert", str(pki / "server.crt")).stderr


@pytest.mark.parametrize("args, words", [(["--serial", "zz"], "not a positive hex"), (["--serial", "0"], "positive"),
                                         (["--serial", "f" * 41], "at most 159 bits"),
                                         (["--serial", "f" * 5000], "at most 159 bits"),
                                         (["--refresh", "--next-update", "0"], "out of range")])
def test_bad_flags_are_refused(pki, args, words):
    assert words in _unchanged_after(pki, *args).stderr


def test_a_fifo_as_the_certificate_is_refused_without_blocking(pki, tmp_path):
    os.mkfifo(tmp_path / "fifo.crt")
    assert "FIFO" in _unchanged_after(pki, "--cert", str(tmp_path / "fifo.crt")).stderr


def test_per_member_pairs_are_san_exact_and_revocable_one_by_one(tmp_path):
    result = certs(tmp_path, "generate", "--per-member", "--groups", "2", "--coordinator-replicas", "2",
                   "--worker-replicas", "1")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "certs"
    assert sorted(os.listdir(out)) == ["ca.crl", "ca.crt", "ca.key", "citusdemo-0-0.crt", "citusdemo-0-0.key",
                                       "citusdemo-0-1.crt", "citusdemo-0-1.key", "citusdemo-1-0.crt",
                                       "citusdemo-1-0.key"]
    text = openssl("x509", "-noout", "-ext", "subjectAltName", "-in", str(out / "citusdemo-1-0.crt")).stdout
    assert "DNS:citusdemo-1-0.citusdemo.default.svc.cluster.local" in text and "*" not in text
    assert "DNS:citusdemo-workers.default.svc" in text and "citusdemo-0-0" not in text
    assert certs(tmp_path, "revoke", "--cert", str(out / "citusdemo-0-1.crt")).returncode == 0
    ok = openssl("verify", "-crl_check", "-CAfile", str(out / "ca.crt"), "-CRLfile", str(out / "ca.crl"),
                 str(out / "citusdemo-0-0.crt"))
    assert ok.returncode == 0


def test_per_member_refuses_a_secret_that_would_carry_every_key(tmp_path):
    result = certs(tmp_path, "generate", "--per-member", "--k8s-secret")
    assert result.returncode == 2 and "every member's key" in result.stderr
    assert not (tmp_path / "certs").exists()



def _der(crl) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding
    return crl.public_bytes(Encoding.DER)


def _ca_key(directory):
    from cryptography import x509
    return x509.load_pem_x509_certificate((directory / "ca.crt").read_bytes()).public_key()


@pytest.mark.parametrize("theirs_first", [True, False])
def test_during_a_ca_rotation_only_this_cas_crl_is_re_signed_and_the_other_is_kept(pki, tmp_path, theirs_first):
    """ca.crl holds one CRL per CA of the bundle; revoking must not drop the other CA's (members would refuse)."""
    other = tmp_path / "other"
    assert certs(tmp_path, "generate", "--out-dir", str(other)).returncode == 0
    (theirs,) = load_crls((other / "ca.crl").read_bytes())
    parts = [(other / "ca.crl").read_bytes(), (pki / "ca.crl").read_bytes()]
    (pki / "ca.crl").write_bytes(b"".join(parts if theirs_first else parts[::-1]))
    result = certs(pki.parent, "revoke", "--serial", "1234")
    assert result.returncode == 0, result.stderr
    kept = load_crls((pki / "ca.crl").read_bytes())
    assert len(kept) == 2
    still, mine = kept if theirs_first else kept[::-1]  # each stays in its place
    assert _der(still) == _der(theirs)  # the other CA's, byte for byte (both CAs carry the same name)
    assert mine.is_signature_valid(_ca_key(pki)) and [e.serial_number for e in mine] == [0x1234]
    bundle = tmp_path / "bundle.crt"
    bundle.write_bytes((pki / "ca.crt").read_bytes() + (other / "ca.crt").read_bytes())
    for cert, ok in ((other / "server.crt", True), (pki / "server.crt", True)):
        verify = openssl("verify", "-crl_check_all", "-CAfile", str(bundle), "-CRLfile", str(pki / "ca.crl"),
                         str(cert))
        assert (verify.returncode == 0) == ok, verify.stdout + verify.stderr
