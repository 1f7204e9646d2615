"""The chart and the image agree: the entrypoint accepts every pod's environment, derives
the pod's stable name as its connect address, and the certificate tool's SANs cover it."""

from __future__ import annotations

import os

import pytest

from tests.helm.support import CERT_DIR, CSI_DIR, Rendered, group_numbers, listen, mounted_files, pod_environment

from entrypoint import layout
from entrypoint.boot import settings as settings_module
from entrypoint.certs.names import ClusterNames, server_names


def _domain(rendered: Rendered) -> str:
    return rendered.case.user_values().get("clusterDomain", "cluster.local")


def _ssl(rendered: Rendered) -> dict:
    return rendered.case.user_values().get("ssl", {})


def _settings_for(rendered: Rendered, sts: dict, ordinal: int):
    env = pod_environment(sts, ordinal, rendered.case.namespace)
    facts = settings_module.HostFacts(cert_dir_entries=mounted_files(sts, CERT_DIR))
    return settings_module.parse_settings(env, facts)


def covered(name: str, sans: list[str]) -> bool:
    """True when a certificate with `sans` passes a verify-full host name check for `name`:
    an exact match, or a wildcard standing for exactly the whole left-most label."""
    for san in sans:
        if san == name:
            return True
        if san.startswith("*.") and "." in name:
            first, rest = name.split(".", 1)
            if first and rest == san[2:]:
                return True
    return False


@pytest.mark.parametrize("ordinal", [0, 1])
def test_entrypoint_accepts_every_pods_environment(rendered: Rendered, ordinal: int) -> None:
    r, ns = rendered.case.release, rendered.case.namespace
    ssl = _ssl(rendered)
    for sts in rendered.statefulsets:
        settings = _settings_for(rendered, sts, ordinal)  # raises InputError listing any problem
        pod = f"{sts['metadata']['name']}-{ordinal}"
        stable_name = f"{pod}.{r}.{ns}.svc.{_domain(rendered)}"
        assert settings.addresses.connect_derived
        assert (settings.addresses.connect.host, settings.addresses.connect.port) == (stable_name, 5432)
        assert (settings.addresses.restapi_connect.host, settings.addresses.restapi_connect.port) == (stable_name, 8008)
        assert (settings.identity.scope, settings.identity.name, settings.identity.namespace) == (r, pod, ns)
        assert settings.citus is not None
        assert settings.citus.group == int(sts["metadata"]["labels"]["citus-group"])
        assert settings.citus.database == "citus"
        assert settings.mode.name == ssl.get("mode", "verify-ca" if ssl.get("enabled") else "prefer")
        assert settings.tls.cert_present == bool(ssl.get("enabled"))
        assert settings.mtls.enabled == bool(ssl.get("clientAuth"))
        if ssl.get("enabled"):
            tls_dir = CSI_DIR if ssl.get("certManager", {}).get("csi", {}).get("enabled") else CERT_DIR
            assert (settings.tls.ca_file, settings.tls.cert_file, settings.tls.key_file) == (
                f"{tls_dir}/ca.crt", f"{tls_dir}/server.crt", f"{tls_dir}/server.key")
            assert mounted_files(sts, tls_dir) >= {"ca.crt", "server.crt", "server.key"}
            # The CRL where the entrypoint looks for it by default ($PCK_CERT_DIR/ca.crl), whichever model.
            assert layout.CRL_FILE in mounted_files(sts, CERT_DIR)
            assert settings.tuning.tls_min_version == ssl.get("minProtocolVersion", "TLSv1.2")


def test_certificate_tool_sans_cover_every_name_peers_use(rendered: Rendered) -> None:
    r, ns, domain = rendered.case.release, rendered.case.namespace, _domain(rendered)
    groups = group_numbers(rendered)
    sans = server_names(ClusterNames(cluster=r, namespace=ns, domain=domain, groups=len(groups)))
    for sts in rendered.statefulsets:
        for ordinal in range(sts["spec"]["replicas"]):
            settings = _settings_for(rendered, sts, ordinal)
            assert covered(settings.addresses.connect.host, sans), (settings.addresses.connect.host, sans)
            assert covered(settings.addresses.restapi_connect.host, sans)
    # And every Service the chart creates, in the forms a client in the cluster may use.
    for svc in rendered.of_kind("Service"):
        name = svc["metadata"]["name"]
        if name.endswith("-config"):
            continue  # holds Patroni's configuration; nobody connects to it
        if name.endswith("-tls-metrics"):
            continue  # the exporter's plain-HTTP /metrics, not a TLS endpoint of the cluster
        for form in (name, f"{name}.{ns}", f"{name}.{ns}.svc", f"{name}.{ns}.svc.{domain}"):
            assert covered(form, sans), form
    assert not covered(f"{r}-0-0.{r}.other-namespace.svc.{domain}", sans)


def test_cert_manager_certificate_asks_for_the_certificate_tools_names(rendered_cases: dict[str, Rendered]) -> None:
    rendered = rendered_cases["cert-manager"]
    (cert,) = rendered.of_kind("Certificate")
    names = ClusterNames(cluster=rendered.case.release, namespace=rendered.case.namespace,
                                 domain=_domain(rendered), groups=len(group_numbers(rendered)))
    spec = cert["spec"]
    assert spec["dnsNames"] + spec["ipAddresses"] == server_names(names)


def test_patroni_reads_the_pod_environment_as_the_chart_means_it(rendered: Rendered, monkeypatch: pytest.MonkeyPatch) -> None:
    """Patroni parses its own PATRONI_* variables (JSON labels, a YAML list of ports,
    booleans, the Citus group as a number); the entrypoint passes them through."""
    patroni_config = pytest.importorskip("patroni.config", reason="Patroni is not installed")
    r, ns = rendered.case.release, rendered.case.namespace
    for sts in rendered.statefulsets:
        env = pod_environment(sts, 0, ns)
        for name in [n for n in os.environ if n.startswith("PATRONI_")]:
            monkeypatch.delenv(name)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        config = patroni_config.Config._build_environment_configuration()
        g = int(sts["metadata"]["labels"]["citus-group"])
        assert config["scope"] == r and config["name"] == f"{sts['metadata']['name']}-0"
        assert config["citus"] == {"group": g, "database": "citus"}
        assert config["kubernetes"] == {
            "namespace": ns,
            "pod_ip": "10.244.1.7",
            "labels": {"application": "patroni", "cluster-name": r},
            "use_endpoints": True,
            "bypass_api_service": False,  # rbac.readApiServerEndpoints is off by default
            "ports": [{"name": "postgresql", "port": 5432}],
        }
        assert config["restapi"]["listen"] == listen(rendered, 8008)
        assert config["restapi"]["authentication"] == {"username": "patroni", "password": "s3cret"}
        assert config["postgresql"]["listen"] == listen(rendered, 5432)
        assert config["postgresql"]["authentication"] == {
            "superuser": {"username": "postgres", "password": "s3cret"},
            "replication": {"username": "replicator", "password": "s3cret"},
        }
        assert "connect_address" not in config["postgresql"] and "connect_address" not in config["restapi"]


@pytest.mark.parametrize("address, postgres, restapi", [
    ("::", "[::]:5432", "[::]:8008"),
    ("0.0.0.0", "0.0.0.0:5432", "0.0.0.0:8008"),
    ("fd00::7", "[fd00::7]:5432", "[fd00::7]:8008"),
])
def test_listen_address_reaches_the_entrypoint_and_patroni(address: str, postgres: str, restapi: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """listenAddress (IPv6-only clusters: "::" or the default "*") becomes both listen
    variables; the entrypoint accepts them and Patroni reads the same host and port."""
    from tests.helm.support import Case, render
    patroni_utils = pytest.importorskip("patroni.utils", reason="Patroni is not installed")
    rendered = render(Case("listen", "citusdemo", "default", sets=f"listenAddress={address},ssl.enabled=true"))
    sts = rendered.statefulsets[0]
    env = pod_environment(sts, 0, "default")
    assert (env["PATRONI_POSTGRESQL_LISTEN"], env["PATRONI_RESTAPI_LISTEN"]) == (postgres, restapi)
    settings = _settings_for(rendered, sts, 0)
    assert (settings.addresses.listen.host, settings.addresses.listen.port) == (address, 5432)
    assert patroni_utils.split_host_port(postgres, None) == (address, 5432)
    assert patroni_utils.split_host_port(restapi, None) == (address, 8008)
