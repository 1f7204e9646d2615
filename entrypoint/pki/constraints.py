"""Name constraints as OpenSSL 3.0 applies them (x509_vfy.c check_name_constraints, v3_ncons.c).

Every certificate of the path below a CA that carries nameConstraints is checked against
them: its subject as a directoryName, the emailAddress attributes of its subject, every
subjectAltName, and for the leaf without a dNSName SAN each CN that looks like a host
name. A name meets only the subtrees of its own type; when permitted subtrees of that
type exist one must match, and no excluded one may. Self-issued intermediates are skipped.
"""

from __future__ import annotations

import ipaddress
from typing import Any, List, Optional, Sequence

from cryptography import x509
from cryptography.x509.oid import NameOID

from entrypoint.pki.names import same_name

_TAIL = "checked against the root certificate file"


def name_constraints_problem(path: Sequence[x509.Certificate]) -> Optional[str]:
    """None when every name below each constraining CA fits its constraints, else why not (one line)."""
    for depth in range(len(path) - 1, -1, -1):
        cert = path[depth]
        if depth != 0 and same_name(cert.subject, cert.issuer):
            continue
        for ca in path[depth + 1:]:
            try:
                nc = ca.extensions.get_extension_for_class(x509.NameConstraints).value
            except x509.ExtensionNotFound:
                continue
            name = next((n for n in _names(cert, leaf=depth == 0) if not _fits(n, nc)), None)
            if name is not None:
                via = "" if depth == 0 else f"chains through intermediate {cert.subject.rfc4514_string()!r}, which "
                return (f"{via}has the name {_show(name)}, outside the name constraints of "
                        f"{ca.subject.rfc4514_string()!r}, {_TAIL}")
    return None


def _names(cert: x509.Certificate, leaf: bool) -> List[x509.GeneralName]:
    names: List[x509.GeneralName] = []
    if len(cert.subject) > 0:
        names.append(x509.DirectoryName(cert.subject))
        names += [x509.RFC822Name(str(a.value)) for a in cert.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS)]
    try:
        sans = list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        sans = []
    names += sans
    if leaf and not any(isinstance(n, x509.DNSName) for n in sans):
        cns = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        names += [x509.DNSName(cn) for cn in cns if _looks_like_host(cn)]
    return names


def _looks_like_host(cn: str) -> bool:
    """cn2dnsid: letters, digits, '_', and '-' or '.' inside; at least one '.' between two labels."""
    dotted = False
    for i, c in enumerate(cn):
        if c.isascii() and (c.isalnum() or c == "_"):
            continue
        inside = 0 < i < len(cn) - 1
        if inside and c == "-":
            continue
        if inside and c == "." and cn[i + 1] not in ".-" and cn[i - 1] != "-":
            dotted = True
            continue
        return False
    return dotted


_SUPPORTED = (x509.DNSName, x509.IPAddress, x509.DirectoryName, x509.RFC822Name, x509.UniformResourceIdentifier)


def _fits(name: x509.GeneralName, nc: x509.NameConstraints) -> bool:
    """nc_match: a permitted subtree of the name's type must match if any exist; no excluded one may.

    A name of a type OpenSSL cannot compare (otherName, registeredID...) that meets a
    subtree of its type fails (X509_V_ERR_UNSUPPORTED_CONSTRAINT_TYPE).
    """
    permitted = [s for s in nc.permitted_subtrees or () if type(s) is type(name)]
    excluded = [s for s in nc.excluded_subtrees or () if type(s) is type(name)]
    if not isinstance(name, _SUPPORTED):
        return not (permitted or excluded)
    if permitted and not any(_match(name, s) for s in permitted):
        return False
    return not any(_match(name, s) for s in excluded)


def _match(name: x509.GeneralName, base: x509.GeneralName) -> bool:
    value: Any = name.value
    if isinstance(name, x509.DNSName):
        return _dns(value, base.value)
    if isinstance(name, x509.IPAddress):
        net = base.value
        return isinstance(net, (ipaddress.IPv4Network, ipaddress.IPv6Network)) and value.version == net.version \
            and int(value) & int(net.netmask) == int(net.network_address) & int(net.netmask)
    if isinstance(name, x509.DirectoryName):
        return _dn_prefix(base.value, value)
    if isinstance(name, x509.RFC822Name):
        return _email(value, base.value)
    return _uri(value, base.value)


def _dns(name: str, base: str) -> bool:
    """nc_dns: the base's labels end the name; 'example.com' also covers 'a.example.com'."""
    if not base:
        return True
    if len(name) < len(base):
        return False
    if len(name) > len(base) and not base.startswith(".") and name[-len(base) - 1] != ".":
        return False
    return name[-len(base):].lower() == base.lower()


def _dn_prefix(base: x509.Name, name: x509.Name) -> bool:
    """nc_dn: the base's RDNs start the subject's (canonical comparison)."""
    return len(base.rdns) <= len(name.rdns) and same_name(base, x509.Name(name.rdns[:len(base.rdns)]))


def _email(address: str, base: str) -> bool:
    """nc_email: '.domain' matches any host below it, 'host' the host, 'local@host' that address."""
    if "@" not in address:
        return False
    local, _, host = address.rpartition("@")
    if "@" not in base and base.startswith("."):
        return len(address) > len(base) and address[-len(base):].lower() == base.lower()
    if "@" in base:
        base_local, _, base = base.partition("@")
        if base_local and base_local != local:
            return False
    return host.lower() == base.lower()


def _uri(uri: str, base: str) -> bool:
    """nc_uri: the host of scheme://host[:port][/...] against '.domain' (below it) or a host (equal)."""
    scheme, sep, rest = uri.partition("://")
    host = rest.split(":", 1)[0].split("/", 1)[0] if sep and scheme else ""
    if not host:
        return False
    if base.startswith("."):
        return len(host) > len(base) and host[-len(base):].lower() == base.lower()
    return host.lower() == base.lower()


def _show(name: x509.GeneralName) -> str:
    value = name.value.rfc4514_string() if isinstance(name, x509.DirectoryName) else str(name.value)
    return repr(value)
