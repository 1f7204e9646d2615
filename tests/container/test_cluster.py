"""The compose cluster at verify-full: what the entrypoint did in each container, and every link encrypted."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.container import harness
from tests.container.harness import CONFIG_FILE, STAGED_KEY, Cluster, fqdn

pytestmark = pytest.mark.container

MEMBERS = ["citusdemo-0-0", "citusdemo-0-1", "citusdemo-1-0", "citusdemo-2-0"]


def _other(member: str) -> str:
    """Return a member other than `member`, to connect from across the network."""
    return MEMBERS[1] if member == MEMBERS[0] else MEMBERS[0]


def _leaders(rows: list[dict]) -> dict:
    """Return {group: leader member} (group None without Citus)."""
    return {row.get("Group"): row["Member"] for row in rows if row["Role"] == "Leader"}


@pytest.mark.parametrize("member", MEMBERS)
def test_config_rendered_private_and_pointing_at_the_staged_key(cluster: Cluster, member):
    owner_mode = cluster.exec(member, "stat", "-c", "%U %a", CONFIG_FILE).stdout.split()
    assert owner_mode[0] == "postgres"
    assert int(owner_mode[1], 8) & 0o007 == 0, f"{CONFIG_FILE} is readable by others: {owner_mode[1]}"
    config = yaml.safe_load(cluster.exec(member, "cat", CONFIG_FILE).stdout)
    assert config["name"] == member
    assert config["postgresql"]["parameters"]["ssl"] in ("on", True)
    assert config["postgresql"]["parameters"]["ssl_key_file"] == STAGED_KEY
    assert config["restapi"]["keyfile"] == STAGED_KEY


@pytest.mark.parametrize("member", MEMBERS)
def test_staged_key_is_0600_and_owned_by_postgres(cluster: Cluster, member):
    assert cluster.exec(member, "stat", "-c", "%a %U %G", STAGED_KEY).stdout.split() == ["600", "postgres", "postgres"]


def test_members_see_the_secret_files_only_never_the_ca_key(cluster: Cluster):
    listing = cluster.exec(MEMBERS[0], "ls", "-A", harness.CERT_DIR).stdout.split()
    # ca.crl: the empty, signed CRL `certs generate` writes, which the certs service copies as a Secret's ca.crl.
    assert sorted(listing) == ["ca.crl", "ca.crt", "server.crt", "server.key"]


@pytest.mark.parametrize("member", MEMBERS)
def test_patroni_is_pid_1_running_as_postgres(cluster: Cluster, member):
    status = dict(line.split(":", 1) for line in cluster.exec(member, "cat", "/proc/1/status").stdout.splitlines())
    assert status["Uid"].split() == ["999"] * 4, status["Uid"]
    assert status["Gid"].split() == ["999"] * 4, status["Gid"]
    cmdline = cluster.exec(member, "cat", "/proc/1/cmdline").stdout.split("\0")
    assert any(arg.endswith("/patroni") for arg in cmdline), cmdline
    assert CONFIG_FILE in cmdline


def test_root_started_member_dropped_to_postgres(cluster: Cluster, docker):
    # The suite starts this member as root; it must look like every other one.
    user = harness.run([docker, "inspect", "-f", "{{.Config.User}}", cluster.container(harness.ROOT_MEMBER)]).stdout.strip()
    assert user in ("0:0", "0", "root")
    assert cluster.exec(harness.ROOT_MEMBER, "stat", "-c", "%U", "/var/lib/postgresql/data/pgdata").stdout.strip() == "postgres"


@pytest.mark.parametrize("member", MEMBERS)
def test_ssl_is_on_and_verify_full_connects_by_name(cluster: Cluster, member):
    out = cluster.psql(_other(member), fqdn(member),
                       "SHOW ssl; SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid();").stdout.split()
    assert out == ["on", "t"]


@pytest.mark.parametrize("member", MEMBERS)
def test_plaintext_tcp_is_refused(cluster: Cluster, member):
    proc = cluster.psql(_other(member), fqdn(member), "SELECT 1", sslmode="disable", check=False)
    assert proc.returncode != 0
    assert "no encryption" in proc.stderr, proc.stderr


def test_mutual_tls_refuses_a_client_without_a_certificate(cluster: Cluster):
    if not cluster.mtls:
        pytest.skip("mutual TLS is off in this cluster (PCK_CLIENT_CERT_AUTH unset)")
    for member in MEMBERS:
        proc = cluster.psql(_other(member), fqdn(member), "SELECT 1", client_cert=False, check=False)
        assert proc.returncode != 0
        assert "certificate" in proc.stderr, proc.stderr


def test_a_name_outside_the_certificate_is_refused(cluster: Cluster, docker):
    member = MEMBERS[0]
    ip = harness.run([docker, "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                      cluster.container(member)]).stdout.strip()
    proc = cluster.psql(_other(member), ip, "SELECT 1", check=False)
    assert proc.returncode != 0
    assert "does not match host name" in proc.stderr, proc.stderr


def test_replication_connections_are_encrypted(cluster: Cluster, members_rows):
    for group, leader in _leaders(members_rows).items():
        replicas = [r["Member"] for r in members_rows if r.get("Group") == group and r["Role"] != "Leader"]
        out = cluster.psql(leader, fqdn(leader),
                           "SELECT r.application_name, s.ssl, s.version FROM pg_stat_replication r "
                           "JOIN pg_stat_ssl s ON s.pid = r.pid ORDER BY 1").stdout.split()
        rows = [line.split("|") for line in out]
        assert sorted(row[0] for row in rows) == sorted(replicas), (group, rows)
        assert all(row[1] == "t" and row[2].startswith("TLSv1.") for row in rows), rows


def test_patronictl_talks_to_every_rest_api_over_https(cluster: Cluster, members_rows):
    # The seed's `patronictl list`, with no -c: the image points PATRONICTL_CONFIG_FILE at the rendered file.
    listed = json.loads(cluster.exec(MEMBERS[0], "patronictl", "list", "-f", "json").stdout)
    assert {row["Member"] for row in listed} == set(MEMBERS)
    # `version` asks each member's REST API (GET /patroni) with the ctl TLS settings.
    groups = sorted({row.get("Group") for row in members_rows}, key=lambda g: -1 if g is None else g)
    seen = set()
    for group in groups:
        args = ["version", "citusdemo"] + ([] if group is None else ["--group", str(group)])
        out = cluster.patronictl(MEMBERS[0], *args).stdout
        seen |= {m for m in MEMBERS if f"{m}: Patroni" in out}
    assert seen == set(MEMBERS)
    # And the REST API itself: HTTPS verified against the CA by name, plain HTTP not served,
    # and with mutual TLS no answer to a client without a certificate.
    script = (
        "import json, ssl, sys, urllib.request\n"
        "host, mtls = sys.argv[1], sys.argv[2] == 'true'\n"
        "def attempt(url, cert):\n"
        "    ctx = ssl.create_default_context(cafile='/etc/ssl/certs/postgresql/ca.crt')\n"
        f"    if cert: ctx.load_cert_chain('{harness.STAGED_CERT}', '{harness.STAGED_KEY}')\n"
        "    try:\n"
        "        return json.load(urllib.request.urlopen(url, context=ctx, timeout=10))['state']\n"
        "    except Exception:\n"
        "        return 'refused'\n"
        "print(json.dumps({'https': attempt(f'https://{host}:8008/patroni', mtls),\n"
        "                  'https-no-cert': attempt(f'https://{host}:8008/patroni', False),\n"
        "                  'http': attempt(f'http://{host}:8008/patroni', False)}))\n")
    expected = {"https": "running", "https-no-cert": "refused" if cluster.mtls else "running", "http": "refused"}
    for member in MEMBERS:
        out = cluster.exec(_other(member), "python3", "-c", script, fqdn(member), str(cluster.mtls).lower()).stdout
        assert json.loads(out) == expected, (member, out)


def test_citus_links_are_encrypted(cluster: Cluster, members_rows):
    if not cluster.citus:
        pytest.skip("plain Patroni layout (Citus absent from the base image, or PCK_CONTAINER_LAYOUT=plain): "
                    "no coordinator-to-worker links")
    coordinator = _leaders(members_rows)[0]
    nodes = cluster.psql(coordinator, fqdn(coordinator),
                         "SELECT nodename FROM pg_dist_node WHERE groupid > 0 AND noderole = 'primary' ORDER BY 1",
                         dbname="citus").stdout.split()
    assert nodes == [fqdn(_leaders(members_rows)[1]), fqdn(_leaders(members_rows)[2])]
    out = cluster.psql(coordinator, fqdn(coordinator),
                       "SELECT success, result FROM run_command_on_workers("
                       "$$SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()$$)", dbname="citus").stdout.split()
    assert out == ["t|t", "t|t"], out


def test_every_member_reports_healthy(cluster: Cluster, docker):
    def healthy() -> bool:
        states = [harness.run([docker, "inspect", "-f", "{{.State.Health.Status}}", cluster.container(m)]).stdout.strip()
                  for m in MEMBERS]
        if "unhealthy" in states:
            raise AssertionError(f"unhealthy member: {dict(zip(MEMBERS, states))}")
        return all(state == "healthy" for state in states)
    harness.wait_for("every member's HEALTHCHECK (patroni-citus-k8s probe readiness) healthy", healthy, timeout=90)
