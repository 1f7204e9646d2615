"""Certificate rotation in the compose cluster: renewed certificates served by every member with no restart.

What a docker-compose user does (docs/container.md, "Rotating the certificates"): renew the
server certificate from the same CA on the host (`patroni-citus-k8s certs generate --renew`
into the certs directory), then run the one-shot `certs` service again, which copies the
member files into `node/`, the directory every member mounts read-only. The watcher that
`run` forks beside Patroni notices, checks, restages and reloads; this proves it on the
wire (SSLRequest then TLS on 5432, TLS on the REST port, from the host to each container's
address), with the same containers, the same Patroni (PID 1) and the same postmaster, while
a client keeps opening new verify-full connections. Then a key that does not belong to the
certificate is renamed into `node/`: every member refuses it and keeps its certificate.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import sys
import tempfile
from dataclasses import dataclass

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.container import harness
from tests.container.harness import Cluster, fqdn, wait_for
from tests.support.load import QueryLoad
from tests.support.wire import postgres_certificate

pytestmark = pytest.mark.container

MEMBERS = ["citusdemo-0-0", "citusdemo-0-1", "citusdemo-1-0", "citusdemo-2-0"]
REST_PORT = 8008
# PostgreSQL takes a new certificate within a watch interval (1 s); the REST API on
# Patroni's next HA cycle (loop_wait, 10 s). Generous bounds, polled, never asserted as timings.
SERVED_TIMEOUT = 180
# What the certs service passes to `certs generate` (docker-compose.yml).
GENERATE_ARGS = ["--cluster", "citusdemo", "--namespace", "default", "--groups", "3"]
REFUSED = "refused new TLS material"
APPLIED = "new TLS material checked and staged"


def _cli() -> list[str]:
    """The entrypoint's CLI on the host: the console script next to this Python, else `python -m entrypoint`."""
    script = os.path.join(os.path.dirname(sys.executable), "patroni-citus-k8s")
    return [script] if os.path.exists(script) else [sys.executable, "-m", "entrypoint"]


def renew_on_host(cluster: Cluster) -> int:
    """`certs generate --renew` into the certs directory, as a user does on the host; return the new serial."""
    harness.run([*_cli(), "certs", "generate", "--renew", *GENERATE_ARGS, "--out-dir", cluster.certs_dir],
                env={"PYTHONPATH": harness.REPO})
    return _serial_of(os.path.join(cluster.certs_dir, "server.crt"))


def renew_in_image(cluster: Cluster) -> int:
    """The same renewal with the CLI in the image, run in the `certs` service's container; return the new serial."""
    cluster.compose_run("run", "--rm", "-T", "--entrypoint", "patroni-citus-k8s", "certs",
                        "certs", "generate", "--renew", *GENERATE_ARGS, "--out-dir", "/certs", timeout=300)
    return _serial_of(os.path.join(cluster.certs_dir, "server.crt"))


def _serial_of(path: str) -> int:
    with open(path, "rb") as handle:
        return x509.load_pem_x509_certificate(handle.read()).serial_number


def rest_certificate(host: str, client: "ClientFiles") -> x509.Certificate:
    """The certificate the REST API serves; presents the client pair (mutual TLS asks for one)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # only reading the certificate; trust is not judged here
    if client.mtls:
        ctx.load_cert_chain(client.cert, client.key)
    with socket.create_connection((host, REST_PORT), timeout=5) as raw:
        with ctx.wrap_socket(raw) as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


@dataclass
class ClientFiles:
    """Private copies of the CA and of a client pair for the host-side client, taken before any rotation,
    so the client never reads a file the test is replacing."""

    directory: str
    mtls: bool

    @property
    def ca(self) -> str:
        return os.path.join(self.directory, "ca.crt")

    @property
    def cert(self) -> str:
        return os.path.join(self.directory, "client.crt")

    @property
    def key(self) -> str:
        return os.path.join(self.directory, "client.key")


@pytest.fixture
def client_files(cluster: Cluster):
    directory = tempfile.mkdtemp(prefix="pck-rotation-client-")
    node = os.path.join(cluster.certs_dir, "node")
    shutil.copyfile(os.path.join(node, "ca.crt"), os.path.join(directory, "ca.crt"))
    # The server pair is signed by the CA, which is all clientcert=verify-ca asks for.
    shutil.copyfile(os.path.join(node, "server.crt"), os.path.join(directory, "client.crt"))
    shutil.copyfile(os.path.join(node, "server.key"), os.path.join(directory, "client.key"))
    os.chmod(os.path.join(directory, "client.key"), 0o600)
    yield ClientFiles(directory, cluster.mtls)
    shutil.rmtree(directory, ignore_errors=True)


class HostClients:
    """The shape QueryLoad drives: members with a name, and a verify-full DSN for each.

    The host cannot resolve the members' names, so libpq connects to `hostaddr` (the
    container's address) and verifies the certificate against `host` (the member's name).
    """

    @dataclass
    class Member:
        name: str
        ip: str

    def __init__(self, cluster: Cluster, client: ClientFiles) -> None:
        self.cluster, self.client = cluster, client
        self.members = [self.Member(name, cluster.ip(name)) for name in MEMBERS]

    def dsn(self, member: "HostClients.Member") -> str:
        dsn = (f"host={fqdn(member.name)} hostaddr={member.ip} port=5432 user=postgres dbname=postgres "
               f"password={self.cluster.env['PATRONI_SUPERUSER_PASSWORD']} sslmode=verify-full "
               f"sslrootcert={self.client.ca} connect_timeout=10")
        if self.client.mtls:
            dsn += f" sslcert={self.client.cert} sslkey={self.client.key}"
        return dsn


def serials(cluster: Cluster, client: ClientFiles, member: str) -> tuple[int, int]:
    """(serial on 5432, serial on the REST port) as `member` serves them now."""
    ip = cluster.ip(member)
    try:
        return postgres_certificate(ip, 5432).serial_number, rest_certificate(ip, client).serial_number
    except OSError as exc:  # refused, reset, TLS alert: report it like a wrong serial
        raise AssertionError(f"{member} ({ip}): {exc!r}") from exc


def wait_served(cluster: Cluster, client: ClientFiles, serial: int) -> None:
    for member in MEMBERS:
        def probe(m=member):
            got = serials(cluster, client, m)
            if got == (serial, serial):
                return True
            raise AssertionError(f"{m} serves (5432, REST) serials {got[0]:x}, {got[1]:x}; want {serial:x}")
        wait_for(f"{member} serving serial {serial:x} on 5432 and on the REST port", probe,
                 timeout=SERVED_TIMEOUT, interval=1)


def staged_serial(cluster: Cluster, member: str) -> int:
    """The serial of the private copy the member's PostgreSQL and REST API load."""
    pem = cluster.exec(member, "cat", harness.STAGED_CERT).stdout.encode()
    return x509.load_pem_x509_certificate(pem).serial_number


def test_renewed_certificates_are_served_by_every_member_without_restart_or_failed_query(
        cluster: Cluster, members_rows, client_files: ClientFiles):
    old = _serial_of(os.path.join(cluster.certs_dir, "node", "server.crt"))
    wait_served(cluster, client_files, old)
    before = {m: cluster.identity(m) for m in MEMBERS}
    assert all(identity["pid1_patroni"] for identity in before.values()), before
    applied_before = {m: cluster.logs(m).count(APPLIED) for m in MEMBERS}
    refused_before = {m: cluster.logs(m).count(REFUSED) for m in MEMBERS}

    with QueryLoad(HostClients(cluster, client_files), max_seconds=600) as load:
        wait_for("the client's first successful queries", lambda: load.ok >= 4, timeout=60, interval=0.5)
        new = renew_on_host(cluster)
        assert new != old
        cluster.refresh_node_certs()
        assert _serial_of(os.path.join(cluster.certs_dir, "node", "server.crt")) == new
        wait_served(cluster, client_files, new)
        # A few more rounds over every member with the new certificate in place.
        settled = load.ok
        wait_for("more queries after the rotation", lambda: load.ok >= settled + 2 * len(MEMBERS),
                 timeout=60, interval=0.5)
    assert load.failures == [], load.failures[:10]
    # Not asserted: the certs service copies with `install`, which replaces each file in turn, so
    # a watcher may catch a half-copied set, refuse it once and take the whole set on its next look.
    refusals = {m: cluster.logs(m).count(REFUSED) - refused_before[m] for m in MEMBERS}
    print(f"\nrotation: {load.ok} queries over new verify-full connections, none failed; "
          f"refusals of a half-copied set on the way: {refusals}")

    after = {m: cluster.identity(m) for m in MEMBERS}
    assert after == before, "a container, Patroni (PID 1) or the postmaster restarted"
    for member in MEMBERS:
        assert cluster.logs(member).count(APPLIED) > applied_before[member], member
        assert staged_serial(cluster, member) == new


def test_a_key_that_does_not_belong_to_the_certificate_is_refused(
        cluster: Cluster, members_rows, client_files: ClientFiles):
    node = os.path.join(cluster.certs_dir, "node")
    current = _serial_of(os.path.join(node, "server.crt"))
    wait_served(cluster, client_files, current)
    before = {m: cluster.identity(m) for m in MEMBERS}
    refused_before = {m: cluster.logs(m).count(REFUSED) for m in MEMBERS}

    key = ec.generate_private_key(ec.SECP256R1())  # belongs to no certificate
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    try:
        with QueryLoad(HostClients(cluster, client_files), max_seconds=600) as load:
            # Written aside and renamed in, with the mode and group the certs service gives the
            # key: readable, complete, and wrong. The directory mount shows renamed-in files.
            aside = os.path.join(node, ".server.key.new")
            with open(aside, "wb") as handle:
                handle.write(pem)
            os.chown(aside, 0, 999)
            os.chmod(aside, 0o640)
            os.rename(aside, os.path.join(node, "server.key"))
            for member in MEMBERS:
                def refused(m=member):
                    parts = cluster.logs(m).split(REFUSED)
                    # The text after the first refusal logged since the key went in.
                    return len(parts) - 1 > refused_before[m] and parts[refused_before[m] + 1]
                reason = wait_for(f"{member} logging '{REFUSED}'", refused, timeout=120, interval=1)
                assert "does not belong to the certificate" in reason, (member, reason[:2000])
                # Refused, so nothing was restaged or reloaded: the old certificate stays everywhere.
                assert staged_serial(cluster, member) == current
                assert serials(cluster, client_files, member) == (current, current)
            # The fix: a good pair, renewed this time with the image's own CLI in the certs
            # service's container (no CLI needed on the host), is picked up.
            fixed = renew_in_image(cluster)
            assert fixed != current
            cluster.refresh_node_certs()
            wait_served(cluster, client_files, fixed)
        assert load.failures == [], load.failures[:10]
        assert {m: cluster.identity(m) for m in MEMBERS} == before
    finally:
        # Whatever happened, leave a good pair in node/ (server.key and server.crt in the
        # certs directory always match: only the copy in node/ was broken).
        cluster.refresh_node_certs()
