"""boot.nudge's pure parts: the no-op patch it sends Patroni, and matching pg_stat_ssl rows against CRLs."""

from __future__ import annotations

import json

from cryptography import x509
from cryptography.x509.oid import NameOID

from entrypoint.boot.nudge import _noop_patch
from entrypoint.pki.crl import is_revoked, load_crls, pg_issuer, revoked_pairs
from tests.support.pki import TestCA


def test_the_patch_names_a_key_that_holds_an_object_so_nothing_changes():
    assert json.loads(_noop_patch({"ttl": 30, "postgresql": {"use_slots": True}, "citus": {}})) == {"postgresql": {}}
    assert json.loads(_noop_patch({"ttl": 30, "standby_cluster": {"host": "x"}})) == {"standby_cluster": {}}


def test_no_patch_when_every_patch_would_write_the_dcs():
    assert _noop_patch({"ttl": 30, "loop_wait": 10}) is None
    assert _noop_patch(None) is None and _noop_patch([1]) is None


def test_issuer_is_spelled_as_pg_stat_ssl_spells_it():
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"), x509.NameAttribute(NameOID.COMMON_NAME, "a,b")])
    assert pg_issuer(name) == "/C=DE/CN=a\\,b"  # certificate order, OpenSSL short names, RFC 2253 escapes


def test_revoked_matches_serial_and_issuer_even_when_pg_truncated_the_name():
    ca = TestCA("a CA name long enough for pg_stat_ssl to cut it at 63 bytes ".ljust(64, "x"))
    pair = ca.issue("db.example")
    revoked = revoked_pairs(load_crls(ca.crl([pair])))
    full = pg_issuer(ca.cert.subject)
    assert is_revoked(revoked, full, pair.cert.serial_number)
    assert is_revoked(revoked, full[:63], pair.cert.serial_number)
    assert not is_revoked(revoked, full, pair.cert.serial_number + 1)
    assert not is_revoked(revoked, "/CN=another CA", pair.cert.serial_number)
    assert not is_revoked(revoked, "", pair.cert.serial_number)


def test_a_short_issuer_is_the_whole_name_not_a_prefix():
    """Another CA whose name begins like this one's (and whose serials collide) is not revoked by its CRL."""
    ca = TestCA("citusdemo-ca-2027")
    pair = ca.issue("db.example")
    revoked = revoked_pairs(load_crls(ca.crl([pair])))
    full = pg_issuer(ca.cert.subject)
    assert is_revoked(revoked, full, pair.cert.serial_number)
    assert not is_revoked(revoked, full[:-5], pair.cert.serial_number)  # "/CN=citusdemo-ca"
