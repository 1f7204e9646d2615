"""Certificate rotation on a running verify-full cluster: new certificates served without restarts or failed queries."""

from __future__ import annotations

import time

import pytest

from tests.support.cluster import LocalCluster, TestCA, wait_for
from tests.support.load import QueryLoad
from tests.support.wire import https_certificate, postgres_certificate


def serving(member, serial: int) -> bool:
    return (postgres_certificate(member.host, member.pg_port).serial_number == serial
            and https_certificate(member.host, member.api_port).serial_number == serial)


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(mode="verify-full", members=2, scope="rot", base_ip=81) as c:
        c.write_client_ca()
        yield c


def rotate(cluster, member, pair, ca_pem=None) -> None:
    member.pair = pair
    cluster.write_cert_dir(member, ca_pem=ca_pem)


def test_rotating_every_member_serves_the_new_serial_with_no_failed_query(cluster):
    with QueryLoad(cluster) as load:
        time.sleep(1)
        new = {m.name: cluster.ca.issue(m.host, cn=m.name) for m in cluster.members}
        for member in cluster.members:
            rotate(cluster, member, new[member.name])
        for member in cluster.members:
            wait_for(f"{member.name} serving the new certificate on 5432 and the REST port",
                     lambda m=member: serving(m, new[m.name].cert.serial_number), 30, 0.2)
        time.sleep(1)
    assert load.failures == []
    assert load.ok > 10
    for member in cluster.members:
        assert member.proc.poll() is None  # no restart: the same Patroni process
        assert "new TLS material checked and staged" in member.log()


def test_broken_certificate_is_refused_and_a_fix_is_picked_up(cluster):
    member = cluster.members[0]
    good = member.pair
    before = postgres_certificate(member.host).serial_number
    other = cluster.ca.issue(member.host, cn=member.name)
    from tests.support.pki import Pair
    mismatched = Pair(other.cert_pem, good.key_pem, other.cert, good.key)  # key of another certificate
    log_size = len(member.log())
    with QueryLoad(cluster) as load:
        rotate(cluster, member, mismatched)
        wait_for("the refusal in the log", lambda: "refused new TLS material" in member.log()[log_size:], 30, 0.2)
        assert "does not belong to the certificate" in member.log()[log_size:]
        time.sleep(2)
        assert postgres_certificate(member.host).serial_number == before
        assert https_certificate(member.host, member.api_port).serial_number == before
        fixed = cluster.ca.issue(member.host, cn=member.name)
        rotate(cluster, member, fixed)
        wait_for("the fixed certificate served", lambda: serving(member, fixed.cert.serial_number), 30, 0.2)
    assert load.failures == []


def test_expired_or_unnamed_certificates_are_refused(cluster):
    member = cluster.members[1]
    before = postgres_certificate(member.host).serial_number
    import datetime
    month_ago = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=30)
    for bad, reason in ((cluster.ca.issue(member.host, days=2, now=month_ago, cn=member.name), "expired"),
                        (cluster.ca.issue("127.0.0.250", cn=member.name), "does not cover")):
        log_size = len(member.log())
        rotate(cluster, member, bad)
        wait_for(f"refusal ({reason})", lambda: reason in member.log()[log_size:], 30, 0.2)
        assert postgres_certificate(member.host).serial_number == before
    good = cluster.ca.issue(member.host, cn=member.name)
    rotate(cluster, member, good)
    wait_for("the good certificate served", lambda: serving(member, good.cert.serial_number), 30, 0.2)


def test_ca_rotation_through_a_bundle_without_a_failed_connection(cluster, tmp_path):
    old_ca, new_ca = cluster.ca, TestCA("rot new CA")
    bundle = old_ca.cert_pem + new_ca.cert_pem
    cluster.write_client_ca(bundle)  # clients trust both during the change
    with QueryLoad(cluster) as load:
        # 1. every member trusts both CAs; server certificates still from the old CA
        for member in cluster.members:
            rotate(cluster, member, member.pair, ca_pem=bundle)
        for member in cluster.members:
            wait_for("bundle staged", lambda m=member: "2 certificate" in m.log() or _staged_ca(m) == bundle, 30, 0.2)
        # 2. roll server certificates to the new CA
        new = {m.name: new_ca.issue(m.host, cn=m.name) for m in cluster.members}
        for member in cluster.members:
            rotate(cluster, member, new[member.name], ca_pem=bundle)
        for member in cluster.members:
            wait_for("new-CA certificate served", lambda m=member: serving(m, new[m.name].cert.serial_number), 30, 0.2)
        # 3. drop the old CA
        for member in cluster.members:
            rotate(cluster, member, new[member.name], ca_pem=new_ca.cert_pem)
        for member in cluster.members:
            wait_for("old CA dropped", lambda m=member: _staged_ca(m) == new_ca.cert_pem, 30, 0.2)
        time.sleep(1)
    assert load.failures == []
    cluster.ca = new_ca
    cluster.write_client_ca(new_ca.cert_pem)
    # Replication reconnects with the new trust as well.
    rows = cluster.query(cluster.leader(), "SELECT s.ssl FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid)")
    assert rows == [(True,)]


def _staged_ca(member) -> bytes:
    import os
    with open(os.path.join(member.runtime_dir, "tls", "ca.crt"), "rb") as handle:
        return handle.read()
