"""The differential corpus: certificate sets built with `cryptography` directly, each with the verdict a real
libpq/PostgreSQL 15 on Debian 12 (OpenSSL 3.0, security level 2) gives it.

Not the product's certgen and not tests/support/pki (whose defaults the product was written against): every
extension is spelled out here, so a set says exactly what it tests. `libpq` is the recorded verdict (True =
a verify-full connection succeeds); tests/differential checks it against a real server on every run, and
tests/unit/pki uses it as the expected answer in memory.

A set is "about" `host`: the name libpq checks at verify-full, and the connect address `check` is given.
`mutual` sets are also presented by the client (PostgreSQL checks them with clientcert=verify-ca), as members
do under PCK_CLIENT_CERT_AUTH=true.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

HOST = "db.example.test"
NOW = dt.datetime.now(dt.timezone.utc)
DAY = dt.timedelta(days=1)
SERVER, CLIENT = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH
BOTH = (SERVER, CLIENT)
UNKNOWN_OID = ObjectIdentifier("1.3.6.1.4.1.55555.1.1")  # a private arc: no verifier knows it
LEAF_KU = ("digital_signature",)
CA_KU = ("key_cert_sign", "crl_sign")
_KU_FIELDS = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
              "key_agreement", "key_cert_sign", "crl_sign")


@dataclass(frozen=True)
class Authority:
    cert: x509.Certificate
    key: Any


@dataclass(frozen=True)
class CertSet:
    """ca.crt, server.crt (leaf first, then whatever else the file carries) and server.key, and libpq's verdict."""

    name: str
    cas: Tuple[x509.Certificate, ...]
    chain: Tuple[x509.Certificate, ...]
    key: Any
    libpq: bool
    why: str
    host: str = HOST
    mutual: bool = False

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]

    @property
    def ca_pem(self) -> bytes:
        return b"".join(pem(c) for c in self.cas)

    @property
    def cert_pem(self) -> bytes:
        return b"".join(pem(c) for c in self.chain)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


_GENERATORS: Dict[str, Callable[[], Any]] = {
    "p256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "p384": lambda: ec.generate_private_key(ec.SECP384R1()),
    "p521": lambda: ec.generate_private_key(ec.SECP521R1()),
    "p192": lambda: ec.generate_private_key(ec.SECP192R1()),
    "p224": lambda: ec.generate_private_key(ec.SECP224R1()),
    "k256": lambda: ec.generate_private_key(ec.SECP256K1()),
    "rsa1024": lambda: rsa.generate_private_key(65537, 1024),
    "rsa2048": lambda: rsa.generate_private_key(65537, 2048),
    "rsa3072": lambda: rsa.generate_private_key(65537, 3072),
    "ed25519": ed25519.Ed25519PrivateKey.generate,
    "ed448": ed448.Ed448PrivateKey.generate,
}


@functools.lru_cache(maxsize=None)
def key(kind: str, label: str = "") -> Any:
    """One key per (kind, label): sets that share a label share the key (RSA generation is slow)."""
    return _GENERATORS[kind]()


def _name(cn: Optional[str]) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])


def _general(name: str) -> x509.GeneralName:
    if name.startswith("dns:"):  # a dNSName that holds an IP literal
        return x509.DNSName(name[4:])
    if name.startswith("mail:"):
        return x509.RFC822Name(name[5:])
    if name.startswith("uri:"):
        return x509.UniformResourceIdentifier(name[4:])
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _key_usage(names: Sequence[str]) -> x509.KeyUsage:
    flags = {f: f in names for f in _KU_FIELDS}
    return x509.KeyUsage(**flags, encipher_only=False, decipher_only=False)


@dataclass
class Spec:
    """Everything a certificate can differ in; the defaults make a good leaf."""

    cn: Optional[str] = HOST
    kind: str = "p256"
    label: str = "leaf"
    ca: Optional[bool] = False  # None: no basicConstraints at all
    pathlen: Optional[int] = None
    ku: Optional[Sequence[str]] = LEAF_KU
    eku: Optional[Sequence[ObjectIdentifier]] = BOTH
    sans: Sequence[str] = (HOST,)
    not_before: dt.datetime = NOW - DAY
    not_after: dt.datetime = NOW + 365 * DAY
    hash: Optional[hashes.HashAlgorithm] = field(default_factory=hashes.SHA256)
    extra: Sequence[Tuple[x509.ExtensionType, bool]] = ()
    aki: bool = True
    v1: bool = False
    pss: bool = False  # an RSA issuer signs with RSASSA-PSS


def make(spec: Spec, issuer: Optional[Authority] = None) -> Authority:
    """A certificate for `spec`, signed by `issuer` (self-signed without one)."""
    own = key(spec.kind, spec.label)
    signer = issuer.key if issuer else own
    b = (x509.CertificateBuilder().subject_name(_name(spec.cn))
         .issuer_name(issuer.cert.subject if issuer else _name(spec.cn))
         .public_key(own.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(spec.not_before).not_valid_after(spec.not_after))
    if spec.v1:
        b._version = x509.Version.v1  # no public API for v1; the builder writes whatever version it holds
    else:
        b = _extensions(b, spec, own, signer)
    if isinstance(spec.hash, hashes.SHA1):
        return Authority(_sha1(b.sign(signer, hashes.SHA256()), signer), own)
    if isinstance(signer, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
        return Authority(b.sign(signer, None), own)
    pss = padding.PSS(padding.MGF1(spec.hash), padding.PSS.DIGEST_LENGTH) if spec.pss else None
    return Authority(b.sign(signer, spec.hash, rsa_padding=pss), own)


# cryptography no longer signs with SHA-1, so such a certificate is signed with SHA-256 and signed again:
# sha256WithRSAEncryption and sha1WithRSAEncryption have OIDs of the same length, so only bytes change.
_RSA_SHA256 = bytes.fromhex("06092a864886f70d01010b")
_RSA_SHA1 = bytes.fromhex("06092a864886f70d010105")


def _der(tag: int, body: bytes) -> bytes:
    n = len(body)
    length = bytes([n]) if n < 0x80 else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes(
        (n.bit_length() + 7) // 8, "big")
    return bytes([tag]) + length + body


def _sha1(cert: x509.Certificate, signer: Any) -> x509.Certificate:
    assert isinstance(signer, rsa.RSAPrivateKey), "SHA-1 sets are RSA-signed"
    tbs = cert.tbs_certificate_bytes
    assert tbs.count(_RSA_SHA256) == 1
    tbs = tbs.replace(_RSA_SHA256, _RSA_SHA1)
    signature = signer.sign(tbs, padding.PKCS1v15(), hashes.SHA1())
    algorithm = _der(0x30, _RSA_SHA1 + b"\x05\x00")
    return x509.load_der_x509_certificate(_der(0x30, tbs + algorithm + _der(0x03, b"\x00" + signature)))


def _extensions(b: x509.CertificateBuilder, spec: Spec, own: Any, signer: Any) -> x509.CertificateBuilder:
    if spec.ca is not None:
        b = b.add_extension(x509.BasicConstraints(ca=spec.ca, path_length=spec.pathlen), critical=True)
    if spec.ku is not None:
        b = b.add_extension(_key_usage(spec.ku), critical=True)
    if spec.eku is not None:
        b = b.add_extension(x509.ExtendedKeyUsage(list(spec.eku)), critical=False)
    if spec.sans:
        b = b.add_extension(x509.SubjectAlternativeName([_general(n) for n in spec.sans]), critical=False)
    b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(own.public_key()), critical=False)
    if spec.aki:
        b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False)
    for ext, critical in spec.extra:
        b = b.add_extension(ext, critical=critical)
    return b


def ca_spec(cn: str, **changes: Any) -> Spec:
    """A CA as `openssl req -x509` with the v3_ca section makes it, plus keyUsage."""
    base = dict(cn=cn, label=cn, ca=True, ku=CA_KU, eku=None, sans=(), not_after=NOW + 3650 * DAY)
    base.update(changes)
    return Spec(**base)


def root(cn: str = "Corpus Root CA", **changes: Any) -> Authority:
    return make(ca_spec(cn, **changes))


def intermediate(parent: Authority, cn: str = "Corpus Intermediate CA", **changes: Any) -> Authority:
    return make(ca_spec(cn, **changes), parent)


def leaf(issuer: Authority, **changes: Any) -> Authority:
    return make(Spec(**changes), issuer)


def unknown_extension(critical: bool) -> Tuple[x509.ExtensionType, bool]:
    return x509.UnrecognizedExtension(UNKNOWN_OID, b"\x05\x00"), critical


@functools.lru_cache(maxsize=None)
def corpus() -> Tuple[CertSet, ...]:
    """Every set, built once per process."""
    sets = (_key_sets() + _ca_sets() + _usage_sets() + _chain_sets() + _date_sets() + _name_sets()
            + _constraint_sets() + _mutual_sets())
    names = [s.name for s in sets]
    assert len(names) == len(set(names)), "case names must be unique"
    return tuple(sets)


def _set(name: str, cas: Sequence[Authority], chain: Sequence[Authority], libpq: bool, why: str,
         key_of: Optional[Authority] = None, **kw: Any) -> CertSet:
    """A set whose server.key belongs to `key_of` (the first certificate of the file unless given)."""
    return CertSet(name=name, cas=tuple(a.cert for a in cas), chain=tuple(a.cert for a in chain),
                   key=(key_of or chain[0]).key, libpq=libpq, why=why, **kw)


def _simple(name: str, libpq: bool, why: str, under: Optional[Authority] = None, host: str = HOST,
            mutual: bool = False, **leaf_changes: Any) -> CertSet:
    """A leaf straight under a root (the default root unless `under`), ca.crt = that root."""
    ca = under or root()
    return _set(name, [ca], [leaf(ca, **leaf_changes)], libpq, why, host=host, mutual=mutual)


def _key_sets() -> List[CertSet]:
    rsa_root = root("Corpus RSA Root", kind="rsa3072")
    weak_root = root("Corpus RSA-1024 Root", kind="rsa1024")
    ed_root = root("Corpus Ed25519 Root", kind="ed25519")
    sha1_root = root("Corpus SHA-1 Root", kind="rsa2048", hash=hashes.SHA1())
    return [
        _simple("ecdsa-p256", True, "the reference set: P-256 leaf under a P-256 root"),
        _simple("ecdsa-p384", True, "P-384 leaf, SHA-384 signature", kind="p384", hash=hashes.SHA384()),
        _simple("ecdsa-p521", True, "P-521 leaf", kind="p521", hash=hashes.SHA512()),
        _simple("rsa-2048", True, "RSA-2048 leaf", kind="rsa2048"),
        _simple("rsa-3072-under-rsa-root", True, "RSA-3072 leaf and root", under=rsa_root, kind="rsa3072"),
        _simple("rsa-1024-leaf", False, "security level 2: PostgreSQL will not load it (ee key too small)",
                kind="rsa1024"),
        _simple("ecdsa-p192-leaf", False, "96-bit curve, below level 2's 112 bits", kind="p192"),
        _simple("ecdsa-secp256k1-leaf", False, "no TLS 1.3 signature scheme for secp256k1", kind="k256"),
        _simple("ecdsa-p224-leaf", False, "112 bits pass level 2, but TLS 1.3 has no P-224 scheme", kind="p224"),
        _simple("ecdsa-p224-root", True, "a CA key only signs certificates: P-224 is enough there",
                under=root("Corpus P-224 Root", kind="p224")),
        _simple("sha224-signed-leaf", True, "SHA-224 gives exactly the 112 bits level 2 asks", hash=hashes.SHA224()),
        _simple("rsa-1024-root", False, "level 2 also checks the trust anchor's key (CA key too small)",
                under=weak_root),
        _simple("ed25519-leaf", True, "Ed25519 leaf under a P-256 root", kind="ed25519"),
        _simple("ed25519-root-and-leaf", True, "Ed25519 all the way", under=ed_root, kind="ed25519",
                label="ed-leaf"),
        _simple("ed448-leaf", True, "Ed448 leaf", kind="ed448"),
        _simple("rsa-pss-signature", True, "an RSA root signing with RSASSA-PSS", under=rsa_root, pss=True),
        _simple("sha1-signed-leaf", False, "SHA-1 signature on the leaf (ca md too weak)", under=rsa_root,
                hash=hashes.SHA1()),
        _simple("sha1-self-signed-root", True, "the anchor's own signature is never checked", under=sha1_root),
        _set("sha1-signed-intermediate", [sha1_root],
             [leaf(inter := intermediate(sha1_root, "Corpus SHA-1 Intermediate", hash=hashes.SHA1())), inter],
             False, "a SHA-1 signature below the anchor"),
    ]


def _ca_sets() -> List[CertSet]:
    good = root()
    no_bc_ku = root("Corpus Root without basicConstraints", ca=None)
    no_bc = root("Corpus Root without basicConstraints or keyUsage", ca=None, ku=None)
    not_ca = root("Corpus Root with CA:FALSE", ca=False)
    no_sign = root("Corpus Root without keyCertSign", ku=("digital_signature", "crl_sign"))
    len0 = root("Corpus Root pathlen 0", pathlen=0)
    v1 = root("Corpus v1 Root", v1=True)
    crit_root = root("Corpus Root with unknown critical extension", extra=[unknown_extension(True)])
    eku_root = root("Corpus Root with EKU clientAuth", eku=(CLIENT,))
    sets = [
        _simple("root-without-basic-constraints", True,
                "a v3 anchor without basicConstraints counts as a CA when keyUsage allows keyCertSign", under=no_bc_ku),
        _simple("root-without-basic-constraints-or-key-usage", False, "not a CA at all", under=no_bc),
        _simple("root-ca-false", False, "basicConstraints CA:FALSE on the anchor", under=not_ca),
        _simple("root-without-key-cert-sign", False, "keyUsage present without keyCertSign", under=no_sign),
        _simple("root-pathlen-0-direct", True, "pathlen 0 allows leaves directly under it", under=len0),
        _simple("v1-root", True, "OpenSSL accepts a self-signed v1 anchor", under=v1),
        _simple("root-unknown-critical-extension", False, "unhandled critical extension on the anchor",
                under=crit_root),
        _simple("root-eku-client-only", False, "the anchor's own EKU is checked against ssl_server", under=eku_root),
    ]
    for name, libpq, why, changes in [
        ("intermediate-without-basic-constraints", False, "intermediates must say CA:TRUE", dict(ca=None)),
        ("intermediate-ca-false", False, "CA:FALSE intermediate", dict(ca=False)),
        ("intermediate-without-key-cert-sign", False, "keyUsage without keyCertSign", dict(ku=("crl_sign",))),
        ("intermediate-pathlen-0", True, "pathlen 0 on the last intermediate is fine", dict(pathlen=0)),
        ("intermediate-eku-client-only", False, "a CA's EKU restricts what it may issue for",
         dict(eku=(CLIENT,))),
    ]:
        inter = intermediate(good, f"Corpus Intermediate {name}", **changes)
        sets.append(_set(name, [good], [leaf(inter), inter], libpq, why))
    inter = intermediate(len0, "Corpus Intermediate under pathlen 0")
    sets.append(_set("root-pathlen-0-with-intermediate", [len0], [leaf(inter), inter], False,
                     "path length exceeded"))
    return sets


def _usage_sets() -> List[CertSet]:
    return [
        _simple("eku-client-only", False, "ssl_server purpose needs serverAuth", eku=(CLIENT,)),
        _simple("eku-server-only", True, "serverAuth alone is what a server needs", eku=(SERVER,)),
        _simple("eku-absent", True, "no EKU: any purpose", eku=None),
        _simple("eku-any-only", False, "OpenSSL's purpose check does not honour anyExtendedKeyUsage",
                eku=(ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,)),
        _simple("eku-code-signing", False, "codeSigning only", eku=(ExtendedKeyUsageOID.CODE_SIGNING,)),
        _simple("ku-absent", True, "no keyUsage: any usage", ku=None),
        _simple("ecdsa-ku-key-encipherment-only", True,
                "ssl_server allows keyEncipherment; TLS 1.3 does not look further", ku=("key_encipherment",)),
        _simple("ecdsa-ku-key-agreement-only", True, "ssl_server takes keyAgreement too (KU_TLS)",
                ku=("key_agreement",)),
        _simple("ku-cert-sign-only", False, "ssl_server wants digitalSignature, keyEncipherment or keyAgreement",
                ku=("key_cert_sign",)),
        _simple("leaf-critical-authority-key-identifier", False,
                "OpenSSL does not handle a critical authorityKeyIdentifier", aki=False,
                extra=[(x509.AuthorityKeyIdentifier.from_issuer_public_key(key("p256", "Corpus Root CA").public_key()),
                        True)]),
        _simple("rsa-ku-key-encipherment-only", True, "RSA with keyEncipherment only", kind="rsa2048",
                ku=("key_encipherment",)),
        _simple("leaf-is-a-ca", True, "CA:TRUE on the leaf does not matter to OpenSSL", ca=True,
                ku=("digital_signature", "key_cert_sign")),
        _simple("leaf-unknown-critical-extension", False, "unhandled critical extension",
                extra=[unknown_extension(True)]),
        _simple("leaf-unknown-noncritical-extension", True, "unknown but not critical: ignored",
                extra=[unknown_extension(False)]),
        _simple("leaf-without-aki", True, "no authorityKeyIdentifier: issuer found by name", aki=False),
        _simple("v1-leaf", True, "a v1 leaf (openssl x509 -req without extensions) with the host as CN",
                v1=True, sans=()),
    ]


def _chain_sets() -> List[CertSet]:
    good = root()
    other = root("Corpus Other Root", label="other root")
    inter = intermediate(good)
    inter2 = intermediate(inter, "Corpus Second Intermediate")
    twin = root("Corpus Root CA", label="twin")  # same name as `good`, another key
    leaf_no_aki = leaf(good, aki=False)
    self_signed = make(Spec(ca=True, ku=("digital_signature", "key_cert_sign"), label="self"))
    return [
        _set("intermediate-in-cert-file", [good], [leaf(inter), inter], True, "leaf then intermediate"),
        _set("intermediate-missing", [good], [leaf(inter)], False, "unable to get local issuer certificate"),
        _set("intermediate-in-ca-file", [good, inter], [leaf(inter)], True, "the store may hold intermediates"),
        _set("only-intermediate-in-ca-file", [inter], [leaf(inter)], False,
             "without partial chains the anchor must be self-signed"),
        _set("only-intermediate-in-ca-file-root-in-cert-file", [inter], [leaf(inter), inter, good], False,
             "once on a root-file certificate, OpenSSL looks for issuers in the root file only"),
        _set("two-intermediates-reversed", [good], [leaf(inter2), inter, inter2], True,
             "intermediates are found by name, in any order"),
        _set("intermediate-before-leaf", [good], [inter, lf := leaf(inter)], False,
             "the first certificate is the leaf: the key does not match it", key_of=lf),
        _set("root-in-cert-file", [good], [leaf(inter), inter, good], True, "the root sent along is harmless"),
        _set("cert-file-carries-a-weak-extra-certificate", [good],
             [leaf(good), root("Corpus unrelated RSA-1024 CA", kind="rsa1024")], False,
             "PostgreSQL checks every certificate of its file at load (ca key too small)"),
        _set("bundle-right-ca-second", [other, good], [leaf(good)], True, "any CA of the bundle may sign"),
        _set("bundle-right-ca-first", [good, other], [leaf(good)], True, "any CA of the bundle may sign"),
        _set("wrong-ca", [other], [leaf(good)], False, "certificate verify failed"),
        _set("same-name-ca-other-key-first-with-aki", [twin, good], [leaf(good)], True,
             "the AKID picks the right one of two same-named CAs"),
        _set("same-name-ca-other-key-first-without-aki", [twin, good], [leaf_no_aki], False,
             "without an AKID OpenSSL takes the first same-named CA and its signature fails"),
        _set("same-name-ca-other-key-second-without-aki", [good, twin], [leaf_no_aki], True,
             "the first same-named CA is the signer"),
        _set("self-signed-leaf-as-ca", [self_signed], [self_signed], True,
             "a self-signed server certificate that is its own root"),
    ]


def _date_sets() -> List[CertSet]:
    good = root()
    expired_root = root("Corpus Expired Root", not_before=NOW - 400 * DAY, not_after=NOW - DAY)
    future_root = root("Corpus Future Root", not_before=NOW + DAY, not_after=NOW + 400 * DAY)
    old = intermediate(good, "Corpus Expired Intermediate", not_before=NOW - 400 * DAY, not_after=NOW - DAY)
    young = intermediate(good, "Corpus Future Intermediate", not_before=NOW + DAY)
    renewed_old = root(not_before=NOW - 800 * DAY, not_after=NOW - DAY)  # same name and key as `good`
    return [
        _simple("leaf-expired", False, "certificate has expired", not_before=NOW - 30 * DAY, not_after=NOW - DAY),
        _simple("leaf-not-yet-valid", False, "certificate is not yet valid", not_before=NOW + DAY),
        _simple("root-expired", False, "the anchor's dates are checked too", under=expired_root),
        _simple("root-not-yet-valid", False, "the anchor is not yet valid", under=future_root),
        _set("intermediate-expired", [good], [leaf(old), old], False, "expired intermediate"),
        _set("intermediate-not-yet-valid", [good], [leaf(young), young], False, "intermediate not yet valid"),
        _set("bundle-with-an-expired-unrelated-ca", [expired_root, good], [leaf(good)], True,
             "an expired CA that signed nothing here is never looked at"),
        _set("bundle-with-renewed-ca-old-one-expired", [renewed_old, good], [leaf(good)], True,
             "a CA renewed with its key: OpenSSL takes the copy whose dates are valid"),
    ]


def _name_sets() -> List[CertSet]:
    return [
        _simple("san-wildcard", True, "'*' is the whole left-most label", sans=("*.example.test",)),
        _simple("san-wildcard-two-labels-deep", False, "'*' covers one label", host="a.db.example.test",
                sans=("*.example.test",)),
        _simple("san-wildcard-not-left-most", False, "'*' elsewhere is compared as text", host="db.x.example.test",
                sans=("db.*.example.test",)),
        _simple("san-wildcard-partial-label", False, "'d*' is not a wildcard for libpq", sans=("d*.example.test",)),
        _simple("san-ip", True, "iPAddress SAN for an IP host", host="127.0.0.1", sans=("127.0.0.1",)),
        _simple("san-dns-holding-ip", True, "a dNSName is compared as text, also with an IP host",
                host="127.0.0.1", sans=("dns:127.0.0.1",)),
        _simple("san-ip-only-dns-host-cn-fallback", True,
                "no dNSName SAN: the CN is compared for a DNS host", sans=("127.0.0.1",)),
        _simple("san-ipv6", True, "IPv6 iPAddress SAN", host="::1", sans=("::1",)),
        _simple("san-trailing-dot", False, "libpq does not strip a trailing dot", sans=(HOST + ".",)),
        _simple("host-trailing-dot", False, "nor on the host", host=HOST + ".", sans=(HOST,)),
        _simple("san-uppercase", True, "names compare without case", sans=(HOST.upper(),)),
        _simple("host-uppercase", True, "names compare without case", host="DB.Example.Test", sans=(HOST,)),
        _simple("cn-only", True, "no SAN: the CN is compared", sans=()),
        _simple("cn-only-other-name", False, "the CN names another host", cn="other.example.test", sans=()),
        _simple("cn-ignored-with-dns-san", False, "a dNSName SAN present: the CN is not looked at",
                cn=HOST, sans=("other.example.test",)),
        _simple("no-names", False, "no SAN and no CN", cn=None, sans=()),
        _simple("host-ipv4-shorthand", True, "libpq reads an IPv4 host with inet_aton: 127.1 is 127.0.0.1",
                host="127.1", sans=("127.0.0.1",)),
        _simple("san-embedded-nul-first", False, "libpq stops at a name with an embedded NUL",
                sans=("evil\x00.example.test", HOST)),
        _simple("san-embedded-nul-after-match", True, "names after the matching one are not looked at",
                sans=(HOST, "evil\x00.example.test")),
    ]


def _constrained_root(cn: str, permitted: Optional[list] = None, excluded: Optional[list] = None) -> Authority:
    return root(cn, extra=[(x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=excluded), True)])


def _constraint_sets() -> List[CertSet]:
    dns_ok = _constrained_root("Corpus Root permitting example.test", permitted=[x509.DNSName("example.test")])
    dns_other = _constrained_root("Corpus Root permitting other.test", permitted=[x509.DNSName("other.test")])
    excluded = _constrained_root("Corpus Root excluding example.test", excluded=[x509.DNSName("example.test")])
    loopback = _constrained_root("Corpus Root permitting 127/8",
                                 permitted=[x509.IPAddress(ipaddress.ip_network("127.0.0.0/8"))])
    org = _constrained_root("Corpus Root permitting O=Corpus", permitted=[x509.DirectoryName(
        x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Corpus")]))])
    mail = _constrained_root("Corpus Root permitting mail below example.test",
                             permitted=[x509.RFC822Name(".example.test")])
    uri = _constrained_root("Corpus Root permitting URIs on other.test",
                            permitted=[x509.UniformResourceIdentifier("other.test")])
    inter = intermediate(root(), "Corpus Intermediate permitting other.test", extra=[
        (x509.NameConstraints(permitted_subtrees=[x509.DNSName("other.test")], excluded_subtrees=None), True)])
    return [
        _simple("name-constraints-permitted", True, "the SAN lies inside the permitted subtree", under=dns_ok),
        _simple("name-constraints-not-permitted", False, "the SAN lies outside it", under=dns_other),
        _simple("name-constraints-excluded", False, "the SAN lies in an excluded subtree", under=excluded),
        _simple("name-constraints-cn-only", False, "without a dNSName SAN the host-like CN is constrained",
                under=dns_other, sans=()),
        _simple("name-constraints-ip-permitted", True, "IP SAN inside 127.0.0.0/8", under=loopback,
                sans=(HOST, "127.0.0.1")),
        _simple("name-constraints-ip-outside", False, "IP SAN outside 127.0.0.0/8", under=loopback,
                sans=(HOST, "10.0.0.1")),
        _simple("name-constraints-directory-name", False, "the subject DN is always checked against dirName subtrees",
                under=org),
        _simple("name-constraints-email", True, "an rfc822Name below the permitted '.example.test'", under=mail,
                sans=(HOST, "mail:ops@mail.example.test")),
        _simple("name-constraints-email-outside", False, "an rfc822Name outside it", under=mail,
                sans=(HOST, "mail:ops@example.org")),
        _simple("name-constraints-uri-outside", False, "a URI whose host is not the permitted one", under=uri,
                sans=(HOST, "uri:https://db.example.test:8443/x")),
        _simple("name-constraints-uri", True, "a URI on the permitted host", under=uri,
                sans=(HOST, "uri:https://other.test/x")),
        _set("name-constraints-on-intermediate", [root()], [leaf(inter), inter], False,
             "an intermediate's constraints bind the leaf"),
    ]


def _mutual_sets() -> List[CertSet]:
    good = root()
    inter = intermediate(good)
    return [
        _simple("mutual-good", True, "serverAuth + clientAuth, both ways", mutual=True),
        _simple("mutual-eku-server-only", False, "PostgreSQL checks client certificates as ssl_client",
                mutual=True, eku=(SERVER,)),
        _simple("mutual-eku-client-only", False, "and libpq checks the server as ssl_server", mutual=True,
                eku=(CLIENT,)),
        _simple("mutual-eku-absent", True, "no EKU fits both", mutual=True, eku=None),
        _simple("mutual-rsa-ku-key-encipherment-only", False,
                "ssl_client wants digitalSignature or keyAgreement", mutual=True, kind="rsa2048",
                ku=("key_encipherment",)),
        _set("mutual-intermediate-in-cert-file", [good], [leaf(inter), inter], True,
             "the client sends its intermediate too", mutual=True),
        _simple("mutual-root-eku-server-only", False, "the anchor's EKU must allow clientAuth",
                under=root("Corpus Root with EKU serverAuth", eku=(SERVER,)), mutual=True),
    ]
