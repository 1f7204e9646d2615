"""Every rendered object is valid Kubernetes, Helm's lint passes, and bad values fail at install time."""

from __future__ import annotations

from typing import Any, Mapping

import jsonschema
import pytest

from tests.helm.crd_schemas import CRD_SUBSETS
from tests.helm.support import CASES, CERT_DIR, CHART_DIR, Case, Rendered, helm, render, secret_items

kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate is not installed: pip install -r requirements-dev.txt")

# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest the
# installed kubernetes-validate knows.
KUBE_VERSIONS = ("1.25.0", kubernetes_validate.latest_version())

# kubernetes-validate knows only built-in kinds. The Certificate is checked against the
# fields of cert-manager's v1 CRD that the chart uses, with unknown fields rejected.
CERTIFICATE_V1_SUBSET: Mapping[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "cert-manager.io/v1"},
        "kind": {"const": "Certificate"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["secretName", "issuerRef"],
            "properties": {
                "secretName": {"type": "string", "minLength": 1},
                "commonName": {"type": "string", "maxLength": 64},
                "duration": {"type": "string"},
                "renewBefore": {"type": "string"},
                "dnsNames": {"type": "array", "items": {"type": "string"}},
                "ipAddresses": {"type": "array", "items": {"type": "string"}},
                "privateKey": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "algorithm": {"enum": ["RSA", "ECDSA", "Ed25519"]},
                        "size": {"type": "integer"},
                        "rotationPolicy": {"enum": ["Never", "Always"]},
                        "encoding": {"enum": ["PKCS1", "PKCS8"]},
                    },
                },
                "usages": {"type": "array", "items": {"enum": [
                    "signing", "digital signature", "content commitment", "key encipherment",
                    "key agreement", "data encipherment", "cert sign", "crl sign", "encipher only",
                    "decipher only", "any", "server auth", "client auth", "code signing",
                    "email protection", "s/mime", "ipsec end system", "ipsec tunnel", "ipsec user",
                    "timestamping", "ocsp signing", "microsoft sgc", "netscape sgc"]}},
                "issuerRef": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name"],
                    "properties": {"name": {"type": "string", "minLength": 1},
                                   "kind": {"type": "string"}, "group": {"type": "string"}},
                },
            },
        },
    },
}


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_every_rendered_object_is_valid_kubernetes(rendered: Rendered, kube_version: str) -> None:
    assert rendered.objects
    for obj in rendered.objects:
        if obj["kind"] == "Certificate":
            jsonschema.validate(obj, CERTIFICATE_V1_SUBSET)
            continue
        if obj["kind"] in CRD_SUBSETS:
            jsonschema.validate(obj, CRD_SUBSETS[obj["kind"]])
            continue
        # strict: an unknown or misspelled field is an error, not silently dropped.
        kubernetes_validate.validate(obj, kube_version, strict=True)


def test_names_are_unique_per_kind_and_namespace(rendered: Rendered) -> None:
    seen = [(o["kind"], o["metadata"].get("namespace", rendered.case.namespace), o["metadata"]["name"])
            for o in rendered.objects]
    assert len(seen) == len(set(seen))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_helm_lint_reports_no_errors_or_warnings(case: Case) -> None:
    report = helm.lint(CHART_DIR, case.user_values(), strict=True, namespace=case.namespace)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not problems and not report["errors"], report


def _render_error(case: Case) -> str:
    with pytest.raises(helm.HelmError) as caught:
        render(case)
    return str(caught.value)


def test_misspelled_mode_fails_at_install_time() -> None:
    message = _render_error(Case("typo", "citusdemo", "default",
                                 sets="ssl.enabled=true,ssl.mode=verfy-ca,image.tag=latest"))
    assert "/ssl/mode" in message and "verify-ca" in message
    report = helm.lint(CHART_DIR, helm.parse_set_string("ssl.enabled=true,ssl.mode=verfy-ca"))
    assert any("/ssl/mode" in m["error"] for m in report["messages"] if m["severity"] == 3)


@pytest.mark.parametrize("sets, where", [
    ("ssl.enable=true", "enable"),  # misspelled key
    ("ssl.minProtocolVersion=TLSv1.1", "/ssl/minProtocolVersion"),
    ("workers.groups=-1", "/workers/groups"),
    ("coordinator.replicas=0", "/coordinator/replicas"),
    ("ssl.certManager.issuerRef.kind=Issuers", "/ssl/certManager/issuerRef/kind"),
    ("podAntiAffinity=always", "/podAntiAffinity"),
    ("memoryVolumes.runtimeDirSizeLimit=16MB", "/memoryVolumes/runtimeDirSizeLimit"),
    ("updateStrategy=Recreate", "/updateStrategy"),
    ("switchoverOnStop.timeoutSeconds=3", "/switchoverOnStop/timeoutSeconds"),
    ("listenAddress=any", "/listenAddress"),
    ("networkPolicy.apiServer.cidrs={10.0.0.1}", "/networkPolicy/apiServer/cidrs/0"),
    ("ssl.secretKeys.crl=a/b", "/ssl/secretKeys/crl"),
    ("ssl.certManager.csi.enabled=yes", "/ssl/certManager/csi/enabled"),
    ("ssl.certManager.csi.enable=true", "enable"),
    ("metrics.port=5432", "/metrics/port"),
    ("metrics.port=70000", "/metrics/port"),
    ("metrics.interval=0", "/metrics/interval"),
    ("metrics.mode=verfy-full", "/metrics/mode"),
    ("metrics.serviceMonitor.interval=30 s", "/metrics/serviceMonitor/interval"),
    ("metrics.enable=true", "enable"),
])
def test_schema_rejects_bad_values(sets: str, where: str) -> None:
    assert where in _render_error(Case("bad", "citusdemo", "default", sets=sets))


def test_contradicting_values_fail_together_with_their_fixes() -> None:
    message = _render_error(Case("contradictions", "citusdemo", "default",
                                 sets="ssl.mode=verify-full,ssl.clientAuth=true,ssl.certManager.enabled=true"))
    assert "4 problem(s)" in message
    assert "ssl.mode=verify-full needs certificates but ssl.enabled=false" in message
    assert "ssl.clientAuth=true needs certificates" in message
    assert "ssl.certManager.enabled=true but ssl.enabled=false" in message
    assert "ssl.certManager.issuerRef.name" in message


@pytest.mark.parametrize("sets, expected", [
    ("ssl.enabled=true,ssl.mode=disable", "ssl.mode=disable turns TLS off"),
    ("ssl.enabled=true,ssl.mode=prefer,ssl.clientAuth=true", "ssl.clientAuth=true needs TLS on every link"),
])
def test_tls_contradictions_fail(sets: str, expected: str) -> None:
    assert expected in _render_error(Case("tls", "citusdemo", "default", sets=sets))


@pytest.mark.parametrize("release, expected", [
    ("1citus", "must be DNS-1035 labels"),
    ("a" * 51, "must be at most 52 characters"),  # a-...-2 is 53,
])
def test_release_names_that_cannot_name_services_fail(release: str, expected: str) -> None:
    assert expected in _render_error(Case("name", release, "default"))


def test_existing_credentials_secret_is_used_and_none_is_generated() -> None:
    rendered = render(Case("existing", "citusdemo", "default", sets="credentials.existingSecret=pg-auth"))
    assert not rendered.of_kind("Secret")
    for sts in rendered.statefulsets:
        refs = [e["valueFrom"]["secretKeyRef"] for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]
                if "secretKeyRef" in e.get("valueFrom", {})]
        assert len(refs) == 3 and all(ref["name"] == "pg-auth" for ref in refs)


def test_optional_parts_can_be_turned_off() -> None:
    rendered = render(Case("minimal", "citusdemo", "default", sets=(
        "rbac.create=false,serviceAccount.create=false,serviceAccount.name=shared,"
        "podDisruptionBudget.enabled=false,livenessProbe.enabled=false,podAntiAffinity=none")))
    kinds = {o["kind"] for o in rendered.objects}
    assert not kinds & {"Role", "RoleBinding", "ServiceAccount", "PodDisruptionBudget"}
    for sts in rendered.statefulsets:
        spec = sts["spec"]["template"]["spec"]
        assert spec["serviceAccountName"] == "shared"
        assert "affinity" not in spec and "livenessProbe" not in spec["containers"][0]


def test_hard_anti_affinity_and_explicit_secret_keys() -> None:
    rendered = render(Case("hard", "citusdemo", "default", sets=(
        "podAntiAffinity=hard,ssl.enabled=true,ssl.secretName=my-tls,"
        "ssl.secretKeys.cert=tls.crt,ssl.secretKeys.key=tls.key,ssl.secretKeys.ca=root.pem,"
        "ssl.secretKeys.crl=revoked.pem")))
    for sts in rendered.statefulsets:
        spec = sts["spec"]["template"]["spec"]
        (term,) = spec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert term["labelSelector"]["matchLabels"] == sts["spec"]["selector"]["matchLabels"]
        items = secret_items(sts, CERT_DIR)
        assert {i["secret"] for i in items} == {"my-tls"}
        assert {i["key"]: i["path"] for i in items} == {
            "root.pem": "ca.crt", "tls.crt": "server.crt", "tls.key": "server.key", "revoked.pem": "ca.crl"}
        assert [i["optional"] for i in items] == [False, False, False, True]


def test_grace_period_must_leave_room_after_the_hand_over() -> None:
    message = _render_error(Case("grace", "citusdemo", "default", sets="terminationGracePeriodSeconds=35"))
    assert "terminationGracePeriodSeconds=35 is too short for switchoverOnStop.timeoutSeconds=30" in message
    assert "at least 40" in message
    render(Case("grace-off", "citusdemo", "default", sets="terminationGracePeriodSeconds=35,switchoverOnStop.enabled=false"))
