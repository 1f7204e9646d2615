"""A real Prometheus scrapes `verify --serve` against a real verify-full cluster, with monitoring/pck-alerts.yml loaded.

One 2-member cluster on 127.0.<net>.170-171 (scope vmetrics): member 0 at verify-full, member
1 at prefer (its pg_hba takes plaintext). Both serve one certificate, which the exporter also
finds in its own copy of the Secret (--secret-dir), as the chart mounts it. Prometheus 2 from
Debian runs on a free loopback port with a temporary configuration and data directory,
scraping every second; everything started here is stopped by PID.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from tests.support.cluster import (
    ENTRYPOINT,
    SUPERUSER_PASSWORD,
    LocalCluster,
    Member,
    free_port,
    stop_pid,
    wait_for,
)

RULES = Path(__file__).resolve().parents[2] / "monitoring" / "pck-alerts.yml"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
JOB = "pck-tls-exporter"  # the job the rules expect

pytestmark = pytest.mark.skipif(not os.access(PROMETHEUS, os.X_OK),
                                reason="Prometheus is not installed (scripts/setup installs Debian's prometheus)")


class Prometheus:
    """A Prometheus server on 127.0.0.1 with its own configuration and data directory."""

    def __init__(self, workdir: str, target: str) -> None:
        self.dir = os.path.join(workdir, "prometheus")
        os.makedirs(self.dir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
                  "rule_files": [str(RULES)],
                  "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": [target]}]}]}
        self.config = os.path.join(self.dir, "prometheus.yml")
        with open(self.config, "w", encoding="utf-8") as handle:
            json.dump(config, handle)  # JSON is YAML
        self.proc = None

    def start(self) -> "Prometheus":
        with open(os.path.join(self.dir, "prometheus.log"), "ab") as log:
            self.proc = subprocess.Popen(
                [PROMETHEUS, f"--config.file={self.config}", f"--storage.tsdb.path={self.dir}/data",
                 f"--web.listen-address=127.0.0.1:{self.port}"], stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        wait_for("Prometheus ready", lambda: self._get("/-/ready") is not None, 60)
        return self

    def _get(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=5) as resp:
            return resp.read()

    def query(self, promql: str) -> dict:
        """{frozenset(labels without __name__): value} of an instant query."""
        body = json.loads(self._get("/api/v1/query?" + urllib.parse.urlencode({"query": promql})))
        assert body["status"] == "success", body
        return {frozenset((k, v) for k, v in r["metric"].items() if k != "__name__"): float(r["value"][1])
                for r in body["data"]["result"]}

    def value(self, promql: str) -> float:
        (only,) = self.query(promql).values()
        return only

    def alerts(self, name: str) -> list:
        body = json.loads(self._get("/api/v1/alerts"))
        return [a for a in body["data"]["alerts"] if a["labels"]["alertname"] == name]

    def stop(self) -> None:
        stop_pid(self.proc)


def watcher_pid(member: Member) -> int:
    """The certificate watcher: the child of the member's Patroni that still runs `patroni-citus-k8s run`."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as handle:
                ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmdline = handle.read().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == member.proc.pid and any(part.endswith(b"patroni-citus-k8s") for part in cmdline):
            return int(entry)
    raise LookupError(f"no watcher under {member.name}'s Patroni (pid {member.proc.pid})")


@pytest.fixture(scope="module")
def monitored():
    cluster = LocalCluster(mode="verify-full", members=2, scope="vmetrics", base_ip=170)
    strict, lax = cluster.members
    shared = cluster.ca.issue(strict.host, lax.host, cn="vmetrics")
    for member in cluster.members:
        member.pair = shared
    lax.env_extra["PGSSLMODE"] = "prefer"  # a member whose pg_hba takes plaintext
    secret = Member(name="exporter", host="", group=None, workdir=os.path.join(cluster.workdir, "exporter"),
                    pair=shared)
    exporter = prometheus = None
    with cluster:
        cluster.write_client_ca()
        cluster.write_cert_dir(secret)  # the exporter's mount of the same Secret
        port = free_port()
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PGPASSWORD": SUPERUSER_PASSWORD}
        log = open(os.path.join(cluster.workdir, "exporter.log"), "ab")  # noqa: SIM115 - closed below
        exporter = subprocess.Popen(
            [ENTRYPOINT, "verify", cluster.dsn(strict, password=None), "--serve", f"127.0.0.1:{port}",
             "--interval", "2", "--timeout", "3", "--mode", "verify-full", "--secret-dir", secret.cert_dir],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            prometheus = Prometheus(cluster.workdir, f"127.0.0.1:{port}").start()
            wait_for("both members scraped as up",
                     lambda: len(prometheus.query(f'pck_tls_member_up{{job="{JOB}"}} == 1')) == 2, 60)
            yield cluster, prometheus, exporter, secret
        finally:
            if prometheus:
                prometheus.stop()
            stop_pid(exporter)
            log.close()
            with open(os.path.join(cluster.workdir, "exporter.log"), encoding="utf-8", errors="replace") as handle:
                print("----- exporter log -----\n" + handle.read()[-4000:])


def test_expiry_seconds_match_the_certificates(monitored):
    cluster, prometheus, _, secret = monitored
    now = time.time()
    expiry = prometheus.query("pck_tls_certificate_expiry_seconds")
    assert len(expiry) == 4  # two members, two ports
    not_after = secret.pair.cert.not_valid_after_utc.timestamp()
    for labels, value in expiry.items():
        assert dict(labels)["member"] in {m.name for m in cluster.members}
        assert abs(value - (not_after - now)) < 15, (labels, value, not_after - now)
    stamps = set(prometheus.query("pck_tls_certificate_not_after_timestamp_seconds").values())
    assert stamps == {round(not_after)}
    ca_sha = hashlib.sha256(cluster.ca.cert.public_bytes(Encoding.DER)).hexdigest()
    ca_left = prometheus.value(f'pck_tls_ca_expiry_seconds{{sha256="{ca_sha}"}}')
    assert abs(ca_left - (cluster.ca.cert.not_valid_after_utc.timestamp() - now)) < 15
    assert prometheus.value(f'up{{job="{JOB}"}}') == 1
    assert prometheus.value("pck_tls_observation_success") == 1
    assert not prometheus.alerts("PckTLSCertificateExpiringSoon") and not prometheus.alerts("PckTLSExporterDown")


def test_a_plaintext_session_on_the_prefer_member_puts_the_alert_in_pending(monitored):
    cluster, prometheus, _, _ = monitored
    lax = cluster.members[1]
    assert prometheus.alerts("PckTLSPlaintextSession") == []
    with cluster.connect(lax, sslmode="disable", sslrootcert=None, application_name="plaintext-app"):
        def pending():
            alerts = prometheus.alerts("PckTLSPlaintextSession")
            return alerts if alerts and alerts[0]["state"] == "pending" else None

        (alert,) = wait_for("PckTLSPlaintextSession pending", pending, 30)
        assert alert["labels"]["member"] == lax.name and alert["labels"]["link"] == "client"
        assert alert["labels"]["severity"] == "critical"
        assert prometheus.value(f'pck_tls_link_plaintext_allowed{{member="{lax.name}",link="client"}}') == 0
    wait_for("the alert gone with the session", lambda: prometheus.alerts("PckTLSPlaintextSession") == [], 30)


def by_service(prometheus: Prometheus, metric: str, member: Member) -> dict:
    """{service: value} of one member's ports (both must be there: a port missing from one scrape is no answer)."""
    return {dict(labels)["service"]: value for labels, value in prometheus.query(
        f'{metric}{{member="{member.name}"}}').items()}


def test_rotation_pending_rises_while_a_member_keeps_the_old_certificate_and_falls_after(monitored):
    cluster, prometheus, _, secret = monitored
    stuck, fine = cluster.members
    both_current = {"postgres": 1, "restapi": 1}
    for member in cluster.members:
        assert by_service(prometheus, "pck_tls_serving_mounted_certificate", member) == both_current
    renewed = cluster.ca.issue(stuck.host, fine.host, cn="vmetrics", now=dt.datetime.now(dt.timezone.utc))
    watcher = watcher_pid(stuck)
    os.kill(watcher, signal.SIGSTOP)  # this member's rotation is stuck
    try:
        for member in (fine, stuck, secret):
            member.pair = renewed
            cluster.write_cert_dir(member)  # the Secret update, as the kubelet does it
        # First an observation made after the update (until then Prometheus still has the old
        # certificate matching the old Secret everywhere): the stuck member no longer matches.
        pending = f'pck_tls_rotation_pending_seconds{{member="{stuck.name}",service="postgres"}}'
        first = wait_for("the stuck member pending", lambda: prometheus.value(pending), 30)
        # The other member: PostgreSQL at once, the REST API on Patroni's next HA cycle.
        wait_for("the other member serving the new certificate on both ports", lambda: by_service(
            prometheus, "pck_tls_serving_mounted_certificate", fine) == both_current, 45)
        # Still pending, and counting up (in steps of the exporter's observation interval).
        wait_for("the stuck member's pending seconds rising", lambda: (prometheus.value(pending) or 0) >= first + 2, 15)
        assert by_service(prometheus, "pck_tls_serving_mounted_certificate", stuck) == {"postgres": 0, "restapi": 0}
        assert by_service(prometheus, "pck_tls_rotation_pending_seconds", fine) == {"postgres": 0, "restapi": 0}
    finally:
        os.kill(watcher, signal.SIGCONT)
    wait_for("the stuck member caught up on both ports", lambda: by_service(
        prometheus, "pck_tls_rotation_pending_seconds", stuck) == {"postgres": 0, "restapi": 0}, 45)
    for member in cluster.members:
        assert by_service(prometheus, "pck_tls_serving_mounted_certificate", member) == both_current
    new_not_after = round(renewed.cert.not_valid_after_utc.timestamp())
    assert set(prometheus.query("pck_tls_certificate_not_after_timestamp_seconds").values()) == {new_not_after}


def test_the_exporter_stops_cleanly_and_prometheus_sees_it_down(monitored):
    _, prometheus, exporter, _ = monitored
    exporter.send_signal(signal.SIGTERM)
    assert exporter.wait(20) == 0
    wait_for("up 0", lambda: prometheus.value(f'up{{job="{JOB}"}}') == 0, 30)
    wait_for("PckTLSExporterDown pending", lambda: [a["state"] for a in prometheus.alerts("PckTLSExporterDown")]
             == ["pending"], 30)

