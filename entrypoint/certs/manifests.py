"""What to hand to Kubernetes: Secret manifests, the kubectl lines that create them, cert-manager objects."""

from __future__ import annotations

import base64
from typing import Dict, Optional, Sequence, Tuple

from entrypoint import layout
from entrypoint.certs.names import ClusterNames, server_names
from entrypoint.pki.keys import key_type
from entrypoint.pki.names import is_ip

SECRET_TYPES: Tuple[str, ...] = ("opaque", "tls")


def secret_name(cluster: str) -> str:
    """Return the name of the Secret the chart mounts (the seed's `<cluster>-ssl-certs`)."""
    return f"{cluster}-ssl-certs"


def ca_secret_name(cluster: str) -> str:
    """Return the name of the Secret holding the CA for cert-manager's CA Issuer."""
    return f"{cluster}-ca"


def _kubectl_secret(kind: str, name: str, namespace: str, flags: Sequence[str]) -> str:
    """`kubectl create secret <kind> <name>` with one flag per line, as the seed writes it."""
    return " \\\n  ".join([f"kubectl create secret {kind} {name}"] + list(flags) + [f"--namespace={namespace}"])


def kubectl_create_secret_command(cluster: str, namespace: str, out_dir: str, crl: bool = False,
                                  apply: bool = False) -> str:
    """Return the seed's `kubectl create secret generic` command for files in `out_dir`.

    With `crl` it also carries ca.crl; with `apply` it updates an existing Secret in place
    (`--dry-run=client -o yaml | kubectl apply -f -`), which the running members pick up.
    """
    d = out_dir.rstrip("/") or "."
    files = (layout.CA_FILE, layout.CERT_FILE, layout.KEY_FILE) + ((layout.CRL_FILE,) if crl else ())
    command = _kubectl_secret("generic", secret_name(cluster), namespace, [f"--from-file={n}={d}/{n}" for n in files])
    return command + " \\\n  --dry-run=client -o yaml | kubectl apply -f -" if apply else command


def kubectl_create_ca_secret_command(cluster: str, namespace: str, out_dir: str) -> str:
    """Return the command that stores the CA where the cert-manager Issuer reads it."""
    d = out_dir.rstrip("/") or "."
    flag = f"--cert={d}/{layout.CA_FILE} --key={d}/{layout.CA_KEY_FILE}"
    return _kubectl_secret("tls", ca_secret_name(cluster), namespace, [flag])


def secret_manifest(cluster: str, namespace: str, ca_crt: bytes, server_crt: bytes,
                    server_key: bytes, secret_type: str = "opaque", ca_crl: Optional[bytes] = None) -> str:
    """Return a Secret manifest holding the CA, server certificate and key.

    `opaque` uses the seed's file names (ca.crt, server.crt, server.key); `tls` is a
    kubernetes.io/tls Secret (tls.crt, tls.key, ca.crt), the names cert-manager writes.
    Both are read by the entrypoint.
    """
    import yaml

    files: Dict[str, bytes]
    if secret_type == "tls":
        kind = "kubernetes.io/tls"
        files = {layout.CA_FILE: ca_crt, layout.CM_CERT_FILE: server_crt, layout.CM_KEY_FILE: server_key}
    elif secret_type == "opaque":
        kind = "Opaque"
        files = {layout.CA_FILE: ca_crt, layout.CERT_FILE: server_crt, layout.KEY_FILE: server_key}
    else:
        raise ValueError(f"secret type {secret_type!r} is not one of {SECRET_TYPES}")
    if ca_crl is not None:
        files[layout.CRL_FILE] = ca_crl
    manifest = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": secret_name(cluster), "namespace": namespace,
                     "labels": {"app.kubernetes.io/name": cluster}},
        "type": kind,
        "data": {name: base64.b64encode(data).decode("ascii") for name, data in files.items()},
    }
    return yaml.safe_dump(manifest, sort_keys=False)


def cert_manager_manifests(names: ClusterNames, key_type_name: str, days: int) -> str:
    """Return an Issuer (CA issuer over the `<cluster>-ca` Secret) and a Certificate.

    The Certificate asks for the same dnsNames and IP addresses as `certs generate` puts
    in server.crt, and cert-manager writes it to `<cluster>-ssl-certs` as ca.crt, tls.crt
    and tls.key, which the entrypoint reads.
    """
    import yaml

    kind = key_type(key_type_name)
    if kind is None:
        raise ValueError(f"unknown key type {key_type_name!r}")
    sans = server_names(names)
    hours = days * 24
    usages = ["server auth", "client auth", "digital signature"] + ([] if kind.signs_only else ["key encipherment"])
    issuer = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Issuer",
        "metadata": {"name": f"{names.cluster}-ca-issuer", "namespace": names.namespace},
        "spec": {"ca": {"secretName": ca_secret_name(names.cluster)}},
    }
    certificate = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": f"{names.cluster}-ssl", "namespace": names.namespace},
        "spec": {
            "secretName": secret_name(names.cluster),
            "duration": f"{hours}h",
            "renewBefore": f"{min(30 * 24, hours // 3)}h",
            "commonName": names.cluster,
            "dnsNames": [n for n in sans if not is_ip(n)],
            "ipAddresses": [n for n in sans if is_ip(n)],
            "privateKey": {"algorithm": kind.algorithm, "size": kind.size, "rotationPolicy": "Always"},
            "usages": usages,
            "issuerRef": {"name": f"{names.cluster}-ca-issuer", "kind": "Issuer", "group": "cert-manager.io"},
        },
    }
    return yaml.safe_dump_all([issuer, certificate], sort_keys=False)
