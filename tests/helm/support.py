"""Render helm/citus-cluster with real Helm (helm-python-sdk bundles Helm's Go SDK) and parse the result."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

import pytest
import yaml

from entrypoint.layout import CERT_DIR

try:
    import helm_python as helm
except ImportError:  # the tests are skipped with this reason (see conftest.py)
    helm = None
HELM_MISSING = "helm-python-sdk (real Helm through its Go SDK) is not installed: pip install -r requirements-dev.txt"

CHART_DIR = Path(__file__).resolve().parents[2] / "helm" / "citus-cluster"
CSI_DIR = "/etc/ssl/certs/postgresql-pod"  # where the CSI driver's files land (ssl.certManager.csi.enabled)


@dataclass(frozen=True)
class Case:
    """One way a user installs the chart: a release, a namespace and `--set` values."""

    id: str
    release: str
    namespace: str
    sets: str = ""  # exactly what follows --set on the helm command line
    values: Optional[Mapping[str, Any]] = None  # a values file, merged under the --set values

    def user_values(self) -> dict[str, Any]:
        merged: dict[str, Any] = json.loads(json.dumps(self.values or {}))
        if self.sets:
            _deep_merge(merged, helm.parse_set_string(self.sets))
        return merged


def _deep_merge(into: dict[str, Any], new: Mapping[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = value


# The installs the issue names: defaults, the seed's command line, verify-full with mutual
# TLS, cert-manager, and several worker groups in another namespace.
CASES = [
    Case("defaults", "citusdemo", "default"),
    Case("seed", "citusdemo", "default", sets="ssl.enabled=true,ssl.mode=verify-ca,image.tag=latest"),
    Case("verify-full-mtls", "citusdemo", "db",
         sets="ssl.enabled=true,ssl.mode=verify-full,ssl.clientAuth=true,ssl.minProtocolVersion=TLSv1.3"),
    Case("cert-manager", "orders", "prod", values={
        "ssl": {"enabled": True, "mode": "verify-full", "clientAuth": True,
                "certManager": {"enabled": True, "issuerRef": {"name": "internal-ca", "kind": "ClusterIssuer"}}},
    }),
    Case("five-groups", "analytics", "team-a",
         sets="workers.groups=4,workers.replicas=3,coordinator.replicas=2,clusterDomain=k8s.example.org,"
              "ssl.enabled=true,ssl.mode=verify-full"),
    Case("coordinator-only", "solo", "default", sets="workers.groups=0,coordinator.replicas=1"),
    # The TLS exporter with everything on (tests/helm/test_chart_metrics.py).
    Case("metrics", "citusdemo", "db", sets="ssl.enabled=true,ssl.mode=verify-full,ssl.clientAuth=true,"
         "metrics.enabled=true,metrics.serviceMonitor.enabled=true,metrics.prometheusRule.enabled=true"),
    # The optional NetworkPolicy with every knob set, on an IPv6-only cluster.
    Case("network-policy", "citusdemo", "db", values={
        "listenAddress": "::",
        "ssl": {"enabled": True, "mode": "verify-full"},
        "networkPolicy": {
            "enabled": True,
            "clients": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "apps"}}},
                        {"ipBlock": {"cidr": "fd00:10::/64"}}],
            "extraClientPorts": [{"port": 6432, "protocol": "TCP"}],
            "apiServer": {"ports": [6443], "cidrs": ["fd00::1/128", "10.0.0.10/32"]},
            "dns": {"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                    "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
            "extraIngress": [{"from": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
                              "ports": [{"port": 8008, "protocol": "TCP"}]}],
            "extraEgress": [{"to": [{"ipBlock": {"cidr": "fd00:20::/64"}}], "ports": [{"port": 443}]}],
        },
    }),
    # The pooler at verify-full with mutual TLS, TLS 1.3, its own NetworkPolicy (tests/helm/test_chart_pooler.py).
    Case("pooler", "citusdemo", "db", values={
        "ssl": {"enabled": True, "mode": "verify-full", "clientAuth": True, "minProtocolVersion": "TLSv1.3"},
        "pooler": {"enabled": True, "replicas": 3, "poolMode": "session", "maxClientConn": 500,
                   "defaultPoolSize": 10, "authUser": "pooler_auth"},
        "networkPolicy": {"enabled": True,
                          "clients": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "apps"}}}]},
    }),
    # cert-manager's CSI driver: every pod its own certificate, the CRL from the Secret (pooler and exporter too).
    Case("csi", "orders", "prod", values={
        "ssl": {"enabled": True, "mode": "verify-full", "clientAuth": True,
                "certManager": {"csi": {"enabled": True}, "extraNames": ["db.example.com", "10.0.0.7"],
                                "issuerRef": {"name": "internal-ca", "kind": "ClusterIssuer"}}},
        "workers": {"groups": 1},
        "pooler": {"enabled": True},
        "metrics": {"enabled": True},
    }),
]
CASE_IDS = [c.id for c in CASES]


class Rendered:
    """The objects one `helm template` produced, addressable by kind and name."""

    def __init__(self, case: Case, manifests: Mapping[str, str]):
        self.case = case
        self.notes = ""
        self.objects: list[dict[str, Any]] = []
        for path, text in sorted(manifests.items()):
            if path.endswith("NOTES.txt"):
                self.notes = text
                continue
            self.objects += [doc for doc in yaml.safe_load_all(text) if doc]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = [o for o in self.of_kind(kind) if o["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}: {self.names(kind)}"
        return found[0]

    def names(self, kind: str) -> list[str]:
        return [o["metadata"]["name"] for o in self.of_kind(kind)]

    @property
    def statefulsets(self) -> list[dict[str, Any]]:
        return self.of_kind("StatefulSet")


def render(case: Case) -> Rendered:
    with helm.Chart.load(CHART_DIR) as chart:
        manifests = chart.render(case.user_values(), name=case.release, namespace=case.namespace,
                                 is_install=True)
    return Rendered(case, manifests)



def listen(rendered: "Rendered", port: int) -> str:
    """What the chart sets as PATRONI_*_LISTEN for `port`: listenAddress (default "*"), IPv6 bracketed."""
    address = rendered.case.user_values().get("listenAddress", "*")
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def container(sts: Mapping[str, Any]) -> dict[str, Any]:
    containers = sts["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env_of(sts: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The container's env as name -> EnvVar, failing on a variable set twice."""
    env = container(sts)["env"]
    names = [e["name"] for e in env]
    duplicates = {n for n in names if names.count(n) > 1}
    assert not duplicates, f"set twice: {duplicates}"
    return {e["name"]: e for e in env}


def pod_environment(sts: Mapping[str, Any], ordinal: int, namespace: str, pod_ip: str = "10.244.1.7",
                    secret_value: str = "s3cret") -> dict[str, str]:
    """The environment the kubelet would give pod `<sts>-<ordinal>`, resolved to plain strings.

    fieldRefs get the pod's name, namespace and IP; secretKeyRefs get `secret_value`; the
    kubelet's own KUBERNETES_SERVICE_HOST is added because every pod has it.
    """
    pod_name = f"{sts['metadata']['name']}-{ordinal}"
    fields = {"metadata.name": pod_name, "metadata.namespace": namespace, "status.podIP": pod_ip}
    out = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    for name, var in env_of(sts).items():
        if "value" in var:
            out[name] = var["value"]
        elif "fieldRef" in var["valueFrom"]:
            out[name] = fields[var["valueFrom"]["fieldRef"]["fieldPath"]]
        elif "secretKeyRef" in var["valueFrom"]:
            out[name] = secret_value
        else:
            raise AssertionError(f"unexpected valueFrom in {var}")
    return out


def secret_items(sts: Mapping[str, Any], mount_path: str) -> list[dict[str, Any]]:
    """The Secret keys a projected volume mounted at `mount_path` shows: secret, key, path, optional."""
    mounts = [m for m in container(sts)["volumeMounts"] if m["mountPath"] == mount_path]
    if not mounts:
        return []
    volume = volume_named(sts, mounts[0]["name"])
    assert "secret" not in volume, "the TLS Secret is mounted as a projected volume (the CRL is an optional source)"
    return [{"secret": source["secret"]["name"], "key": item["key"], "path": item["path"],
             "optional": source["secret"].get("optional", False)}
            for source in volume["projected"]["sources"] for item in source["secret"]["items"]]


CSI_FILE_KEYS = ("csi.cert-manager.io/ca-file", "csi.cert-manager.io/certificate-file",
                 "csi.cert-manager.io/privatekey-file")


def mounted_files(sts: Mapping[str, Any], mount_path: str, optional: bool = True) -> frozenset:
    """File names the pod sees under `mount_path` (a projected Secret volume with items, or the CSI
    driver's volume); with `optional`, also those of optional sources (the Secret carries every key)."""
    mounts = [m for m in container(sts)["volumeMounts"] if m["mountPath"] == mount_path]
    if not mounts:
        return frozenset()
    volume = volume_named(sts, mounts[0]["name"])
    if "csi" in volume:
        return frozenset(volume["csi"]["volumeAttributes"][key] for key in CSI_FILE_KEYS)
    return frozenset(item["path"] for item in secret_items(sts, mount_path) if optional or not item["optional"])


def volume_named(sts: Mapping[str, Any], name: str) -> dict[str, Any]:
    found = [v for v in sts["spec"]["template"]["spec"]["volumes"] if v["name"] == name]
    assert len(found) == 1, f"volume {name}: {found}"
    return found[0]


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def decode(secret: Mapping[str, Any], key: str) -> str:
    return base64.b64decode(secret["data"][key]).decode()


def group_numbers(rendered: Rendered) -> list[int]:
    return sorted(int(s["metadata"]["labels"]["citus-group"]) for s in rendered.statefulsets)


def flatten(items: Iterable[Iterable[Any]]) -> list[Any]:
    return [x for group in items for x in group]
