"""Names in certificates: IP or DNS, the SANs a certificate carries, and whether it covers a host as libpq decides."""

from __future__ import annotations

import ipaddress
import re
from typing import Iterable, List, Optional, Tuple

from cryptography import x509
from cryptography.x509.oid import NameOID

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_INET_PART = re.compile(r"0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*")  # one part of an inet_aton address


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

    The SANs are taken in order and the first match wins: a dNSName is compared with the
    host as text (also when the host is an IP address), with `*` standing for the whole
    left-most label only; an iPAddress with the host's address, when the host is one in
    libpq's reading (inet_aton, so '127.1' is 127.0.0.1; inet_pton for IPv6). A name with
    an embedded NUL ends the search with a refusal, as libpq does. The CN is compared only
    when no SAN is of the host's own kind. Case does not matter; a trailing dot is not
    stripped.
    """
    host = host.strip("[]").lower()
    address = libpq_address(host)
    try:
        sans = list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        sans = []
    for san in sans:
        if isinstance(san, x509.DNSName):
            if "\x00" in san.value:
                return False  # "SSL certificate's name contains embedded null"
            if _dns_matches(san.value, host):
                return True
        elif isinstance(san, x509.IPAddress) and address is not None and _packed(san.value) == address:
            return True
    own_kind = x509.IPAddress if address is not None else x509.DNSName
    if any(isinstance(san, own_kind) for san in sans):
        return False
    cn = common_name(cert)
    return cn is not None and "\x00" not in cn and _dns_matches(cn, host)


def _packed(value: object) -> Optional[bytes]:
    return value.packed if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)) else None


def libpq_address(host: str) -> Optional[bytes]:
    """The address libpq reads `host` as (is_ip_address in fe-secure-openssl.c), packed, or None for a name.

    IPv4 follows glibc's inet_aton: one to four parts, each decimal, octal (leading 0) or
    hex (0x), the last filling the remaining bytes, anything after white space ignored.
    """
    if ":" in host:
        if "%" in host:  # inet_pton knows no zone index
            return None
        try:
            return ipaddress.IPv6Address(host).packed
        except ValueError:
            return None
    parts = re.split(r"[ \t\n\v\f\r]", host, maxsplit=1)[0].split(".")
    if not 1 <= len(parts) <= 4 or not all(_INET_PART.fullmatch(p) for p in parts):
        return None
    values = [int(p, 16) if p[:2] in ("0x", "0X") else int(p, 8) if p.startswith("0") else int(p) for p in parts]
    last_bytes = 5 - len(values)
    if any(v > 255 for v in values[:-1]) or values[-1] >= 256 ** last_bytes:
        return None
    return bytes(values[:-1]) + values[-1].to_bytes(last_bytes, "big")


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
