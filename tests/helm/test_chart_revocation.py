"""Revocation in the chart: the CRL from the Secret (optional) where the entrypoint reads it, and
ssl.certManager.csi.enabled, where cert-manager's CSI driver gives every pod its own key and names.

The CSI names are compared with `certs generate --per-member`'s (entrypoint/certs/names.py
member_names), the one home of which names a member's own certificate carries.
"""

from __future__ import annotations

from typing import Any

import pytest

from entrypoint import layout
from entrypoint.certs.names import ClusterNames, member_names
from tests.helm.support import (
    CERT_DIR,
    CSI_DIR,
    Case,
    Rendered,
    container,
    helm,
    mounted_files,
    render,
    secret_items,
    volume_named,
)
from tests.helm.test_chart_entrypoint_contract import _settings_for, covered

CSI = "csi.cert-manager.io/"


def _tls_pods(rendered: Rendered) -> list[dict[str, Any]]:
    """Every object whose pods mount the TLS files: members, pooler, its setup Job, the exporter."""
    return [*rendered.statefulsets, *rendered.of_kind("Deployment"), *rendered.of_kind("Job")]


def _csi(rendered: Rendered) -> bool:
    return bool(rendered.case.user_values().get("ssl", {}).get("certManager", {}).get("csi", {}).get("enabled"))


def test_every_tls_pod_mounts_the_crl_as_an_optional_ca_crl_in_the_certificate_directory(rendered: Rendered) -> None:
    ssl = rendered.case.user_values().get("ssl", {})
    for obj in _tls_pods(rendered):
        if not ssl.get("enabled"):
            assert CERT_DIR not in {m["mountPath"] for m in container(obj)["volumeMounts"]}
            continue
        (crl,) = [i for i in secret_items(obj, CERT_DIR) if i["path"] == layout.CRL_FILE]
        assert crl == {"secret": f"{rendered.case.release}-ssl-certs", "key": "ca.crl", "path": layout.CRL_FILE,
                       "optional": True}, obj["metadata"]["name"]
        # Everything else in the Secret is required, and only the CRL is optional.
        assert [i["path"] for i in secret_items(obj, CERT_DIR) if i["optional"]] == [layout.CRL_FILE]


def test_no_crl_key_means_no_crl_mounted() -> None:
    for sets in ("ssl.enabled=true,ssl.secretKeys.crl=",
                 "ssl.enabled=true,ssl.secretKeys.crl=,ssl.certManager.csi.enabled=true,ssl.certManager.issuerRef.name=ca"):
        rendered = render(Case("no-crl", "citusdemo", "default", sets=sets))
        for sts in rendered.statefulsets:
            assert layout.CRL_FILE not in mounted_files(sts, CERT_DIR)
            assert "ssl-crl" not in {v["name"] for v in sts["spec"]["template"]["spec"]["volumes"]}


@pytest.fixture(scope="module")
def csi(rendered_cases: dict[str, Rendered]) -> Rendered:
    return rendered_cases["csi"]


def _attributes(obj: dict[str, Any]) -> dict[str, str]:
    volume = volume_named(obj, "ssl-certs")
    assert volume["csi"]["driver"] == "csi.cert-manager.io"
    assert volume["csi"]["readOnly"] is True  # the driver refuses writable volumes
    return volume["csi"]["volumeAttributes"]


def _certificate_names(attributes: dict[str, str], pod: str) -> list[str]:
    """The SANs the driver asks for in `pod`'s certificate (it fills in ${POD_NAME})."""
    dns = attributes.get(CSI + "dns-names", "").replace("${POD_NAME}", pod).split(",")
    ips = attributes.get(CSI + "ip-sans", "").split(",")
    return [n for n in dns + ips if n]


def test_csi_gives_every_member_exactly_the_names_certs_generate_per_member_gives_it(csi: Rendered) -> None:
    r, ns = csi.case.release, csi.case.namespace
    extra = tuple(csi.case.user_values()["ssl"]["certManager"]["extraNames"])
    names = ClusterNames(cluster=r, namespace=ns, groups=len(csi.statefulsets), extra=extra)
    for sts in csi.statefulsets:
        group = int(sts["metadata"]["labels"]["citus-group"])
        attributes = _attributes(sts)
        for ordinal in range(sts["spec"]["replicas"]):
            pod = f"{sts['metadata']['name']}-{ordinal}"
            expected = member_names(names, group, pod)
            dns = [n for n in expected if not (":" in n or n.replace(".", "").isdigit())]
            ips = [n for n in expected if n not in dns]
            assert _certificate_names(attributes, pod) == dns + ips
            # The pod's connect address (derived by the entrypoint) is in its own certificate only.
            settings = _settings_for(csi, sts, ordinal)
            assert covered(settings.addresses.connect.host, _certificate_names(attributes, pod))
            assert not covered(settings.addresses.connect.host, _certificate_names(attributes, f"{pod}9"))
            assert not any(n.startswith("*") for n in _certificate_names(attributes, pod))


def test_csi_volume_attributes_ask_for_what_the_entrypoint_reads(csi: Rendered) -> None:
    cm = csi.case.user_values()["ssl"]["certManager"]
    for obj in _tls_pods(csi):
        attributes = _attributes(obj)
        assert {k: attributes[CSI + k] for k in ("issuer-name", "issuer-kind", "issuer-group")} == {
            "issuer-name": cm["issuerRef"]["name"], "issuer-kind": cm["issuerRef"]["kind"],
            "issuer-group": "cert-manager.io"}
        # The driver's file names are mapped to the entrypoint's: PGSSL* point there.
        assert mounted_files(obj, CSI_DIR) == {layout.CA_FILE, layout.CERT_FILE, layout.KEY_FILE}
        assert {attributes[CSI + "ca-file"], attributes[CSI + "certificate-file"],
                attributes[CSI + "privatekey-file"]} == {layout.CA_FILE, layout.CERT_FILE, layout.KEY_FILE}
        env = {e["name"]: e.get("value") for e in container(obj)["env"]}
        assert env["PGSSLROOTCERT"] == f"{CSI_DIR}/{layout.CA_FILE}"
        # The pod's fsGroup may read the key; ECDSA keys must be PKCS#8 for the driver.
        assert attributes[CSI + "fs-group"] == str(obj["spec"]["template"]["spec"]["securityContext"]["fsGroup"])
        assert (attributes[CSI + "key-algorithm"], attributes[CSI + "key-size"], attributes[CSI + "key-encoding"]) == (
            "ECDSA", "256", "PKCS8")
        assert {"server auth", "client auth"} <= set(attributes[CSI + "key-usages"].split(","))
        assert (attributes[CSI + "duration"], attributes[CSI + "renew-before"]) == ("2160h", "360h")
        # The CRL still comes from the Secret, alone, as ca.crl in the certificate directory.
        assert mounted_files(obj, CERT_DIR) == {layout.CRL_FILE}
        assert mounted_files(obj, CERT_DIR, optional=False) == set()


def test_csi_puts_no_key_in_any_secret_and_no_shared_certificate(csi: Rendered) -> None:
    """Never every member's key in one Secret mounted everywhere: no Certificate, no TLS Secret rendered,
    and no pod mounts a Secret's key or certificate."""
    assert not csi.of_kind("Certificate")
    assert {s["metadata"]["name"] for s in csi.of_kind("Secret")} == {"orders-credentials", "orders-pooler-auth"}
    for obj in _tls_pods(csi):
        for volume in obj["spec"]["template"]["spec"]["volumes"]:
            assert "secret" not in volume
            for source in volume.get("projected", {}).get("sources", []):
                assert [i["path"] for i in source["secret"]["items"]] == [layout.CRL_FILE]


def test_csi_pooler_and_clients_get_certificates_of_their_own(csi: Rendered) -> None:
    r, ns = csi.case.release, csi.case.namespace
    pooler = _certificate_names(_attributes(csi.get("Deployment", f"{r}-pooler")), "any")
    for name in (f"{r}-pooler", f"{r}-pooler.{ns}", f"{r}-pooler.{ns}.svc", f"{r}-pooler.{ns}.svc.cluster.local"):
        assert name in pooler
    assert not [n for n in pooler if n.startswith(f"{r}-0")]  # a pooler's key cannot pose as a member
    assert _attributes(csi.get("Deployment", f"{r}-tls-metrics"))[CSI + "common-name"] == f"{r}-tls-metrics"
    assert _attributes(csi.get("Job", f"{r}-pooler-setup"))[CSI + "common-name"] == f"{r}-pooler-setup"


def test_csi_exporter_compares_with_no_shared_secret(csi: Rendered, rendered_cases: dict[str, Rendered]) -> None:
    args = container(csi.get("Deployment", "orders-tls-metrics"))["args"]
    assert "--secret-dir" not in args  # every pod has its own certificate: nothing shared to compare with
    shared = container(rendered_cases["metrics"].get("Deployment", "citusdemo-tls-metrics"))["args"]
    assert shared[shared.index("--secret-dir") + 1] == CERT_DIR


@pytest.mark.parametrize("sets, expected", [
    ("ssl.certManager.csi.enabled=true,ssl.certManager.issuerRef.name=ca",
     "ssl.certManager.csi.enabled=true but ssl.enabled=false"),
    ("ssl.enabled=true,ssl.certManager.csi.enabled=true",
     "ssl.certManager.csi.enabled=true needs ssl.certManager.issuerRef.name"),
    ("ssl.enabled=true,ssl.certManager.csi.enabled=true,ssl.certManager.enabled=true,ssl.certManager.issuerRef.name=ca",
     "ssl.certManager.csi.enabled=true and ssl.certManager.enabled=true"),
])
def test_csi_contradictions_fail_with_their_fixes(sets: str, expected: str) -> None:
    with pytest.raises(helm.HelmError) as caught:
        render(Case("csi-bad", "citusdemo", "default", sets=sets))
    assert expected in str(caught.value)


@pytest.mark.parametrize("algorithm, size, expected", [
    ("RSA", "3072", {"key-algorithm": "RSA", "key-size": "3072", "key-usages":
                     "digital signature,key encipherment,server auth,client auth"}),
    ("Ed25519", "256", {"key-algorithm": "Ed25519", "key-usages": "digital signature,server auth,client auth"}),
])
def test_csi_key_settings_follow_the_certificates(algorithm: str, size: str, expected: dict[str, str]) -> None:
    rendered = render(Case("csi-keys", "citusdemo", "default", sets=(
        "ssl.enabled=true,ssl.certManager.csi.enabled=true,ssl.certManager.issuerRef.name=ca,"
        f"ssl.certManager.privateKeyAlgorithm={algorithm},ssl.certManager.privateKeySize={size}")))
    attributes = _attributes(rendered.statefulsets[0])
    assert {k: attributes.get(CSI + k) for k in expected} == expected
    if algorithm == "Ed25519":
        assert CSI + "key-size" not in attributes  # the driver refuses a size for Ed25519
