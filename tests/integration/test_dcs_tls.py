"""Patroni's DCS over mutual TLS, with the etcd client certificate in a root-only directory: the entrypoint stages it."""

from __future__ import annotations

import os
import pwd
import stat

import pytest

from tests.support.cluster import LocalCluster

ETCD_VARS = ("PATRONI_ETCD3_CACERT", "PATRONI_ETCD3_CERT", "PATRONI_ETCD3_KEY")


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(mode="verify-full", members=1, scope="dcstls", base_ip=95, etcd_tls=True) as c:
        yield c


def _environ(pid: int) -> dict:
    with open(f"/proc/{pid}/environ", "rb") as handle:
        pairs = [item.split(b"=", 1) for item in handle.read().split(b"\0") if b"=" in item]
    return {k.decode(): v.decode() for k, v in pairs}


def test_member_leads_through_an_etcd_that_demands_client_certificates(cluster):
    member = cluster.members[0]
    assert cluster.member_state(member)["role"] in ("primary", "master")
    assert stat.S_IMODE(os.stat(cluster.etcd.tls_dir).st_mode) == 0o700  # postgres cannot enter it


def test_patroni_reads_private_staged_copies_of_the_etcd_files(cluster):
    member = cluster.members[0]
    postgres = pwd.getpwnam("postgres")
    env = _environ(member.proc.pid)
    tls = os.path.join(member.runtime_dir, "tls")
    for var in ETCD_VARS:
        path = env[var]
        assert os.path.dirname(path) == tls, var
        st = os.stat(path)
        # Keys private; certificates public (re-encoded from what was checked, so nothing else rides along).
        assert stat.S_IMODE(st.st_mode) == (0o600 if var.endswith("_KEY") else 0o644), var
        assert st.st_uid == postgres.pw_uid, var
    with open(env["PATRONI_ETCD3_KEY"], "rb") as staged, \
            open(os.path.join(cluster.etcd.tls_dir, "client.key"), "rb") as mounted:
        assert staged.read() == mounted.read()
