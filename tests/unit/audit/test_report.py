"""verify's table and JSON over fixed observations (the metrics: test_metrics.py)."""

from __future__ import annotations

import datetime as dt
import json
import re

from entrypoint.audit.findings import find
from entrypoint.audit.model import Connection, Member, Observations, ServedCert
from entrypoint.audit.report import render_json, render_table

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)



def cert(service: str, host: str, days: float, **changes) -> ServedCert:
    served = ServedCert(service=service, port=5432 if service == "postgres" else 8008, host=host, tls=True,
                        protocol="TLSv1.3", cipher="TLS_AES_256_GCM_SHA384", subject=f"CN={host}",
                        issuer="CN=CA", issuer_id="ca", ip_addresses=[host], not_after=NOW + dt.timedelta(days=days),
                        name_covered=True, chains_to_ca=True)
    for key, value in changes.items():
        setattr(served, key, value)
    return served


def sample_observations(citus: bool = False, mode: str = "verify-full") -> Observations:
    primary = Member(name="db-0", host="10.0.0.1", role="leader", group=0 if citus else None, ssl="on",
                     ssl_min_protocol_version="TLSv1.2", plaintext_accepted=False,
                     served=[cert("postgres", "10.0.0.1", 100), cert("restapi", "10.0.0.1", 100)],
                     connections=[Connection("replication", "db-1 10.0.0.2", True, "TLSv1.3"),
                                  Connection("client", "10.0.0.9", False),
                                  Connection("client", "10.0.0.8", True, "TLSv1.3")])
    replica = Member(name="db-1", host="10.0.0.2", role="replica", group=0 if citus else None, ssl="on",
                     ssl_min_protocol_version="TLSv1.2", plaintext_accepted=True,
                     served=[cert("postgres", "10.0.0.2", 10), cert("restapi", "10.0.0.2", -1.5)],
                     link_modes={"replication": "verify-full"})
    members = [primary, replica]
    if citus:
        members.append(Member(name="w-0", host="10.0.0.3", role="leader", group=1, ssl="on",
                              served=[cert("postgres", "10.0.0.3", 100)],
                              connections=[Connection("citus", "10.0.0.1", True, "TLSv1.3")],
                              link_modes={"citus": "verify-full"}))
    return Observations(observed_at=NOW, mode=mode, mode_source="--mode", expiry_days=30,
                        target="host=10.0.0.1 user=postgres", ca_file="/ca.crt", citus=citus, members=members)


def test_table_shows_every_port_link_and_finding_with_its_fix():
    obs = sample_observations()
    text = render_table(obs, find(obs))
    assert "judged against sslmode=verify-full (--mode)" in text
    assert re.search(r"db-1\s+-\s+replica\s+restapi 8008\s+yes\s+-\s+TLSv1.3\s+\S+\s+-2\s", text)
    assert re.search(r"db-0\s+-\s+leader\s+postgres 5432\s+yes\s+rejected\s+TLSv1.3", text)
    assert re.search(r"db-1\s+-\s+replica\s+postgres 5432\s+yes\s+ACCEPTED\s+TLSv1.3", text)
    assert re.search(r"db-0\s+client\s+1\s+1\s+-", text)
    assert re.search(r"db-1\s+replication\s+0\s+0\s+verify-full", text)
    assert "citus" not in text.split("connections each member serves")[1].split("finding")[0]
    assert "ERROR   [plaintext_connection] db-0 client: 1 plaintext client connection" in text
    assert "ERROR   [plaintext_accepted] db-1 postgres 10.0.0.2:5432: accepts plaintext TCP connections" in text
    assert "WARNING [cert_expiring] db-1 postgres 10.0.0.2:5432" in text
    assert "ERROR   [cert_expired] db-1 restapi 10.0.0.2:8008" in text
    assert text.count("fix: ") == len(find(obs))


def test_table_says_so_when_there_is_nothing_to_report():
    obs = sample_observations(mode="prefer")
    obs.members[0].connections = obs.members[0].connections[:1]
    obs.members[1].served = [cert("postgres", "10.0.0.2", 100)]
    assert find(obs) == []
    assert "no findings" in render_table(obs, [])


def test_table_lists_an_unreachable_member_without_ports():
    obs = sample_observations()
    obs.members.append(Member(name="ghost", host="10.0.0.7", sql_error="timeout"))
    assert re.search(r"^ghost\s+-\s+-\s+-", render_table(obs, find(obs)), re.M)


def test_json_is_the_whole_report_with_iso_dates_days_and_counts():
    obs = sample_observations(citus=True)
    findings = find(obs)
    data = json.loads(render_json(obs, findings))
    assert data["mode"] == "verify-full" and data["citus"] is True and data["exit_status"] == 1
    assert data["observed_at"] == "2026-01-01T00:00:00+00:00"
    db1 = data["members"][1]
    assert [s["days_left"] for s in db1["served"]] == [10, -2]
    assert db1["served"][0]["not_after"] == "2026-01-11T00:00:00+00:00"
    assert data["members"][0]["connection_counts"] == {"client": {"encrypted": 1, "plaintext": 1},
                                                       "replication": {"encrypted": 1, "plaintext": 0},
                                                       "citus": {"encrypted": 0, "plaintext": 0}}
    assert data["members"][2]["group"] == 1 and data["members"][2]["link_modes"] == {"citus": "verify-full"}
    assert {f["code"] for f in data["findings"]} == {f.code for f in findings}
    assert set(data["findings"][0]) == {"severity", "code", "member", "where", "what", "fix"}
    assert data["cas"] == [] and data["secret"] is None and data["rotation"] == []


def test_json_exit_status_is_0_without_findings():
    obs = sample_observations(mode="prefer")
    obs.members[1].served = []
    assert json.loads(render_json(obs, []))["exit_status"] == 0
