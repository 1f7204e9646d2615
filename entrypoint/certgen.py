"""Certificate generation for a cluster: names, CA, server and client certificates, manifests.

Everything here but `write_files` is pure: it takes values and returns objects or bytes,
so tests call it with in-memory keys and a fixed clock. `write_files` is the one place
that touches the disk, and it never leaves a partial set behind.
"""

from __future__ import annotations

import datetime as dt
import errno
import ipaddress
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence, Tuple, Union

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = Union[rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey]

# ECDSA P-256 is the default: bench/handshake measured it well ahead of RSA-2048 on new
# TLS connections per second (the server signs every handshake), see docs/certificates.md.
KEY_TYPES: tuple[str, ...] = ("ecdsa-p256", "rsa-2048", "rsa-3072", "rsa-4096")
DEFAULT_KEY_TYPE = "ecdsa-p256"
DEFAULT_CLUSTER = "citusdemo"
DEFAULT_NAMESPACE = "default"
DEFAULT_DOMAIN = "cluster.local"
DEFAULT_GROUPS = 3
DEFAULT_CA_DAYS = 3650
DEFAULT_SERVER_DAYS = 1095
MAX_GROUPS = 1000
# Certificates start a little in the past so a node whose clock lags does not reject them.
BACKDATE = dt.timedelta(minutes=5)

SECRET_TYPES: tuple[str, ...] = ("opaque", "tls")

_LABEL_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_LABEL_1035 = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_CLIENT_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,62}$")
# `-workers` is appended to the cluster name and a Service name is at most 63 characters.
_MAX_CLUSTER_LEN = 63 - len("-workers")


class CertInputError(ValueError):
    """Bad input for certificate generation; `problems` holds one message per problem."""

    def __init__(self, problems: Sequence[str]):
        super().__init__("\n".join(problems))
        self.problems = list(problems)


@dataclass(frozen=True)
class ClusterNames:
    """The Kubernetes names a cluster's certificates must cover."""

    cluster: str = DEFAULT_CLUSTER
    namespace: str = DEFAULT_NAMESPACE
    domain: str = DEFAULT_DOMAIN
    groups: int = DEFAULT_GROUPS
    extra: tuple[str, ...] = field(default_factory=tuple)


def check_cluster_names(names: ClusterNames) -> list[str]:
    """Return one message per invalid field of `names` (empty when all are valid)."""
    problems: list[str] = []
    if len(names.cluster) > _MAX_CLUSTER_LEN or not _LABEL_1035.match(names.cluster):
        problems.append(
            f"cluster name {names.cluster!r} (CLUSTER_NAME or --cluster) is not valid: Services "
            f"'<cluster>-<group>' and '<cluster>-workers' must be DNS-1035 labels, so use "
            f"lowercase letters, digits and '-', start with a letter, end with a letter or "
            f"digit, at most {_MAX_CLUSTER_LEN} characters (e.g. {DEFAULT_CLUSTER})")
    if not _LABEL_1123.match(names.namespace):
        problems.append(
            f"namespace {names.namespace!r} (NAMESPACE or --namespace) is not a valid Kubernetes namespace: use "
            f"lowercase letters, digits and '-', start and end with a letter or digit, at "
            f"most 63 characters (e.g. {DEFAULT_NAMESPACE})")
    domain_problem = _dns_name_problem(names.domain, wildcard_ok=False)
    if domain_problem:
        problems.append(f"cluster domain {names.domain!r} (PCK_CLUSTER_DOMAIN or --domain) is not valid: {domain_problem}; "
                        f"use your cluster's DNS domain (e.g. {DEFAULT_DOMAIN})")
    if not 1 <= names.groups <= MAX_GROUPS:
        problems.append(f"--groups {names.groups} is out of range: give the number of Citus groups "
                        f"(coordinator 0 plus workers), between 1 and {MAX_GROUPS}")
    for extra in names.extra:
        problem = san_problem(extra)
        if problem:
            problems.append(f"--san {extra!r} is not a valid certificate name: {problem}")
    if not problems:
        longest = max(server_names(names), key=len)
        if san_problem(longest):
            problems.append(f"the name {longest!r} built from the cluster name, namespace and domain is "
                            f"not a valid DNS name ({san_problem(longest)}): shorten one of them")
    return problems


def _dns_name_problem(name: str, wildcard_ok: bool) -> str | None:
    """Return why `name` is not a DNS name a hostname check can match, or None."""
    if not name:
        return "it is empty"
    if name != name.lower():
        return "it has uppercase letters; DNS names in certificates are lowercase"
    if len(name) > 253:
        return "it is longer than 253 characters"
    if name.endswith("."):
        return "it ends with '.'; write the name without the trailing dot"
    labels = name.split(".")
    for index, label in enumerate(labels):
        if "*" in label:
            if not wildcard_ok:
                return "it contains '*'; only a certificate name may be a wildcard"
            if index != 0 or label != "*":
                return ("a wildcard must be the whole left-most label ('*.example.com'); "
                        "libpq and other hostname checks do not match '*' inside or after "
                        "a label, so a name like '*.citusdemo-*.default.svc' never matches "
                        "anything. List the names instead (the group Services are added "
                        "for you) or use '*.<cluster>.<namespace>.svc.<domain>' for pods")
            if len(labels) < 3:
                return "a wildcard needs at least two labels after '*.' ('*.example.com')"
            continue
        if not _DNS_LABEL.match(label):
            return (f"label {label!r} is not a DNS label (letters, digits, '-', at most 63 "
                    f"characters, not starting or ending with '-')")
    return None


def san_problem(name: str) -> str | None:
    """Return why `name` cannot be a subjectAltName entry, or None for an IP or DNS name."""
    try:
        ipaddress.ip_address(name)
        return None
    except ValueError:
        pass
    return _dns_name_problem(name.lower(), wildcard_ok=True)


def server_names(names: ClusterNames) -> list[str]:
    """Return every name the server certificate carries, in a stable order, without duplicates.

    Pods are reached through the headless Service named after the cluster, so one
    wildcard covers all of them; each group's Service, the workers Service and the
    headless Service are listed in the four forms a client in the cluster may use.
    """
    c, ns, domain = names.cluster, names.namespace, names.domain
    services = [c] + [f"{c}-{group}" for group in range(names.groups)] + [f"{c}-workers"]
    out: list[str] = [f"*.{c}.{ns}.svc.{domain}"]
    for service in services:
        out += [service, f"{service}.{ns}", f"{service}.{ns}.svc", f"{service}.{ns}.svc.{domain}"]
    out += ["localhost", "127.0.0.1", "::1"]
    out += [_normalise_san(extra) for extra in names.extra]
    return list(dict.fromkeys(out))


def _normalise_san(name: str) -> str:
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name.lower()


def san_entries(names: Iterable[str]) -> list[x509.GeneralName]:
    """Return the SAN entries for `names`: IP addresses as iPAddress, the rest as dNSName."""
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return entries


def check_key_type(key_type: str) -> str | None:
    """Return why `key_type` is not supported, or None."""
    if key_type in KEY_TYPES:
        return None
    return (f"--key-type {key_type!r} is not supported: choose one of {', '.join(KEY_TYPES)} "
            f"(default {DEFAULT_KEY_TYPE})")


def new_private_key(key_type: str) -> PrivateKey:
    """Return a fresh private key of `key_type` (one of KEY_TYPES); raises ValueError otherwise."""
    problem = check_key_type(key_type)
    if problem:
        raise ValueError(problem)
    if key_type == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type.split("-")[1]))


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _leaf_key_usage(key: PrivateKey) -> x509.KeyUsage:
    # RSA key exchange (TLS 1.2 non-ECDHE suites) needs keyEncipherment; ECDSA keys only sign.
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False,
        key_encipherment=isinstance(key, rsa.RSAPrivateKey), data_encipherment=False,
        key_agreement=False, key_cert_sign=False, crl_sign=False,
        encipher_only=False, decipher_only=False)


def issue_ca(key: PrivateKey, common_name: str, days: int, now: dt.datetime) -> x509.Certificate:
    """Return a self-signed CA certificate valid `days` days from `now` that may sign leaves only."""
    subject = _name(common_name, "patroni-citus-k8s")
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _issue_leaf(ca_cert: x509.Certificate, ca_key: PrivateKey, key: PrivateKey,
                common_name: str, days: int, now: dt.datetime,
                usages: list[x509.ObjectIdentifier],
                sans: Sequence[str] | None) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_leaf_key_usage(key), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(san_entries(sans)), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def issue_server_cert(ca_cert: x509.Certificate, ca_key: PrivateKey, key: PrivateKey,
                      names: Sequence[str], common_name: str, days: int,
                      now: dt.datetime) -> x509.Certificate:
    """Return a server certificate for `names` signed by the CA.

    It carries serverAuth and clientAuth because members present it as their client
    certificate when mutual TLS is on.
    """
    return _issue_leaf(ca_cert, ca_key, key, common_name, days, now,
                       [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH], names)


def issue_client_cert(ca_cert: x509.Certificate, ca_key: PrivateKey, key: PrivateKey,
                      user: str, days: int, now: dt.datetime) -> x509.Certificate:
    """Return a client certificate with CN=`user` (the role pg_hba `clientcert=verify-full` checks)."""
    return _issue_leaf(ca_cert, ca_key, key, user, days, now, [ExtendedKeyUsageOID.CLIENT_AUTH], None)


def check_client_name(user: str) -> str | None:
    """Return why `user` cannot name a client certificate (and its file), or None."""
    if _CLIENT_NAME.match(user):
        return None
    return (f"--client {user!r} is not a usable role name: use 1 to 63 letters, digits, '_', "
            f"'.', '@' or '-', not starting with '.' or '-' (it becomes CN={user} and the "
            f"file name client-<name>.crt)")


def cert_pem(cert: x509.Certificate) -> bytes:
    """Return `cert` as PEM."""
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: PrivateKey) -> bytes:
    """Return `key` as unencrypted PKCS#8 PEM (PostgreSQL cannot prompt for a passphrase)."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def describe_key_type(key: object) -> str:
    """Return the KEY_TYPES spelling for a key, e.g. 'ecdsa-p256' or 'rsa-2048'."""
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return f"rsa-{key.key_size}"
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        if isinstance(key.curve, ec.SECP256R1):
            return "ecdsa-p256"
        return f"ecdsa-{key.curve.name}"
    return type(key).__name__


# --- Kubernetes manifests -----------------------------------------------------------------

def secret_name(cluster: str) -> str:
    """Return the name of the Secret the chart mounts (the seed's `<cluster>-ssl-certs`)."""
    return f"{cluster}-ssl-certs"


def kubectl_create_secret_command(cluster: str, namespace: str, out_dir: str) -> str:
    """Return the seed's `kubectl create secret generic` command for files in `out_dir`."""
    d = out_dir.rstrip("/") or "."
    return (f"kubectl create secret generic {secret_name(cluster)} \\\n"
            f"  --from-file=ca.crt={d}/ca.crt \\\n"
            f"  --from-file=server.crt={d}/server.crt \\\n"
            f"  --from-file=server.key={d}/server.key \\\n"
            f"  --namespace={namespace}")


def secret_manifest(cluster: str, namespace: str, ca_crt: bytes, server_crt: bytes,
                    server_key: bytes, secret_type: str = "opaque") -> str:
    """Return a Secret manifest holding the CA, server certificate and key.

    `opaque` uses the seed's file names (ca.crt, server.crt, server.key); `tls` is a
    kubernetes.io/tls Secret (tls.crt, tls.key, ca.crt), the names cert-manager writes.
    Both are read by the entrypoint.
    """
    import base64

    import yaml

    if secret_type == "tls":
        kind, files = "kubernetes.io/tls", {"ca.crt": ca_crt, "tls.crt": server_crt, "tls.key": server_key}
    elif secret_type == "opaque":
        kind, files = "Opaque", {"ca.crt": ca_crt, "server.crt": server_crt, "server.key": server_key}
    else:
        raise ValueError(f"secret type {secret_type!r} is not one of {SECRET_TYPES}")
    manifest = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": secret_name(cluster), "namespace": namespace,
                     "labels": {"app.kubernetes.io/name": cluster}},
        "type": kind,
        "data": {name: base64.b64encode(data).decode("ascii") for name, data in files.items()},
    }
    return yaml.safe_dump(manifest, sort_keys=False)


def ca_secret_name(cluster: str) -> str:
    """Return the name of the Secret holding the CA for cert-manager's CA Issuer."""
    return f"{cluster}-ca"


def kubectl_create_ca_secret_command(cluster: str, namespace: str, out_dir: str) -> str:
    """Return the command that stores the CA where the cert-manager Issuer reads it."""
    d = out_dir.rstrip("/") or "."
    return (f"kubectl create secret tls {ca_secret_name(cluster)} \\\n"
            f"  --cert={d}/ca.crt --key={d}/ca.key \\\n"
            f"  --namespace={namespace}")


def cert_manager_manifests(names: ClusterNames, key_type: str, days: int) -> str:
    """Return an Issuer (CA issuer over the `<cluster>-ca` Secret) and a Certificate.

    The Certificate asks for the same dnsNames and IP addresses as `certs generate` puts
    in server.crt, and cert-manager writes it to `<cluster>-ssl-certs` as ca.crt, tls.crt
    and tls.key, which the entrypoint reads.
    """
    import yaml

    sans = server_names(names)
    dns = [n for n in sans if not _is_ip(n)]
    ips = [n for n in sans if _is_ip(n)]
    hours = days * 24
    renew_hours = min(30 * 24, hours // 3)
    if key_type == "ecdsa-p256":
        private_key = {"algorithm": "ECDSA", "size": 256}
    else:
        private_key = {"algorithm": "RSA", "size": int(key_type.split("-")[1])}
    usages = ["server auth", "client auth", "digital signature"]
    if private_key["algorithm"] == "RSA":
        usages.append("key encipherment")
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
            "renewBefore": f"{renew_hours}h",
            "commonName": names.cluster,
            "dnsNames": dns,
            "ipAddresses": ips,
            "privateKey": {**private_key, "rotationPolicy": "Always"},
            "usages": usages,
            "issuerRef": {"name": f"{names.cluster}-ca-issuer", "kind": "Issuer",
                          "group": "cert-manager.io"},
        },
    }
    return yaml.safe_dump_all([issuer, certificate], sort_keys=False)


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


# --- Writing --------------------------------------------------------------------------------

@dataclass(frozen=True)
class OutputFile:
    """One file to write: its name inside the output directory, content and mode."""

    name: str
    content: bytes
    mode: int


def write_files(out_dir: str, files: Sequence[OutputFile], replace: bool) -> None:
    """Write `files` into `out_dir` all together or not at all.

    Each file is created in a private temporary directory inside `out_dir` with
    O_CREAT|O_EXCL and its final mode (keys are never readable by others, not even for
    an instant), then linked into place. Without `replace`, an existing file is never
    touched (os.link refuses to overwrite); with it, the old file is kept aside until
    every new file is in place. On any error the directory is as it was before.

    Raises OSError (FileExistsError when a file exists and `replace` is false).
    """
    staging = tempfile.mkdtemp(prefix=".certs-", dir=out_dir)
    placed: list[tuple[str, str | None]] = []  # (destination, kept-aside old file)
    try:
        for f in files:
            fd = os.open(os.path.join(staging, f.name), os.O_CREAT | os.O_EXCL | os.O_WRONLY, f.mode)
            with os.fdopen(fd, "wb") as handle:
                handle.write(f.content)
                handle.flush()
                os.fsync(handle.fileno())
        for f in files:
            new, dest = os.path.join(staging, f.name), os.path.join(out_dir, f.name)
            old = None
            if replace and os.path.lexists(dest):
                old = os.path.join(staging, f.name + ".old")
                os.link(dest, old, follow_symlinks=False)
                os.replace(new, dest)
            else:
                _link_new(new, dest)
            placed.append((dest, old))
    except BaseException:
        for dest, old in reversed(placed):
            if old:
                os.replace(old, dest)
            else:
                os.unlink(dest)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _fsync_dir(out_dir)


def _link_new(src: str, dest: str) -> None:
    """Put `src` at `dest`, failing with FileExistsError rather than overwriting."""
    try:
        os.link(src, dest)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        # Some filesystems have no hard links; the existence check then has a small race.
        if os.path.lexists(dest):
            raise FileExistsError(errno.EEXIST, "File exists", dest) from exc
        os.rename(src, dest)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def utc_now() -> dt.datetime:
    """Return the current time, timezone-aware UTC."""
    return dt.datetime.now(dt.timezone.utc)


def load_ca(cert_pem_bytes: bytes, key_pem_bytes: bytes) -> tuple[x509.Certificate, PrivateKey]:
    """Return the CA certificate and key from PEM; raises ValueError if unusable as a CA."""
    cert = x509.load_pem_x509_certificate(cert_pem_bytes)
    key = serialization.load_pem_private_key(key_pem_bytes, password=None)
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise ValueError(f"the CA key is {type(key).__name__}; only RSA and ECDSA keys are supported")
    if cert.public_key().public_bytes(serialization.Encoding.DER,
                                      serialization.PublicFormat.SubjectPublicKeyInfo) != \
            key.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo):
        raise ValueError("the CA key does not belong to the CA certificate")
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise ValueError("the CA certificate is not a CA (basicConstraints CA:TRUE is missing)")
    return cert, key


# --- What one `certs generate` produces ---------------------------------------------------

MAX_DAYS = 36500


@dataclass(frozen=True)
class GenerateRequest:
    """Everything `certs generate` was asked for, already parsed."""

    names: ClusterNames = field(default_factory=ClusterNames)
    key_type: str = DEFAULT_KEY_TYPE
    ca_days: int = DEFAULT_CA_DAYS
    server_days: int = DEFAULT_SERVER_DAYS
    clients: tuple[str, ...] = ()
    renew: bool = False
    secret_type: Optional[str] = None
    cert_manager: bool = False


SECRET_FILE = "secret.yaml"
CERT_MANAGER_FILE = "cert-manager.yaml"


def check_request(request: GenerateRequest) -> list[str]:
    """Return one message per problem in `request` (empty when it can be generated)."""
    problems = check_cluster_names(request.names)
    key_problem = check_key_type(request.key_type)
    if key_problem:
        problems.append(key_problem)
    for flag, days in (("--ca-days", request.ca_days), ("--server-days", request.server_days)):
        if not 1 <= days <= MAX_DAYS:
            problems.append(f"{flag} {days} is out of range: give a number of days between 1 and {MAX_DAYS}")
    if not request.renew and request.server_days > request.ca_days:
        problems.append(f"--server-days {request.server_days} is longer than --ca-days {request.ca_days}: "
                        f"a certificate cannot outlive the CA that signed it; shorten --server-days "
                        f"or lengthen --ca-days")
    for user in request.clients:
        problem = check_client_name(user)
        if problem:
            problems.append(problem)
    if request.secret_type is not None and request.secret_type not in SECRET_TYPES:
        problems.append(f"--k8s-secret {request.secret_type!r} is not a Secret layout: choose "
                        f"'opaque' (ca.crt, server.crt, server.key) or 'tls' (kubernetes.io/tls)")
    return problems


def output_names(request: GenerateRequest) -> list[str]:
    """Return the names of the files `request` writes, in writing order."""
    out = [] if request.renew else ["ca.crt", "ca.key"]
    out += ["server.crt", "server.key"]
    for user in request.clients:
        out += [f"client-{user}.crt", f"client-{user}.key"]
    if request.secret_type:
        out.append(SECRET_FILE)
    if request.cert_manager:
        out.append(CERT_MANAGER_FILE)
    return out


def build_outputs(request: GenerateRequest, now: dt.datetime,
                  ca: Optional[Tuple[x509.Certificate, PrivateKey]] = None) -> list[OutputFile]:
    """Return the files for `request`: a new CA unless `ca` is given (renewal), then the leaves.

    Raises CertInputError when the request is invalid or a leaf would outlive the CA.
    """
    problems = check_request(request)
    if ca is not None:
        remaining = ca[0].not_valid_after_utc - now
        if dt.timedelta(days=request.server_days) > remaining:
            problems.append(
                f"--server-days {request.server_days} is longer than the {max(remaining.days, 0)} days "
                f"the existing CA has left (it expires {ca[0].not_valid_after_utc:%Y-%m-%d}): shorten "
                f"--server-days, or make a new CA with --force (every node and client must then "
                f"trust the new ca.crt)")
    if problems:
        raise CertInputError(problems)
    files: list[OutputFile] = []
    if ca is None:
        ca_key = new_private_key(request.key_type)
        ca_cert = issue_ca(ca_key, f"{request.names.cluster}-ca", request.ca_days, now)
        files += [OutputFile("ca.crt", cert_pem(ca_cert), 0o644), OutputFile("ca.key", key_pem(ca_key), 0o600)]
    else:
        ca_cert, ca_key = ca
    server_key = new_private_key(request.key_type)
    server_cert = issue_server_cert(ca_cert, ca_key, server_key, server_names(request.names),
                                    request.names.cluster, request.server_days, now)
    files += [OutputFile("server.crt", cert_pem(server_cert), 0o644),
              OutputFile("server.key", key_pem(server_key), 0o600)]
    for user in request.clients:
        client_key = new_private_key(request.key_type)
        client_cert = issue_client_cert(ca_cert, ca_key, client_key, user, request.server_days, now)
        files += [OutputFile(f"client-{user}.crt", cert_pem(client_cert), 0o644),
                  OutputFile(f"client-{user}.key", key_pem(client_key), 0o600)]
    if request.secret_type:
        manifest = secret_manifest(request.names.cluster, request.names.namespace, cert_pem(ca_cert),
                                   cert_pem(server_cert), key_pem(server_key), request.secret_type)
        files.append(OutputFile(SECRET_FILE, manifest.encode(), 0o600))
    if request.cert_manager:
        manifest = cert_manager_manifests(request.names, request.key_type, request.server_days)
        files.append(OutputFile(CERT_MANAGER_FILE, manifest.encode(), 0o644))
    return files
