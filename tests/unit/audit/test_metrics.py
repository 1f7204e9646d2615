"""verify's metrics: the exposition (parsed with prometheus_client's own parser), rotation, the Secret reader,
the bounded observation and the real HTTP server of --serve, over fixed observations."""

from __future__ import annotations

import dataclasses
import datetime as dt
import multiprocessing
import os
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from entrypoint import cli, layout
from entrypoint.audit import metrics, serve
from entrypoint.audit.findings import CODES, find
from entrypoint.audit.metrics import Snapshot, exposition, rotation
from entrypoint.audit.model import CertInfo, Member, MountedSecret
from entrypoint.audit.observe import observe_members
from entrypoint.audit.options import VerifyOptions
from entrypoint.audit.report import render_prometheus
from entrypoint.audit.secret import UnreadableFile, read_regular_file, read_secret
from tests.support.pki import TestCA
from tests.unit.audit.test_report import NOW, sample_observations


def parse(text: str) -> dict:
    """{family name: {(sample name, frozenset(labels)): value}} plus each family's type, via prometheus_client."""
    out = {}
    for family in text_string_to_metric_families(text):
        out[family.name] = {"type": family.type, "samples": {
            (s.name, frozenset(s.labels.items())): s.value for s in family.samples}}
    return out


def values(parsed: dict, family: str, *keys: str) -> dict:
    """{tuple of the `keys` label values: value} of one family's samples."""
    return {tuple(dict(labels)[k] for k in keys): v for (_, labels), v in parsed[family]["samples"].items()}


def secret_info(cert, changed_at) -> MountedSecret:
    info = CertInfo(subject="CN=all", sha256=cert, serial="1", not_after=NOW + dt.timedelta(days=90))
    return MountedSecret(directory="/secret", cert_file="/secret/server.crt", cert=info, changed_at=changed_at)


# ---- the exposition ------------------------------------------------------------------------------------------

def test_textfile_parses_and_has_expiry_per_member_and_port():
    obs = sample_observations()
    parsed = parse(render_prometheus(obs, find(obs)))
    assert {f["type"] for f in parsed.values()} == {"gauge"}  # a single run has no counters
    expiry = values(parsed, "pck_tls_certificate_expiry_seconds", "member", "service", "port")
    assert expiry == {("db-0", "postgres", "5432"): 100 * 86400, ("db-0", "restapi", "8008"): 100 * 86400,
                      ("db-1", "postgres", "5432"): 10 * 86400, ("db-1", "restapi", "8008"): -1.5 * 86400}
    not_after = values(parsed, "pck_tls_certificate_not_after_timestamp_seconds", "member", "service")
    assert not_after[("db-0", "postgres")] == NOW.timestamp() + 100 * 86400
    assert values(parsed, "pck_tls_port_tls", "member", "service") == {
        ("db-0", "postgres"): 1, ("db-0", "restapi"): 1, ("db-1", "postgres"): 1, ("db-1", "restapi"): 1}
    assert values(parsed, "pck_tls_exporter_info", "version", "mode") == {("0.1.0", "verify-full"): 1}
    assert values(parsed, "pck_tls_observation_success") == {(): 1}
    assert values(parsed, "pck_tls_last_success_timestamp_seconds") == {(): NOW.timestamp()}


def test_sessions_by_link_encryption_protocol_and_cipher():
    obs = sample_observations()
    obs.members[0].connections[2].cipher = "TLS_AES_128_GCM_SHA256"
    parsed = parse(render_prometheus(obs, find(obs)))
    sessions = values(parsed, "pck_tls_sessions", "member", "link", "encryption")
    assert sessions[("db-0", "client", "plaintext")] == 1 and sessions[("db-0", "client", "tls")] == 1
    assert sessions[("db-0", "replication", "tls")] == 1 and sessions[("db-1", "replication", "tls")] == 0
    assert not any(link == "citus" for _, link, _ in sessions)  # not a Citus cluster
    ciphers = values(parsed, "pck_tls_session_ciphers", "member", "link", "protocol", "cipher")
    assert ciphers == {("db-0", "replication", "TLSv1.3", ""): 1,
                       ("db-0", "client", "TLSv1.3", "TLS_AES_128_GCM_SHA256"): 1}
    handshake = values(parsed, "pck_tls_handshake_info", "member", "service", "protocol", "cipher")
    assert handshake[("db-1", "restapi", "TLSv1.3", "TLS_AES_256_GCM_SHA384")] == 1


@pytest.mark.parametrize("mode, allowed", [("verify-full", 0), ("require", 0), ("prefer", 1), ("disable", 1)])
def test_plaintext_allowed_follows_the_expected_mode(mode, allowed):
    obs = sample_observations(mode=mode)
    parsed = parse(render_prometheus(obs, find(obs)))
    assert set(values(parsed, "pck_tls_link_plaintext_allowed", "member", "link").values()) == {allowed}


def test_findings_by_code_and_severity_with_a_zero_for_every_pair():
    obs = sample_observations()
    findings = find(obs)
    counts = values(parse(render_prometheus(obs, findings)), "pck_tls_findings", "code", "severity")
    assert set(counts) == {(code, sev) for code, sevs in CODES.items() for sev in sevs}
    for key, count in counts.items():
        assert count == sum(1 for f in findings if (f.code, f.severity) == key), key
    assert counts[("plaintext_connection", "error")] == 1 and counts[("cert_expiring", "warning")] == 1


def test_every_finding_code_is_in_the_table():
    obs = sample_observations(citus=True)
    obs.members[1].ssl, obs.members[1].ssl_min_protocol_version = "off", "TLSv1"
    obs.members[0].served[0].tls = False
    for finding in find(obs):
        assert finding.severity in CODES[finding.code], finding


def test_citus_links_and_groups():
    obs = sample_observations(citus=True)
    parsed = parse(render_prometheus(obs, find(obs)))
    sessions = values(parsed, "pck_tls_sessions", "member", "group", "link", "encryption")
    assert sessions[("w-0", "1", "citus", "tls")] == 1 and sessions[("w-0", "1", "citus", "plaintext")] == 0
    assert values(parsed, "pck_tls_member_up", "member", "group") == {("db-0", "0"): 1, ("db-1", "0"): 1,
                                                                       ("w-0", "1"): 1}


def test_label_values_are_escaped_and_round_trip():
    obs = sample_observations()
    odd = 'odd "name"\\with\nnewline'
    obs.members[0].name = odd
    parsed = parse(render_prometheus(obs, []))
    assert (odd,) in values(parsed, "pck_tls_member_up", "member")


def test_an_unreachable_member_is_down_and_its_ports_not_tls():
    obs = sample_observations()
    obs.members[1].sql_error = "timeout"
    obs.members[1].served[0].error, obs.members[1].served[0].not_after = "cannot connect", None
    parsed = parse(render_prometheus(obs, find(obs)))
    assert values(parsed, "pck_tls_member_up", "member")[("db-1",)] == 0
    assert values(parsed, "pck_tls_port_tls", "member", "service")[("db-1", "postgres")] == 0
    assert ("db-1", "postgres") not in values(parsed, "pck_tls_certificate_expiry_seconds", "member", "service")


def test_ca_expiry_for_each_ca_of_the_bundle_and_the_secret_once():
    obs = sample_observations()
    old = CertInfo("CN=CA", "aa" * 32, "1", NOW + dt.timedelta(days=5))
    new = CertInfo("CN=CA", "bb" * 32, "2", NOW + dt.timedelta(days=3650))
    obs.cas = [old, new]
    obs.secret = secret_info("cc" * 32, NOW)
    obs.secret.cas = [new]
    parsed = parse(render_prometheus(obs, []))
    assert values(parsed, "pck_tls_ca_expiry_seconds", "subject", "sha256") == {
        ("CN=CA", "aa" * 32): 5 * 86400, ("CN=CA", "bb" * 32): 3650 * 86400}
    assert values(parsed, "pck_tls_secret_certificate_expiry_seconds") == {(): 90 * 86400}


def test_the_crl_hook_is_empty_until_revocation_lands():
    obs = sample_observations()
    assert metrics.crl_next_updates(obs) == []
    parsed = parse(render_prometheus(obs, []))
    assert parsed["pck_tls_crl_next_update_seconds"]["samples"] == {}


def test_counters_of_the_serve_loop_and_no_member_metrics_after_a_failure():
    snap = Snapshot(mode="verify-full", success=False, duration=1.25, observations=7,
                    errors={"cannot_run": 2, "timeout": 1, "internal": 0}, last_success=NOW.timestamp())
    parsed = parse(exposition(snap))
    assert parsed["pck_tls_observations"]["type"] == "counter"
    assert values(parsed, "pck_tls_observations") == {(): 7}
    assert values(parsed, "pck_tls_observation_errors", "reason") == {("cannot_run",): 2, ("timeout",): 1,
                                                                       ("internal",): 0}
    assert values(parsed, "pck_tls_observation_success") == {(): 0}
    assert values(parsed, "pck_tls_observation_duration_seconds") == {(): 1.25}
    assert "pck_tls_member_up" not in parsed and "pck_tls_certificate_expiry_seconds" not in parsed


def test_no_password_reaches_the_exposition():
    obs = sample_observations()
    obs.members[0].sql_error = "password authentication failed"
    text = render_prometheus(obs, find(obs))
    assert "password" not in text


# ---- rotation ---------------------------------------------------------------------------------------------------

def _serving(obs, sha_by_member: dict) -> None:
    for member in obs.members:
        for served in member.served:
            served.sha256 = sha_by_member[member.name]


def test_rotation_is_current_where_the_port_serves_the_mounted_certificate():
    obs = sample_observations()
    _serving(obs, {"db-0": "new", "db-1": "old"})
    obs.secret = secret_info("new", NOW - dt.timedelta(minutes=15))
    rows, since = rotation(obs, {})
    by_port = {(r.member, r.service): (r.current, r.pending_seconds) for r in rows}
    assert by_port == {("db-0", "postgres"): (True, 0), ("db-0", "restapi"): (True, 0),
                       ("db-1", "postgres"): (False, 900), ("db-1", "restapi"): (False, 900)}
    assert set(since) == {("db-1", "postgres", 5432), ("db-1", "restapi", 8008)}
    parsed = parse(render_prometheus(obs, []))
    assert values(parsed, "pck_tls_rotation_pending_seconds", "member", "service")[("db-1", "restapi")] == 900
    assert values(parsed, "pck_tls_serving_mounted_certificate", "member", "service")[("db-0", "postgres")] == 1


def test_rotation_pending_counts_from_the_first_sighting_when_that_is_earlier():
    obs = sample_observations()
    _serving(obs, {"db-0": "new", "db-1": "old"})
    obs.secret = secret_info("new", NOW + dt.timedelta(hours=1))  # a file time ahead of the clock counts for nothing
    since = {("db-1", "postgres", 5432): NOW - dt.timedelta(seconds=30)}
    rows, still = rotation(obs, since)
    pending = {(r.member, r.service): r.pending_seconds for r in rows if not r.current}
    assert pending == {("db-1", "postgres"): 30, ("db-1", "restapi"): 0}
    assert still[("db-1", "postgres", 5432)] == NOW - dt.timedelta(seconds=30)
    _serving(obs, {"db-0": "new", "db-1": "new"})
    rows, still = rotation(obs, still)
    assert all(r.current and r.pending_seconds == 0 for r in rows) and still == {}


def test_no_rotation_rows_without_a_readable_secret_or_for_plaintext_ports():
    obs = sample_observations()
    _serving(obs, {"db-0": "x", "db-1": "y"})
    assert rotation(obs, {}) == ([], {})
    obs.secret = MountedSecret(directory="/secret", error="no server.crt or tls.crt in /secret")
    assert rotation(obs, {}) == ([], {})
    obs.secret = secret_info("x", NOW)
    obs.members[1].served[0].tls = False
    assert {(r.member, r.service) for r in rotation(obs, {})[0]} == {
        ("db-0", "postgres"), ("db-0", "restapi"), ("db-1", "restapi")}


# ---- the Secret as mounted ---------------------------------------------------------------------------------------

def kubelet_secret(directory, files: dict) -> None:
    """Files the way the kubelet mounts a Secret: ..data -> a timestamped directory, names linked through it."""
    version = directory / "..2026_01_01_00_00_00.1"
    version.mkdir(parents=True)
    for name, data in files.items():
        (version / name).write_bytes(data)
        (directory / name).symlink_to(f"..data/{name}")
    (directory / "..data").symlink_to(version.name)


def test_read_secret_names_the_leaf_the_cas_and_when_the_file_changed(tmp_path):
    ca = TestCA("secret CA")
    pair = ca.issue("127.0.0.1", cn="all")
    other = TestCA("next CA")
    kubelet_secret(tmp_path, {layout.CA_FILE: ca.cert_pem + other.cert_pem,
                              layout.CM_CERT_FILE: pair.cert_pem + ca.cert_pem, layout.CM_KEY_FILE: pair.key_pem})
    os.utime(tmp_path / "..data" / layout.CM_CERT_FILE, (1_700_000_000, 1_700_000_000))
    secret = read_secret(str(tmp_path))
    assert secret.error is None and secret.cert_file == str(tmp_path / layout.CM_CERT_FILE)
    assert secret.cert is not None and secret.cert.subject == "CN=all"
    assert secret.cert.serial == format(pair.cert.serial_number, "x")
    assert secret.changed_at == dt.datetime.fromtimestamp(1_700_000_000, dt.timezone.utc)
    assert [c.subject for c in secret.cas] == ["CN=secret CA", "CN=next CA"]
    assert "PRIVATE" not in repr(secret)  # the key is never read


def test_read_secret_reports_what_is_wrong_without_raising(tmp_path):
    assert "no server.crt or tls.crt" in read_secret(str(tmp_path)).error
    (tmp_path / layout.CERT_FILE).write_bytes(b"not a certificate")
    assert "holds no PEM certificate" in read_secret(str(tmp_path)).error


def test_the_reader_refuses_a_fifo_without_blocking_and_a_huge_file(tmp_path):
    fifo = tmp_path / "server.crt"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(UnreadableFile, match="not a regular file"):
        read_regular_file(str(fifo))
    assert time.monotonic() - started < 2
    assert "not a regular file" in read_secret(str(tmp_path)).error
    big = tmp_path / "big"
    big.write_bytes(b"x" * 2048)
    with pytest.raises(UnreadableFile, match="more than a certificate file may hold"):
        read_regular_file(str(big), limit=1024)
    with pytest.raises(UnreadableFile, match="cannot read .*No such file"):
        read_regular_file(str(tmp_path / "missing"))
    with pytest.raises(UnreadableFile, match="not a regular file"):
        read_regular_file(str(tmp_path))


# ---- bounded observations ----------------------------------------------------------------------------------------

def test_a_member_that_hangs_is_reported_unreachable_and_the_others_in_full():
    hung, fine = Member("hung", "10.0.0.1", api_url="https://10.0.0.1:8008/patroni"), Member("fine", "10.0.0.2")
    release = threading.Event()

    def look(member):
        if member.name == "hung":
            release.wait(30)
        member.ssl = "on"

    started = time.monotonic()
    observe_members([hung, fine], look, time.monotonic() + 0.5)
    release.set()
    assert time.monotonic() - started < 5
    assert fine.ssl == "on" and fine.sql_error is None
    assert hung.ssl is None and "no answer before the observation's time was up" in hung.sql_error
    assert [(s.service, s.port) for s in hung.served] == [("postgres", 5432), ("restapi", 8008)]
    assert {f.code for f in find(dataclasses.replace(sample_observations(), members=[hung]))} >= {"unreachable"}


def test_a_bug_in_a_members_look_is_raised_not_swallowed():
    def look(member):
        raise ZeroDivisionError("bug")

    with pytest.raises(ZeroDivisionError):
        observe_members([Member("a", "10.0.0.1")], look, time.monotonic() + 5)


@pytest.fixture
def silent_listener():
    """A real TCP port that accepts connections and never answers: a hung PostgreSQL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


def test_an_observation_that_hangs_is_killed_at_its_budget(silent_listener, monkeypatch):
    monkeypatch.setattr(serve, "GRACE", 1.0)
    options = VerifyOptions(conninfo=f"host=127.0.0.1 port={silent_listener} connect_timeout=120 sslmode=disable",
                            timeout=120, serve="127.0.0.1:1", interval=1, output="serve")
    ctx = multiprocessing.get_context("forkserver")
    started = time.monotonic()
    kind, message, duration = serve.observe_bounded(ctx, options, threading.Event())
    assert kind == "timeout" and "took longer than 1 s" in message
    assert 1.5 < duration < 6 and time.monotonic() - started < 10


def test_an_observation_that_cannot_connect_is_a_cannot_run_with_the_password_scrubbed():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    options = VerifyOptions(conninfo=f"host=127.0.0.1 port={port} password=hunter2-secret sslmode=disable",
                            serve="127.0.0.1:1", interval=5, output="serve")
    kind, message, _ = serve.observe_bounded(multiprocessing.get_context("forkserver"), options, threading.Event())
    assert kind == "cannot_run" and "cannot connect" in message and "hunter2-secret" not in message


# ---- the HTTP server of --serve ----------------------------------------------------------------------------------

@pytest.fixture
def running_exporter():
    exporter = serve.Exporter(interval=30, mode="verify-full")
    server = serve.listen("127.0.0.1", 0, serve._app(exporter))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield exporter, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def get(url: str) -> tuple:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.headers.get("Content-Type"), resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type"), err.read().decode()


def test_metrics_endpoint_serves_the_latest_observation(running_exporter):
    exporter, base = running_exporter
    status, content_type, body = get(f"{base}/metrics")
    assert status == 200 and content_type.startswith("text/plain")
    before = parse(body)
    assert values(before, "pck_tls_observations") == {(): 0} and "pck_tls_member_up" not in before
    obs = sample_observations()
    _serving(obs, {"db-0": "new", "db-1": "old"})
    obs.secret = secret_info("new", NOW)
    exporter.succeeded(obs, 0.5)
    after = parse(get(f"{base}/metrics")[2])
    assert values(after, "pck_tls_observations") == {(): 1}
    assert values(after, "pck_tls_observation_success") == {(): 1}
    assert values(after, "pck_tls_member_up", "member") == {("db-0",): 1, ("db-1",): 1}
    assert values(after, "pck_tls_serving_mounted_certificate", "member", "service")[("db-1", "postgres")] == 0
    exporter.failed("timeout", 30.0)
    failed = parse(get(f"{base}/metrics")[2])
    assert values(failed, "pck_tls_observation_errors", "reason")[("timeout",)] == 1
    assert values(failed, "pck_tls_observation_success") == {(): 0} and "pck_tls_member_up" not in failed


def test_healthz_is_the_loops_heartbeat_and_other_paths_are_not_found(running_exporter):
    exporter, base = running_exporter
    assert get(f"{base}/healthz")[0] == 200
    exporter.heartbeat -= 3 * exporter.interval + serve.GRACE + 1
    assert get(f"{base}/healthz")[0] == 503
    exporter.failed("cannot_run", 1.0)  # a failed observation is still a live loop
    assert get(f"{base}/healthz")[0] == 200
    assert get(f"{base}/")[0] == 404
    request = urllib.request.Request(f"{base}/metrics", data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)
    assert caught.value.code == 405


# ---- bad flags: exit 2, what, where and the fix, nothing started --------------------------------------------------

@pytest.mark.parametrize("args, expected", [
    (["--serve", "nohost"], "--serve: 'nohost' is not HOST:PORT"),
    (["--serve", "127.0.0.1:0"], "--serve: '127.0.0.1:0' is not HOST:PORT"),
    (["--serve", "127.0.0.1:70000"], "is not HOST:PORT"),
    (["--serve", "bad\x1bhost:9810"], "'bad\\x1bhost:9810' is not HOST:PORT"),
    (["--serve", "[zz]:9810"], "is not HOST:PORT"),
    (["--serve", "127.0.0.1:9810", "--interval", "0"], "--interval: 0 is not between 1 and 86400 seconds"),
    (["--serve", "127.0.0.1:9810", "--interval", "nan"], "--interval: nan is not between"),
    (["--interval", "10"], "--interval: only means something with --serve"),
    (["--serve", "127.0.0.1:9810", "--install-view"], "--install-view: is a one-time change"),
    (["--secret-dir", "/nonexistent/secret"], "--secret-dir /nonexistent/secret: /nonexistent/secret is not a dir"),
    (["--secret-dir", ""], "--secret-dir: is empty"),
    (["--timeout", "inf"], "--timeout: inf is more than 86400 seconds"),
])
def test_bad_flags_exit_2_naming_the_flag_and_the_fix(args, expected, capsys):
    assert cli.main(["verify", "host=127.0.0.1 port=1", *args]) == 2
    err = capsys.readouterr().err
    assert expected in err and "fix:" in err and "Traceback" not in err


def test_a_secret_dir_without_a_certificate_is_refused(tmp_path, capsys):
    assert cli.main(["verify", "--serve", "127.0.0.1:9810", "--secret-dir", str(tmp_path)]) == 2
    assert f"--secret-dir {tmp_path}: no server.crt or tls.crt in {tmp_path}" in capsys.readouterr().err


def test_a_port_in_use_is_exit_2_before_anything_is_observed(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert cli.main(["verify", "host=127.0.0.1 port=1", "--serve", f"127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err
    assert f"--serve 127.0.0.1:{port}: cannot listen there (Address already in use)" in err and "fix:" in err


def test_a_failing_exposition_is_a_500_and_one_log_line(running_exporter, capsys):
    exporter, base = running_exporter
    exporter.snapshot.obs = object()  # not Observations: building the families fails
    status, _, body = get(f"{base}/metrics")
    assert status == 500 and "internal error" in body
    err = capsys.readouterr().err
    assert "internal error serving /metrics: AttributeError" in err and "Traceback" not in err
    exporter.snapshot.obs = None
    assert get(f"{base}/metrics")[0] == 200
