"""pki.verify: OpenSSL's verdict on a chain, in memory.

The corpus of tests/differential, whose verdicts a real PostgreSQL 15 and libpq 15 confirm
on every run there, is the expected answer here too: what `check` asks of pki (key fits,
key_problem, chain_problem for each purpose, the leaf's dates, name_covered) must add up to
libpq's verdict for every set, without a server.
"""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519

from entrypoint.pki.keys import key_matches
from entrypoint.pki.names import name_covered, same_name
from entrypoint.pki.verify import (
    build_path,
    ca_kind,
    chain_problem,
    file_problem,
    key_problem,
    security_bits,
    self_signed,
)
from tests.differential.corpus import NOW, CertSet, Spec, corpus, intermediate, key, leaf, make, root


def pki_verdict(s: CertSet) -> bool:
    """What check_material concludes from pki for this set at verify-full (mutual sets: both purposes)."""
    purposes = ("server", "client") if s.mutual else ("server",)
    return (key_matches(s.key, s.leaf) and key_problem(s.leaf) is None
            and all(chain_problem(s.chain, s.cas, p) is None for p in purposes)
            and s.leaf.not_valid_before_utc <= NOW <= s.leaf.not_valid_after_utc
            and name_covered(s.leaf, s.host))


@pytest.mark.parametrize("certset", corpus(), ids=lambda s: s.name)
def test_pki_gives_libpqs_verdict(certset):
    assert pki_verdict(certset) is certset.libpq, certset.why


def test_an_unknown_purpose_is_a_programming_error():
    ca = root()
    with pytest.raises(ValueError):
        chain_problem([leaf(ca).cert], [ca.cert], "peer")


def test_a_stranger_keeps_the_message_material_completes():
    """material.py appends the CA file path: the reason ends where the path belongs."""
    problem = chain_problem([leaf(root()).cert], [root("Corpus Other Root", label="other").cert], "server")
    assert problem == "was not signed by any CA in the root certificate file"


def test_every_reason_is_one_line_that_ends_before_the_ca_path():
    for s in corpus():
        for purpose in ("server", "client"):
            problem = chain_problem(s.chain, s.cas, purpose)
            assert problem is None or ("\n" not in problem and problem.endswith("root certificate file")), problem


def test_the_leafs_own_dates_are_left_to_the_caller():
    ca = root()
    expired = leaf(ca, not_before=NOW - 30 * dt.timedelta(days=1), not_after=NOW - dt.timedelta(days=1))
    assert chain_problem([expired.cert], [ca.cert], "server") is None


def test_intermediate_dates_are_judged_at_the_given_time():
    ca = root()
    inter = intermediate(ca, not_after=NOW + dt.timedelta(days=10))
    chain = [leaf(inter).cert, inter.cert]
    assert chain_problem(chain, [ca.cert], "server") is None
    later = chain_problem(chain, [ca.cert], "server", now=NOW + dt.timedelta(days=11))
    assert later is not None and "expired on" in later


def test_trusted_first_takes_the_root_files_copy():
    ca = root()
    inter = intermediate(ca)
    path, problem = build_path([leaf(inter).cert, inter.cert, ca.cert], [ca.cert], NOW)
    assert problem is None and path[-1] == ca.cert and len(path) == 3


def test_a_self_signed_certificate_is_trusted_only_as_itself():
    """Same name and key, another certificate: OpenSSL calls it a mimic, not the anchor."""
    spec = Spec(ca=True, ku=("digital_signature", "key_cert_sign"), label="self")
    mine, other = make(spec), make(spec)
    assert chain_problem([mine.cert], [mine.cert], "server") is None
    assert "self-signed" in chain_problem([mine.cert], [other.cert], "server")


def test_ca_kind_follows_x509_check_ca():
    assert ca_kind(root().cert) == 1
    assert ca_kind(root("ku only", ca=None).cert) == 4
    assert ca_kind(root("v1", v1=True).cert) == 3
    assert ca_kind(root("nothing", ca=None, ku=None).cert) == 0
    assert ca_kind(root("no sign", ku=("crl_sign",)).cert) == 0


def test_self_signed_needs_matching_names_and_key_type():
    ca = root()
    assert self_signed(ca.cert) and not self_signed(leaf(ca).cert)


@pytest.mark.parametrize("make_key, bits", [
    (lambda: key("rsa1024"), 80), (lambda: key("rsa2048"), 112), (lambda: key("rsa3072"), 128),
    (lambda: key("p192"), 80), (lambda: key("p256"), 128), (lambda: key("p384"), 192), (lambda: key("p521"), 256),
    (lambda: ed25519.Ed25519PrivateKey.generate(), 128),
])
def test_security_bits_follow_openssl(make_key, bits):
    assert security_bits(make_key().public_key()) == bits


def test_key_problem_names_the_key_and_the_level():
    weak = leaf(root(), kind="rsa1024").cert
    assert "RSA-1024" in key_problem(weak) and "ee key too small" in key_problem(weak)
    assert "secp256k1" in key_problem(leaf(root(), kind="k256").cert)
    assert key_problem(leaf(root()).cert) is None


def test_names_compare_as_openssl_canonicalises_them():
    a = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Corpus  Root CA")])
    b = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "corpus root ca")])
    assert same_name(a, b) and not same_name(a, x509.Name([]))



def test_file_problem_covers_every_certificate_of_the_file():
    """PostgreSQL refuses a server.crt with a weak extra certificate even at require, where no chain is checked."""
    ca = root()
    weak = root("Corpus unrelated RSA-1024 CA", kind="rsa1024")
    assert file_problem([leaf(ca).cert]) is None
    assert "security level 2" in file_problem([leaf(ca).cert, weak.cert])
    assert "ee key too small" in file_problem([leaf(ca, kind="rsa1024").cert])
