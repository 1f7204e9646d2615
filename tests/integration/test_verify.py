"""`patroni-citus-k8s verify` against real clusters: a clean verify-full cluster, plaintext, expiry, other CAs, uncovered names, Citus links."""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import urllib.request

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.cluster import ENTRYPOINT, SUPERUSER_PASSWORD, LocalCluster, TestCA, citus_available, wait_for

# 127.0.0.150-159 are this file's; nothing listens on GHOST_HOST.
GHOST_HOST = "127.0.0.159"


class OddCertCluster(LocalCluster):
    """A cluster whose members serve certificates the harness's own checks would refuse, on purpose.

    The harness reaches the REST API with its CA and checks names; here those are
    exactly what verify must catch, so the harness itself does not check them.
    """

    def api_context(self, member=None):
        ctx = super().api_context(member)
        if ctx is not None:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx


def verify(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the installed command as an operator would; never raises on a non-zero exit."""
    return subprocess.run([ENTRYPOINT, "verify", *args], capture_output=True, text=True, timeout=180,
                          env=env or {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})


def verify_json(*args: str) -> tuple:
    """Run verify --json; returns (exit status, parsed report)."""
    result = verify(*args, "--json")
    assert result.returncode in (0, 1), result.stdout + result.stderr
    return result.returncode, json.loads(result.stdout)


def codes(report: dict, member: str | None = "any") -> set:
    return {f["code"] for f in report["findings"] if member == "any" or f["member"] == member}


def etcd_put(cluster: LocalCluster, key: str, value: str) -> None:
    """Write a key through etcd's v3 HTTP gateway (no etcdctl needed)."""
    body = json.dumps({"key": base64.b64encode(key.encode()).decode(),
                       "value": base64.b64encode(value.encode()).decode()}).encode()
    urllib.request.urlopen(urllib.request.Request(f"{cluster.etcd.url}/v3/kv/put", data=body), timeout=5).read()


def etcd_delete(cluster: LocalCluster, key: str) -> None:
    body = json.dumps({"key": base64.b64encode(key.encode()).decode()}).encode()
    urllib.request.urlopen(urllib.request.Request(f"{cluster.etcd.url}/v3/kv/deleterange", data=body), timeout=5).read()


def listed_members(cluster: LocalCluster) -> set:
    status, body = cluster.api_get(cluster.members[0], "cluster")
    return {m["name"] for m in body.get("members", [])} if status == 200 else set()


SEED_VIEW = """
CREATE OR REPLACE VIEW ssl_connections AS
SELECT usename, client_addr, ssl, version as ssl_version, cipher, bits
FROM pg_stat_ssl JOIN pg_stat_activity USING (pid)
WHERE ssl = true
"""


# ---- a clean verify-full cluster -------------------------------------------------------------

@pytest.fixture(scope="class")
def clean():
    with LocalCluster(mode="verify-full", members=2, scope="vclean", base_ip=150) as c:
        c.write_client_ca()
        yield c


class TestCleanVerifyFullCluster:
    """A clean verify-full cluster: no findings, and every output and failure mode of the command."""

    def test_clean_verify_full_cluster_has_no_findings(self, clean):
        with clean.connect(clean.leader()):  # an encrypted client connection to count
            result = verify(clean.dsn(clean.members[0]))
        assert result.returncode == 0, result.stdout + result.stderr
        assert "no findings" in result.stdout
        for member in clean.members:
            assert member.name in result.stdout
        assert SUPERUSER_PASSWORD not in result.stdout + result.stderr

    def test_json_reports_every_port_and_encrypted_links(self, clean):
        leader = clean.leader()
        with clean.connect(leader):
            status, report = verify_json(clean.dsn(clean.members[1]))
        assert status == 0 and report["findings"] == [] and report["exit_status"] == 0
        assert report["mode"] == "verify-full"
        members = {m["name"]: m for m in report["members"]}
        assert set(members) == {m.name for m in clean.members}
        for member in clean.members:
            observed = members[member.name]
            assert observed["sql_error"] is None and observed["ssl"] == "on"
            assert observed["plaintext_accepted"] is False  # pg_hba's hostnossl reject answered the probe
            assert {(s["service"], s["port"]) for s in observed["served"]} == {("postgres", 5432), ("restapi", 8008)}
            for served in observed["served"]:
                assert served["tls"] and served["name_covered"] and served["chains_to_ca"], served
                assert served["protocol"] in ("TLSv1.2", "TLSv1.3")
                assert served["subject"] == f"CN={member.name}" and served["ip_addresses"] == [member.host]
                assert 360 <= served["days_left"] <= 365
        primary = members[leader.name]
        assert primary["connection_counts"]["replication"] == {"encrypted": 1, "plaintext": 0}
        assert primary["connection_counts"]["client"]["encrypted"] >= 1
        assert primary["connection_counts"]["client"]["plaintext"] == 0
        replica = next(m for name, m in members.items() if name != leader.name)
        assert replica["link_modes"] == {"replication": "verify-full"}

    def test_prometheus_exposes_expiry_and_connection_counts(self, clean):
        result = verify(clean.dsn(clean.members[0]), "--prometheus")
        assert result.returncode == 0, result.stdout + result.stderr
        families = {f.name: f for f in text_string_to_metric_families(result.stdout)}
        assert families["pck_tls_certificate_expiry_seconds"].type == "gauge"

        def samples(name: str) -> dict:
            return {tuple(sorted(s.labels.items())): s.value for s in families[name].samples}

        expiry = samples("pck_tls_certificate_expiry_seconds")
        for member in clean.members:
            for service, port in (("postgres", 5432), ("restapi", 8008)):
                value = expiry[(("group", ""), ("member", member.name), ("port", str(port)), ("service", service))]
                assert 360 * 86400 < value <= 365 * 86400
        leader = clean.leader().name
        sessions = samples("pck_tls_sessions")
        assert sessions[(("encryption", "tls"), ("group", ""), ("link", "replication"), ("member", leader))] == 1
        assert sessions[(("encryption", "plaintext"), ("group", ""), ("link", "replication"), ("member", leader))] == 0
        assert sum(v for k, v in samples("pck_tls_findings").items() if ("severity", "error") in k) == 0

    def test_libpq_environment_is_the_default_connection(self, clean):
        member = clean.members[0]
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PGHOST": member.host, "PGUSER": "postgres",
               "PGDATABASE": "postgres", "PGPASSWORD": SUPERUSER_PASSWORD, "PGSSLMODE": "verify-full",
               "PGSSLROOTCERT": clean.write_client_ca()}
        result = verify(env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "judged against sslmode=verify-full" in result.stdout

    def test_a_member_listed_but_unreachable_is_a_finding(self, clean):
        """A member key in the DCS whose address nobody serves, as after a node vanished."""
        key = "/service/vclean/members/vclean-ghost"
        etcd_put(clean, key, json.dumps({"conn_url": f"postgres://{GHOST_HOST}:5432/postgres",
                                         "api_url": f"https://{GHOST_HOST}:8008/patroni",
                                         "state": "running", "role": "replica", "version": "4.1.5"}))
        try:
            wait_for("the ghost member listed by /cluster", lambda: "vclean-ghost" in listed_members(clean), 60)
            status, report = verify_json(clean.dsn(clean.members[0]), "--timeout", "2")
        finally:
            etcd_delete(clean, key)
        assert status == 1
        ghost = [f for f in report["findings"] if f["member"] == "vclean-ghost"]
        assert {f["code"] for f in ghost} == {"unreachable"}
        assert {f["where"] for f in ghost} == {f"postgres {GHOST_HOST}:5432", f"restapi {GHOST_HOST}:8008"}
        assert codes(report) == {"unreachable"}

    def test_a_wrong_rest_api_port_is_reported_and_the_seed_still_verified(self, clean):
        status, report = verify_json(clean.dsn(clean.members[0]), "--api-port", "1", "--timeout", "2")
        assert status == 1
        assert codes(report) == {"unreachable"}
        assert "did not answer /cluster" in report["findings"][0]["what"]
        assert [m["sql_error"] for m in report["members"]] == [None]

    def test_cannot_run_exits_2_with_what_where_and_fix_and_no_password(self, clean):
        member = clean.members[0]
        secret = "Pa55-w0rd-not-to-print"
        bad_syntax = verify(f"host={member.host} password={secret} nonsense")
        assert bad_syntax.returncode == 2
        assert "CONNINFO: is not a libpq connection string" in bad_syntax.stderr and "fix:" in bad_syntax.stderr
        assert secret not in bad_syntax.stdout + bad_syntax.stderr

        nobody = verify(f"host={GHOST_HOST} port=5432 user=postgres password={secret} connect_timeout=2")
        assert nobody.returncode == 2
        assert f"cannot connect to host={GHOST_HOST}" in nobody.stderr and "fix:" in nobody.stderr
        assert secret not in nobody.stdout + nobody.stderr

        wrong_password = verify(clean.dsn(member, password=secret + "x"))
        assert wrong_password.returncode == 2 and "password authentication failed" in wrong_password.stderr
        assert secret not in wrong_password.stdout + wrong_password.stderr

        flags = verify(clean.dsn(member), "--expiry-days", "-1", "--ca", "/nonexistent/ca.crt")
        assert flags.returncode == 2
        assert "--expiry-days: -1 is negative" in flags.stderr and "--ca /nonexistent/ca.crt: cannot read" in flags.stderr

    def test_the_seeds_replication_query_fails_and_the_corrected_one_works(self, clean):
        primary = clean.leader()
        with pytest.raises(psycopg.errors.UndefinedColumn):
            clean.query(primary, "SELECT client_addr, state, sync_state, ssl FROM pg_stat_replication")
        rows = clean.query(primary, "SELECT r.client_addr, r.state, r.sync_state, s.ssl, s.version "
                                    "FROM pg_stat_replication r JOIN pg_stat_ssl s ON s.pid = r.pid")
        assert len(rows) == 1 and rows[0][3] is True

    def test_install_view_replaces_the_seeds_view_and_is_idempotent(self, clean):
        primary = clean.leader()
        with clean.connect(primary) as conn:
            conn.execute(SEED_VIEW)  # what users of the seed guide already have: valid on PG15, but hides plaintext
        for _ in range(2):
            result = verify(clean.dsn(clean.members[0]), "--install-view")
            assert result.returncode == 0, result.stdout + result.stderr
            assert f"ssl_connections view created or replaced on {primary.name}" in result.stderr
        columns = [row[0] for row in clean.query(primary, "SELECT attname FROM pg_attribute WHERE attrelid = "
                                                          "'public.ssl_connections'::regclass AND attnum > 0 "
                                                          "ORDER BY attnum")]
        assert columns[:6] == ["usename", "client_addr", "ssl", "ssl_version", "cipher", "bits"]  # the seed's, first
        rows = clean.query(primary, "SELECT link, ssl, ssl_version FROM ssl_connections ORDER BY link")
        assert {row[0] for row in rows} == {"client", "replication"}  # this query's connection and the replica
        assert all(row[1] is True and row[2] in ("TLSv1.2", "TLSv1.3") for row in rows)
        replica = next(m for m in clean.members if m is not primary)
        wait_for("the view replicated to the replica",
                 lambda: clean.query(replica, "SELECT to_regclass('public.ssl_connections') IS NOT NULL")[0][0], 30)


# ---- prefer: plaintext allowed, one member's certificate expiring and from another CA -----------

@pytest.fixture(scope="class")
def mixed():
    cluster = OddCertCluster(mode="prefer", members=2, scope="vmixed", base_ip=152)
    odd = cluster.members[1]
    odd.pair = TestCA("another CA").issue(odd.host, days=5, cn=odd.name)
    with cluster as c:
        c.write_client_ca()
        yield c


class TestPlaintextExpiryAndOtherCA:
    """prefer, one member's certificate from another CA and expiring in 5 days."""

    @pytest.fixture
    def plaintext_client(self, mixed):
        """A client connected without TLS, which prefer allows and pg_hba accepts."""
        with mixed.connect(mixed.leader(), sslmode="disable", application_name="plaintext-app") as conn:
            yield conn

    def test_plaintext_client_is_counted_but_allowed_at_prefer(self, mixed, plaintext_client):
        leader = mixed.leader()
        status, report = verify_json(mixed.dsn(leader), "--expiry-days", "3")
        assert report["mode"] == "prefer"
        counts = next(m for m in report["members"] if m["name"] == leader.name)["connection_counts"]
        assert counts["client"]["plaintext"] == 1
        assert [m["plaintext_accepted"] for m in report["members"]] == [True, True]
        assert "plaintext_connection" not in codes(report)
        assert status == 1 and codes(report) == {"different_cas"}  # the odd member's CA, nothing else

    def test_plaintext_is_a_finding_when_the_mode_forbids_it(self, mixed, plaintext_client):
        leader = mixed.leader()
        status, report = verify_json(mixed.dsn(leader), "--mode", "verify-full", "--expiry-days", "3")
        assert status == 1
        plain = [f for f in report["findings"] if f["code"] == "plaintext_connection"]
        assert len(plain) == 1 and plain[0]["member"] == leader.name and plain[0]["where"] == "client"
        assert "1 plaintext client connection" in plain[0]["what"] and plain[0]["severity"] == "error"
        # Both members' pg_hba let plaintext through, and replication at prefer is weaker than verify-full.
        assert {f["member"] for f in report["findings"] if f["code"] == "plaintext_accepted"} == \
            {m.name for m in mixed.members}
        assert "link_mode_weaker" in codes(report)
        table = verify(mixed.dsn(leader), "--mode", "verify-full")
        assert table.returncode == 1 and "[plaintext_connection]" in table.stdout

    def test_expiring_certificate_is_a_warning_with_its_days(self, mixed):
        odd = mixed.members[1]
        status, report = verify_json(mixed.dsn(mixed.members[0]))
        assert status == 1
        expiring = [f for f in report["findings"] if f["code"] == "cert_expiring"]
        assert {(f["member"], f["where"]) for f in expiring} == {
            (odd.name, f"postgres {odd.host}:5432"), (odd.name, f"restapi {odd.host}:8008")}
        assert all(f["severity"] == "warning" and "expires in 4 days" in f["what"] for f in expiring)
        served = next(m for m in report["members"] if m["name"] == odd.name)["served"]
        assert {s["days_left"] for s in served} == {4}

    def test_members_with_different_cas_are_reported(self, mixed):
        status, report = verify_json(mixed.dsn(mixed.members[0]), "--expiry-days", "3")
        (finding,) = [f for f in report["findings"] if f["code"] == "different_cas"]
        assert "2 different CAs" in finding["what"] and "CN=another CA" in finding["what"]
        # Judged at verify-ca against the cluster's CA, the odd member does not chain to it.
        status, report = verify_json(mixed.dsn(mixed.members[0]), "--mode", "verify-ca", "--expiry-days", "3",
                                     "--ca", mixed.write_client_ca())
        chain = [f for f in report["findings"] if f["code"] == "not_chained"]
        assert {f["member"] for f in chain} == {mixed.members[1].name}


# ---- verify-ca: one member's certificate does not name it -------------------------------------

@pytest.fixture(scope="class")
def unnamed():
    cluster = OddCertCluster(mode="verify-ca", members=2, scope="vnames", base_ip=154)
    odd = cluster.members[1]
    odd.pair = cluster.ca.issue("somewhere-else.example", cn=odd.name)  # chains to the CA, lacks its address
    with cluster as c:
        c.write_client_ca()
        yield c


class TestUncoveredName:
    """verify-ca, one member's certificate chains to the CA but lacks the member's address."""

    def test_uncovered_name_is_fine_at_verify_ca(self, unnamed):
        status, report = verify_json(unnamed.dsn(unnamed.members[0]))
        assert status == 0, report["findings"]
        odd = next(m for m in report["members"] if m["name"] == unnamed.members[1].name)
        assert {s["name_covered"] for s in odd["served"]} == {False}

    def test_uncovered_name_is_a_finding_when_judged_at_verify_full(self, unnamed):
        odd = unnamed.members[1]
        status, report = verify_json(unnamed.dsn(unnamed.members[0]), "--mode", "verify-full")
        assert status == 1
        names = [f for f in report["findings"] if f["code"] == "name_not_covered"]
        assert {(f["member"], f["where"]) for f in names} == {
            (odd.name, f"postgres {odd.host}:5432"), (odd.name, f"restapi {odd.host}:8008")}
        assert all("name not covered" in f["what"] and "somewhere-else.example" in f["what"] for f in names)
        # Replication runs at verify-ca, weaker than the verify-full it is judged against.
        assert codes(report) == {"name_not_covered", "link_mode_weaker"}

    def test_a_ca_the_members_do_not_chain_to_is_reported(self, unnamed, tmp_path):
        other = tmp_path / "other-ca.crt"
        other.write_bytes(TestCA("unrelated CA").cert_pem)
        status, report = verify_json(unnamed.dsn(unnamed.members[0]), "--ca", str(other))
        assert status == 1
        assert {f["member"] for f in report["findings"] if f["code"] == "not_chained"} == \
            {m.name for m in unnamed.members}


# ---- mutual TLS: verify presents the connection's client certificate on both ports ----------------

def test_mutual_tls_cluster_is_verified_with_the_connections_client_certificate():
    with LocalCluster(mode="verify-full", members=1, client_cert_auth=True, scope="vmtls", base_ip=158) as c:
        c.write_client_ca()
        member = c.members[0]
        status, report = verify_json(c.dsn(member))  # the dsn carries sslcert and sslkey
        assert status == 0, report["findings"]
        assert {(s["service"], s["tls"], s["chains_to_ca"]) for s in report["members"][0]["served"]} == \
            {("postgres", True, True), ("restapi", True, True)}
        without = verify(c.dsn(member, sslcert=None, sslkey=None))
        assert without.returncode == 2 and "cannot connect" in without.stderr


# ---- Citus: coordinator-to-worker links ---------------------------------------------------------

@pytest.mark.citus
@pytest.mark.skipif(not citus_available(), reason="Citus is not installed (citus.so missing)")
def test_citus_coordinator_to_worker_links_are_encrypted():
    with LocalCluster(mode="verify-full", citus_groups=[0, 1], scope="vcitus", base_ip=156) as c:
        c.write_client_ca()
        coordinator, worker = c.members
        wait_for("the worker registered in pg_dist_node",
                 lambda: c.query(coordinator, "SELECT count(*) FROM pg_dist_node WHERE groupid = 1",
                                 dbname="citus")[0][0] == 1, 120)
        with c.connect(coordinator, dbname="citus") as conn:
            conn.execute("CREATE TABLE verify_probe (id bigint PRIMARY KEY)")
            conn.execute("SELECT create_distributed_table('verify_probe', 'id')")
            conn.execute("INSERT INTO verify_probe SELECT generate_series(1, 100)")
            assert conn.execute("SELECT count(*) FROM verify_probe").fetchone() == (100,)
            # This session keeps its connections to the worker open while verify looks.
            status, report = verify_json(c.dsn(coordinator, dbname="citus"), "--install-view")
            # Each primary got its own view (nothing propagated), and the worker's labels the link.
            links = c.query(worker, "SELECT link, ssl FROM ssl_connections WHERE link = 'citus'", dbname="citus")
            assert links and all(encrypted is True for _, encrypted in links)
        assert status == 0, report["findings"]
        assert report["citus"] is True
        members = {m["name"]: m for m in report["members"]}
        assert {m["group"] for m in members.values()} == {0, 1}
        on_worker = members[worker.name]["connection_counts"]["citus"]
        assert on_worker["encrypted"] >= 1 and on_worker["plaintext"] == 0
        assert members[coordinator.name]["link_modes"]["citus"] == "verify-full"
