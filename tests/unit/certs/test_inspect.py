"""`certs inspect`: what it reports for good material and which problems make it exit 2."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys

import pytest

from entrypoint.certs import inspect as certinspect
from tests.support.pki import TestCA

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
NOW = dt.datetime.now(dt.timezone.utc)
POD = "citusdemo-2-0.citusdemo.default.svc.cluster.local"


@pytest.fixture(scope="module")
def material() -> dict:
    ca, other = TestCA("citusdemo-ca"), TestCA("other-ca")
    server = ca.issue("*.citusdemo.default.svc.cluster.local", "citusdemo-0", "localhost", "127.0.0.1", "::1",
                      days=1095)
    return {"ca.crt": ca.cert_pem, "server.crt": server.cert_pem, "server.key": server.key_pem,
            "client-app.crt": ca.issue_client("app").cert_pem, "other-ca.crt": other.cert_pem,
            "other-server.key": other.issue("localhost").key_pem, "ca": ca}


def _inspect(material, names, **kwargs) -> certinspect.Report:
    return certinspect.inspect_material({n: material[n] for n in names}, **kwargs)


def test_good_set_reports_names_dates_keys_chain_and_hosts(material):
    report = _inspect(material, ["ca.crt", "server.crt", "server.key"], ca_pem=material["ca.crt"],
                      ca_label="ca.crt", hosts=["localhost", "127.0.0.1", POD])
    assert report.problems == [] and report.warnings == []
    server = next(c for c in report.certificates if c.label == "server.crt")
    assert server.key == "server.key" and server.chains_to_ca is True
    assert server.hosts == {"localhost": True, "127.0.0.1": True, POD: True}
    assert server.key_type == "ecdsa-p256" and 1093 <= server.days_left <= 1095
    assert "127.0.0.1" in server.ip_addresses and "*.citusdemo.default.svc.cluster.local" in server.dns_names
    assert server.extended_key_usage == ["serverAuth", "clientAuth"]
    assert [k.matches for k in report.keys] == [["server.crt"]]
    ca = next(c for c in report.certificates if c.label == "ca.crt")
    assert ca.is_ca and ca.hosts == {}  # host names concern server certificates


@pytest.mark.parametrize("names,kwargs,needle", [
    (["server.crt"], {"hosts": ["db.example.com"]}, "does not cover host 'db.example.com'"),
    (["server.crt"], {"hosts": [f"a.{POD}"]}, "does not cover host"),
    (["server.crt"], {"ca_pem": "other-ca.crt", "ca_label": "other-ca.crt"}, "does not chain to --ca other-ca.crt"),
    (["server.crt", "other-server.key"], {}, "other-server.key: matches none of the certificates"),
])
def test_failed_checks_are_problems_naming_the_file(material, names, kwargs, needle):
    if "ca_pem" in kwargs:
        kwargs = {**kwargs, "ca_pem": material[kwargs["ca_pem"]]}
    report = _inspect(material, names, **kwargs)
    assert any(needle in str(p) for p in report.problems), report.problems


def test_client_certificates_are_not_held_to_host_names(material):
    report = _inspect(material, ["client-app.crt", "server.crt"], hosts=["localhost"])
    assert report.problems == []
    client = next(c for c in report.certificates if c.label == "client-app.crt")
    assert client.hosts == {} and client.extended_key_usage == ["clientAuth"]


def test_expired_and_expiring_certificates(material):
    ca = material["ca"]
    old = ca.issue("localhost", days=10, now=NOW - dt.timedelta(days=20))
    soon = ca.issue("localhost", days=10)
    report = certinspect.inspect_material({"old.crt": old.cert_pem, "soon.crt": soon.cert_pem})
    assert len(report.problems) == 1 and "old.crt: expired" in str(report.problems[0])
    assert len(report.warnings) == 1 and "soon.crt: expires in" in report.warnings[0]


def test_garbage_and_empty_files_are_problems():
    report = certinspect.inspect_material({"notes.txt": b"hello", "broken.crt":
                                           b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"})
    assert any(str(p).startswith("notes.txt: no PEM certificate") for p in report.problems)
    assert any(str(p).startswith("broken.crt: a certificate block cannot be parsed") for p in report.problems)


def test_bundle_labels_each_certificate(material):
    report = certinspect.inspect_material({"bundle.pem": material["server.crt"] + material["ca.crt"]},
                                          ca_pem=material["ca.crt"], ca_label="ca.crt")
    assert [c.label for c in report.certificates] == ["bundle.pem[0]", "bundle.pem[1]"]
    assert report.problems == []


def _run(*args, cwd):
    return subprocess.run([sys.executable, "-m", "entrypoint", "certs", "inspect", *args], cwd=cwd,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": REPO}, capture_output=True, text=True)


def test_command_json_and_exit_status(tmp_path, material):
    for name in ("ca.crt", "server.crt", "server.key", "other-ca.crt"):
        (tmp_path / name).write_bytes(material[name])
    ok = _run("server.crt", "server.key", "--ca", "ca.crt", "--host", "localhost", "--json", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    data = json.loads(ok.stdout)
    assert data["ok"] is True and data["certificates"][0]["hosts"] == {"localhost": True}
    assert data["keys"][0]["matches"] == ["server.crt"]
    bad = _run("server.crt", "--ca", "other-ca.crt", "--host", "db.example.com", cwd=tmp_path)
    assert bad.returncode == 2
    assert "does not chain" in bad.stderr and "db.example.com" in bad.stderr and "NOT covered" in bad.stdout
    missing = _run("nope.crt", cwd=tmp_path)
    assert missing.returncode == 2 and "PATH nope.crt: cannot read it" in missing.stderr


def test_command_reads_a_directory(tmp_path, material):
    for name in ("ca.crt", "server.crt", "server.key"):
        (tmp_path / name).write_bytes(material[name])
    result = _run(".", "--ca", "ca.crt", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "./server.crt: certificate" in result.stdout and "./server.key: private key ecdsa-p256" in result.stdout


def test_key_file_modes_postgresql_refuses_are_warned(tmp_path, material):
    key = tmp_path / "server.key"
    key.write_bytes(material["server.key"])
    key.chmod(0o644)
    result = _run("server.key", cwd=tmp_path)
    assert result.returncode == 0 and "mode 0644" in result.stderr and "chmod 0600" in result.stderr
    key.chmod(0o600)
    assert "warning" not in _run("server.key", cwd=tmp_path).stderr


@pytest.mark.parametrize("uid,mode,refused", [
    (0, 0o600, False), (0, 0o640, False), (0, 0o644, True), (0, 0o660, True),
    (101, 0o600, False), (101, 0o640, True), (101, 0o604, True),
])
def test_key_mode_rule_is_postgresqls(uid, mode, refused):
    st = os.stat_result((0o100000 | mode, 0, 0, 1, uid, 0, 0, 0, 0, 0))
    assert (certinspect.key_mode_warning("k.key", st) is not None) == refused


def test_text_report_escapes_fields_that_hold_control_characters():
    from tests.support import forge

    ca = TestCA("inspect CA")
    pair = forge.with_subject(ca, "evil\nforged: certificate\x1b[2J", "a.example")
    report = certinspect.inspect_material({"bad\x1b.crt": pair.cert_pem})
    text = certinspect.render_text(report)
    assert "\x1b" not in text and "\nforged" not in text
    assert "evil\\nforged" in text and "bad\\x1b.crt" in text
