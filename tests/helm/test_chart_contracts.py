"""The chart repeats facts whose one home is Python (`entrypoint.sslmode`, `entrypoint.layout`): each copy is compared here."""

from __future__ import annotations

import json

import pytest

from entrypoint import layout, sslmode
from tests.helm.support import CHART_DIR, Case, container, env_of, helm, mounted_files, render, secret_items


def _schema() -> dict:
    return json.loads((CHART_DIR / "values.schema.json").read_text())


def test_schema_mode_enum_is_the_mode_table() -> None:
    ssl = _schema()["properties"]["ssl"]["properties"]
    assert ssl["mode"]["enum"] == [""] + list(sslmode.NAMES)
    assert ssl["minProtocolVersion"]["enum"] == list(sslmode.TLS_VERSIONS)


def _fails(sets: str, needle: str) -> bool:
    try:
        render(Case("contract", "citusdemo", "default", sets=sets))
    except helm.HelmError as exc:
        return needle in str(exc)
    return False


@pytest.mark.parametrize("mode", sslmode.MODES, ids=sslmode.NAMES)
def test_chart_tls_required_rule_is_the_mode_tables(mode: sslmode.Mode) -> None:
    """Without certificates a mode is refused exactly when it requires TLS; mutual TLS exactly when it does not."""
    assert _fails(f"ssl.mode={mode.name}", "needs certificates") == mode.requires_tls
    if mode.uses_tls:
        assert _fails(f"ssl.enabled=true,ssl.mode={mode.name},ssl.clientAuth=true",
                      "needs TLS on every link") == (not mode.requires_tls)


@pytest.mark.parametrize("sets, cert_key, key_key", [
    ("ssl.enabled=true", layout.CERT_FILE, layout.KEY_FILE),
    ("ssl.enabled=true,ssl.certManager.enabled=true,ssl.certManager.issuerRef.name=ca",
     layout.CM_CERT_FILE, layout.CM_KEY_FILE),
])
def test_chart_mounts_the_secret_where_layout_says(sets: str, cert_key: str, key_key: str) -> None:
    rendered = render(Case("contract", "citusdemo", "default", sets=sets))
    for sts in rendered.statefulsets:
        mounts = {m["mountPath"] for m in container(sts)["volumeMounts"]}
        assert layout.CERT_DIR in mounts
        assert mounted_files(sts, layout.CERT_DIR, optional=False) == {layout.CA_FILE, layout.CERT_FILE,
                                                                        layout.KEY_FILE}
        assert mounted_files(sts, layout.CERT_DIR) - mounted_files(sts, layout.CERT_DIR, optional=False) == {
            layout.CRL_FILE}
        items = {i["key"]: i["path"] for i in secret_items(sts, layout.CERT_DIR)}
        assert items == {layout.CA_FILE: layout.CA_FILE, cert_key: layout.CERT_FILE, key_key: layout.KEY_FILE,
                         layout.CRL_FILE: layout.CRL_FILE}
        env = {name: var.get("value") for name, var in env_of(sts).items()}
        assert (env["PGSSLROOTCERT"], env["PGSSLCERT"], env["PGSSLKEY"]) == tuple(
            f"{layout.CERT_DIR}/{n}" for n in (layout.CA_FILE, layout.CERT_FILE, layout.KEY_FILE))


def test_chart_paths_and_ports_are_layouts() -> None:
    rendered = render(Case("contract", "citusdemo", "default", sets="ssl.enabled=true"))
    for sts in rendered.statefulsets:
        env = {name: var.get("value") for name, var in env_of(sts).items()}
        assert env["PCK_RUNTIME_DIR"] == layout.RUNTIME_DIR
        assert env["PATRONI_POSTGRESQL_DATA_DIR"] == layout.DATA_DIR
        assert env["PATRONI_POSTGRESQL_LISTEN"].endswith(f":{layout.POSTGRES_PORT}")
        assert env["PATRONI_RESTAPI_LISTEN"].endswith(f":{layout.RESTAPI_PORT}")
        mounts = {m["mountPath"] for m in container(sts)["volumeMounts"]}
        assert layout.SOCKET_DIR in mounts
        ports = {p["containerPort"] for p in container(sts)["ports"]}
        assert ports == {layout.POSTGRES_PORT, layout.RESTAPI_PORT}
    assert f"{layout.RUNTIME_DIR}/{layout.CONFIG_FILE_NAME}" in rendered.notes
