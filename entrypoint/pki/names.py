"""Names in certificates: IP or DNS, the SANs a certificate carries, and whether it covers a host as libpq decides."""

from __future__ import annotations

import ipaddress
import re
from typing import Iterable, List, Optional, Tuple

from cryptography import x509
from cryptography.x509.oid import NameOID

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def is_ip(name: str) -> bool:
    """The one classifier: True when `name` is an IPv4 or IPv6 address (brackets allowed), else it is a DNS name."""
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


def normalise(name: str) -> str:
    """An IP address in its canonical form, a DNS name in lowercase."""
    return str(ipaddress.ip_address(name.strip("[]"))) if is_ip(name) else name.lower()


def general_names(names: Iterable[str]) -> List[x509.GeneralName]:
    """SAN entries for `names`: IP addresses as iPAddress, the rest as dNSName."""
    return [x509.IPAddress(ipaddress.ip_address(n.strip("[]"))) if is_ip(n) else x509.DNSName(n) for n in names]


def san_names(cert: x509.Certificate) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    """Return (dns names, ip addresses as strings) from the subjectAltName extension."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return (), ()
    dns = tuple(ext.get_values_for_type(x509.DNSName))
    ips = tuple(str(ip) for ip in ext.get_values_for_type(x509.IPAddress))
    return dns, ips


def common_name(cert: x509.Certificate) -> Optional[str]:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else None


def same_name(a: x509.Name, b: x509.Name) -> bool:
    """OpenSSL's X509_NAME_cmp, which compares canonical encodings: per attribute, case and runs of white space
    do not matter (cryptography's == compares the values exactly)."""
    return _canonical(a) == _canonical(b)


def _canonical(name: x509.Name) -> tuple:
    return tuple(tuple(sorted((attr.oid.dotted_string, " ".join(str(attr.value).split()).lower()
                               if isinstance(attr.value, str) else repr(attr.value)) for attr in rdn))
                 for rdn in name.rdns)


def name_covered(cert: x509.Certificate, host: str) -> bool:
    """True when libpq's verify-full would accept `cert` for `host` (fe-secure-openssl.c, PostgreSQL 15).

    Every dNSName SAN is compared with the host as text (also when the host is an IP
    address), with `*` standing for the whole left-most label only; iPAddress SANs are
    compared as addresses when the host is one. The CN is compared only when no SAN is
    of the host's own kind. Case does not matter; a trailing dot is not stripped.
    """
    dns, ips = san_names(cert)
    host = host.strip("[]").lower()
    if any(_dns_matches(pattern, host) for pattern in dns):
        return True
    host_is_ip = is_ip(host)
    if host_is_ip and any(ipaddress.ip_address(ip) == ipaddress.ip_address(host) for ip in ips):
        return True
    if ips if host_is_ip else dns:
        return False
    cn = common_name(cert)
    return cn is not None and _dns_matches(cn, host)


def _dns_matches(pattern: str, host: str) -> bool:
    pattern = pattern.lower()
    if pattern.startswith("*."):
        first, _, rest = host.partition(".")
        return bool(first) and rest == pattern[2:]
    return pattern == host


def dns_name_problem(name: str, wildcard_ok: bool) -> Optional[str]:
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


def san_problem(name: str) -> Optional[str]:
    """Return why `name` cannot be a subjectAltName entry, or None for an IP or DNS name."""
    if is_ip(name):
        return None
    return dns_name_problem(name.lower(), wildcard_ok=True)
