"""Would OpenSSL, as libpq and PostgreSQL 15 use it, accept this chain? One verdict for `check`, the watcher and verify.

`chain_problem` judges a leaf (with the intermediates its file carries) against trust
anchors for one purpose: "server" (a libpq client checking a server, verify-ca and up) or
"client" (PostgreSQL checking a client certificate, clientcert=verify-ca). It leaves the
leaf's own validity dates to the caller, which reports them with their own fix.
`key_problem` says what OpenSSL refuses about the leaf's own key and signature before any
chain is looked at (PostgreSQL will not load it, libpq will not present it), and
`file_problem` the same for the whole certificate file, at every sslmode.

The model is OpenSSL 3.0's X509_verify_cert as libpq and the backend run it on Debian 12:
default verify flags (trusted-first, no partial chains, not strict), the purpose
ssl_server or ssl_client that TLS sets, and security level 2 (Debian builds OpenSSL with
OPENSSL_TLS_SECURITY_LEVEL=2 and neither libpq nor PostgreSQL changes it). Each rule below
names the OpenSSL function it follows; tests/differential holds every one against a real
PostgreSQL 15 and libpq 15.

Why not cryptography.x509.verification: its policies relax extensions only, while the
profile around them is fixed WebPKI that OpenSSL does not apply, so libpq's verdict cannot
be expressed there. It requires X.509 v3 on every certificate (libpq accepts a v1 leaf or
root: corpus "v1-leaf", "v1-root"), takes every store certificate as an anchor (OpenSSL
needs a self-signed one: "only-intermediate-in-ca-file"), allows only RSA and P-256/384/521
issuer keys and SHA-2 signatures (Ed25519 CAs work with libpq: "ed25519-root-and-leaf"),
and tries every same-named issuer where OpenSSL commits to the first likely one
("same-name-ca-other-key-first-without-aki"). So the path is built here the way OpenSSL
builds it; cryptography verifies each signature.

Not modelled, because no tool of this project makes them and libpq users meet them only in
very old PKIs: Netscape certificate types, auxiliary trust settings (a "TRUSTED
CERTIFICATE" PEM block), explicit EC curve parameters, and CRLs (OpenSSL checks none unless
a CRL is configured, and the entrypoint configures none).
"""

from __future__ import annotations

import datetime
from typing import Any, List, Optional, Sequence, Tuple

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from entrypoint.pki.constraints import name_constraints_problem
from entrypoint.pki.names import same_name

PURPOSES = ("server", "client")
MIN_SECURITY_BITS = 112  # security level 2
MAX_DEPTH = 100  # X509_VERIFY_PARAM's default depth: libpq and PostgreSQL leave it
# TLS 1.3 signature schemes exist for these curves only (OpenSSL 3.0), and libpq offers nothing else.
TLS_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)

# v3_purp.c check_purpose_ssl_server/_client: the EKUs that count (Netscape/Microsoft SGC for servers),
# and the keyUsage bits of which a leaf needs one when keyUsage is present.
_EKU = {"server": {ExtendedKeyUsageOID.SERVER_AUTH.dotted_string, "2.16.840.1.113730.4.1", "1.3.6.1.4.1.311.10.3.3"},
        "client": {ExtendedKeyUsageOID.CLIENT_AUTH.dotted_string}}
_LEAF_KU = {"server": ("digital_signature", "key_encipherment", "key_agreement"),
            "client": ("digital_signature", "key_agreement")}
# v3_purp.c X509_supported_extension: a critical extension outside this list makes the certificate unusable
# (authority/subject key identifiers are not in it).
_HANDLED = {"2.16.840.1.113730.1.1", "2.5.29.15", "2.5.29.17", "2.5.29.19", "2.5.29.32", "2.5.29.31", "2.5.29.37",
            "1.3.6.1.5.5.7.1.7", "1.3.6.1.5.5.7.1.8", "1.3.6.1.5.5.7.48.1.5", "2.5.29.36", "1.3.6.1.5.5.7.1.14",
            "2.5.29.30", "2.5.29.33", "2.5.29.54"}
_PROXY_CERT_INFO = "1.3.6.1.5.5.7.1.14"
_TAIL = "checked against the root certificate file"


def chain_problem(chain: Sequence[x509.Certificate], cas: Sequence[x509.Certificate], purpose: str,
                  now: Optional[datetime.datetime] = None) -> Optional[str]:
    """None when the chain is accepted for `purpose`, else why not (one line, for a Problem's `what`).

    `now` defaults to the clock. The leaf's own dates, key and signature are not judged
    here: the caller reports the dates, and key_problem the rest.
    """
    if purpose not in PURPOSES:
        raise ValueError(f"unknown purpose {purpose!r}")
    now = now or datetime.datetime.now(datetime.timezone.utc)
    path, problem = build_path(list(chain), list(cas), now)
    if problem is None:
        problem = (_extensions_problem(path, purpose) or _level_problem(path, chain)
                   or _signature_problem(path, now) or name_constraints_problem(path))
    return problem


def key_problem(cert: x509.Certificate) -> Optional[str]:
    """None when OpenSSL's default security level lets PostgreSQL serve (or libpq present) this certificate.

    ssl_security_cert (ssl/t1_lib.c) checks the key and, unless the certificate is
    self-signed, its signature when the file is loaded; a TLS 1.3 handshake then needs a
    signature scheme for the key.
    """
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return "has a public key that cannot be read"
    if security_bits(key) < MIN_SECURITY_BITS:
        return (f"has a key of {security_bits(key)}-bit strength ({_key_name(cert)}), below the "
                f"{MIN_SECURITY_BITS} bits OpenSSL's security level 2 requires (\"ee key too small\")")
    if isinstance(key, ec.EllipticCurvePublicKey) and not isinstance(key.curve, TLS_CURVES):
        return f"has a key on curve {key.curve.name}, for which TLS 1.3 has no signature scheme (P-256, P-384, P-521)"
    if isinstance(key, dsa.DSAPublicKey):
        return "has a DSA key, which TLS 1.3 cannot use"
    if not self_signed(cert) and signature_bits(cert) < MIN_SECURITY_BITS:
        return f"is signed with {_hash_name(cert)}, too weak for OpenSSL's security level 2 (\"ca md too weak\")"
    return None


def file_problem(chain: Sequence[x509.Certificate]) -> Optional[str]:
    """None when PostgreSQL (or libpq, for a client certificate) loads this certificate file, at any sslmode.

    SSL_CTX_use_certificate_chain_file checks the leaf (key_problem) and every further
    certificate of the file with ssl_security_cert: its key, and its signature unless it
    is self-signed ("ca key too small", "ca md too weak").
    """
    problem = key_problem(chain[0])
    if problem is not None:
        return problem
    for cert in chain[1:]:
        if _key_bits(cert) < MIN_SECURITY_BITS or (
                not self_signed(cert) and signature_bits(cert) < MIN_SECURITY_BITS):
            return (f"also holds {_who(cert, 0)}, whose key or signature is below security level 2, so "
                    "PostgreSQL will not load the file")
    return None


def build_path(chain: List[x509.Certificate], cas: List[x509.Certificate],
               now: datetime.datetime) -> Tuple[List[x509.Certificate], Optional[str]]:
    """The path OpenSSL's build_chain (x509_vfy.c) takes from the leaf to a self-signed anchor, or why none.

    Trusted first: each issuer is looked up in the root file, and only when it is not there
    among the certificates the leaf's file carries; once a root-file certificate is on the
    path only the root file is searched. Of several likely issuers the first whose dates
    are valid is taken (else the one that expires last), and OpenSSL does not go back when
    its signature later fails.
    """
    path, spare, trusted = [chain[0]], list(chain[1:]), False
    while len(path) <= MAX_DEPTH:
        top = path[-1]
        if self_signed(top):
            if trusted or any(top == ca for ca in cas):
                return path, None
            if len(path) == 1:
                return path, "is self-signed and not in the root certificate file"
            return path, f"ends in the self-signed {_who(top)}, which is not in the root certificate file"
        issuer = _best_issuer(top, cas, path, now)
        if issuer is None and not trusted:
            issuer = _best_issuer(top, spare, path, now)
            if issuer is not None:
                spare.remove(issuer)
        elif issuer is not None:
            trusted = True
        if issuer is None:
            break
        path.append(issuer)
    if len(path) > MAX_DEPTH:
        return path, f"has a chain longer than OpenSSL's limit of {MAX_DEPTH}, {_TAIL}"
    if trusted:
        return path, (f"chains to {_who(path[-1])}, which is not self-signed: OpenSSL needs the self-signed root "
                      "itself in the root certificate file")
    return path, "was not signed by any CA in the root certificate file"


def _best_issuer(cert: x509.Certificate, candidates: Sequence[x509.Certificate], path: Sequence[x509.Certificate],
                 now: datetime.datetime) -> Optional[x509.Certificate]:
    """find_issuer / X509_STORE_CTX_get1_issuer: the first likely issuer valid now, else the one expiring last."""
    best = None
    for candidate in candidates:
        if any(candidate == on_path for on_path in path) or not likely_issued(candidate, cert):
            continue
        if _valid_at(candidate, now):
            return candidate
        if best is None or candidate.not_valid_after_utc > best.not_valid_after_utc:
            best = candidate
    return best


def likely_issued(issuer: x509.Certificate, cert: x509.Certificate) -> bool:
    """ossl_x509_likely_issued: names match, the AKID (if any) fits the issuer, the signature fits its key type."""
    return same_name(issuer.subject, cert.issuer) and _akid_fits(issuer, cert) and _sig_fits_key(issuer, cert)


def self_signed(cert: x509.Certificate) -> bool:
    """EXFLAG_SS (v3_purp.c): self-issued, AKID fits its own SKID, signature algorithm fits its key; not verified."""
    return likely_issued(cert, cert)


def _akid_fits(issuer: x509.Certificate, cert: x509.Certificate) -> bool:
    """X509_check_akid: key id against the issuer's SKID (when both exist), serial and issuer name if given."""
    akid = extension(cert, x509.AuthorityKeyIdentifier)
    if akid is None:
        return True
    skid = extension(issuer, x509.SubjectKeyIdentifier)
    if akid.key_identifier is not None and skid is not None and akid.key_identifier != skid.digest:
        return False
    if akid.authority_cert_serial_number is not None and akid.authority_cert_serial_number != issuer.serial_number:
        return False
    names = [n.value for n in akid.authority_cert_issuer or () if isinstance(n, x509.DirectoryName)]
    return not names or any(same_name(n, issuer.issuer) for n in names)


# check_sig_alg_match: the key type a signature algorithm needs (by OID prefix, then exact OIDs).
_SIG_PREFIXES = (("1.2.840.113549.1.1.", rsa.RSAPublicKey), ("1.2.840.10045.4.", ec.EllipticCurvePublicKey))
_SIG_EXACT = {"1.3.101.112": ed25519.Ed25519PublicKey, "1.3.101.113": ed448.Ed448PublicKey,
              "1.2.840.10040.4.3": dsa.DSAPublicKey,
              **{f"2.16.840.1.101.3.4.3.{i}": dsa.DSAPublicKey for i in range(1, 5)},  # DSA with SHA-2
              **{f"2.16.840.1.101.3.4.3.{i}": ec.EllipticCurvePublicKey for i in range(9, 13)},  # ECDSA, SHA-3
              **{f"2.16.840.1.101.3.4.3.{i}": rsa.RSAPublicKey for i in range(13, 17)}}  # RSA, SHA-3


def _sig_fits_key(issuer: x509.Certificate, cert: x509.Certificate) -> bool:
    oid = cert.signature_algorithm_oid.dotted_string
    kind = _SIG_EXACT.get(oid) or next((k for prefix, k in _SIG_PREFIXES if oid.startswith(prefix)), None)
    try:
        return kind is not None and isinstance(issuer.public_key(), kind)
    except (ValueError, UnsupportedAlgorithm):
        return False


def extension(cert: x509.Certificate, kind: Any) -> Any:
    """The value of the extension of class `kind`, or None."""
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def ca_kind(cert: x509.Certificate) -> int:
    """X509_check_ca: 0 not a CA; 1 basicConstraints CA:TRUE; 3 a self-signed v1 root; 4 keyCertSign, no BC."""
    usage = extension(cert, x509.KeyUsage)
    if usage is not None and not usage.key_cert_sign:
        return 0
    constraints = extension(cert, x509.BasicConstraints)
    if constraints is not None:
        return 1 if constraints.ca else 0
    if cert.version == x509.Version.v1 and self_signed(cert):
        return 3
    return 4 if usage is not None else 0


def _extensions_problem(path: Sequence[x509.Certificate], purpose: str) -> Optional[str]:
    """check_extensions (x509_vfy.c): critical extensions, CA flags, the TLS purpose and path lengths."""
    below = 0  # plen: non-self-issued CAs between the leaf and this certificate
    for depth, cert in enumerate(path):
        via = "" if depth == 0 else f"chains through {_who(cert, depth, len(path))}, which "
        critical = [e.oid.dotted_string for e in cert.extensions if e.critical and e.oid.dotted_string not in _HANDLED]
        if critical:
            return f"{via}has the critical extension {critical[0]}, which OpenSSL does not handle, {_TAIL}"
        if any(e.oid.dotted_string == _PROXY_CERT_INFO for e in cert.extensions):
            return f"{via}is a proxy certificate, which libpq does not allow, {_TAIL}"
        kind = ca_kind(cert)
        if depth > 0 and (kind == 0 or (depth + 1 < len(path) and kind != 1)):
            return (f"{via}is not a CA to OpenSSL (it needs basicConstraints CA:TRUE, and keyCertSign when "
                    f"keyUsage is present), {_TAIL}")
        if not _purpose_allows(cert, purpose, as_ca=depth > 0):
            verb = f"{via}does not allow" if via else "is not allowed for"
            return (f"{verb} TLS {purpose} use by its extendedKeyUsage or keyUsage (OpenSSL's ssl_{purpose} "
                    f"purpose), {_TAIL}")
        constraints = extension(cert, x509.BasicConstraints)
        limit = constraints.path_length if constraints is not None and constraints.ca else None
        if depth > 1 and limit is not None and below > limit:
            return f"{via}allows {limit} CA(s) below it, and there are {below}, {_TAIL}"
        if depth > 0 and not same_name(cert.subject, cert.issuer):
            below += 1
    return None


def _purpose_allows(cert: x509.Certificate, purpose: str, as_ca: bool) -> bool:
    """check_purpose_ssl_server/_client; the root is checked too (no auxiliary trust in a PEM root file)."""
    usage = extension(cert, x509.ExtendedKeyUsage)
    if usage is not None and not {oid.dotted_string for oid in usage} & _EKU[purpose]:
        return False  # anyExtendedKeyUsage does not count: xku_reject looks for the purpose's own bit
    if as_ca:
        return ca_kind(cert) != 0
    key_usage = extension(cert, x509.KeyUsage)
    return key_usage is None or any(getattr(key_usage, bit) for bit in _LEAF_KU[purpose])


def _level_problem(path: Sequence[x509.Certificate], chain: Sequence[x509.Certificate]) -> Optional[str]:
    """check_auth_level: issuer keys (the root's too) and signatures between the leaf and the root (the leaf's
    own is key_problem's); and what the server refuses to load from its own file (file_problem, past the leaf)."""
    for depth, cert in enumerate(path[1:], start=1):
        via = f"chains through {_who(cert, depth, len(path))}, which"
        if _key_bits(cert) < MIN_SECURITY_BITS:
            return (f"{via} has a key ({_key_name(cert)}) below security level 2 "
                    f"(\"CA key too small\"), {_TAIL}")
        if depth < len(path) - 1 and signature_bits(cert) < MIN_SECURITY_BITS:
            return f"{via} is signed with {_hash_name(cert)}, below security level 2 (\"ca md too weak\"), {_TAIL}"
    extra = file_problem(chain) if key_problem(chain[0]) is None else None  # the leaf's own is key_problem's
    return f"{extra}, {_TAIL}" if extra else None


def _signature_problem(path: Sequence[x509.Certificate], now: datetime.datetime) -> Optional[str]:
    """internal_verify: every signature below the root (the root's own is not checked), and every CA's dates."""
    for depth in range(len(path) - 1):
        if signature_bits(path[depth]) < MIN_SECURITY_BITS:
            continue  # refused already (check_auth_level comes first), and cryptography will not verify SHA-1
        try:
            path[depth].verify_directly_issued_by(path[depth + 1])
        except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
            child = "" if depth == 0 else f"chains through {_who(path[depth], depth, len(path))}, which "
            return (f"{child}was not signed by {_who(path[depth + 1], depth + 1, len(path))} although it names it "
                    f"(OpenSSL takes the first likely CA of that name and tries no other), {_TAIL}")
    for depth, cert in enumerate(path[1:], start=1):
        if not _valid_at(cert, now):
            when = (f"expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC" if now > cert.not_valid_after_utc
                    else f"is not valid until {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC")
            return f"chains through {_who(cert, depth, len(path))}, which {when}, {_TAIL}"
    return None


def _valid_at(cert: x509.Certificate, now: datetime.datetime) -> bool:
    return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


def _key_bits(cert: x509.Certificate) -> int:
    try:
        return security_bits(cert.public_key())
    except (ValueError, UnsupportedAlgorithm):
        return 0


def security_bits(key: Any) -> int:
    """EVP_PKEY_get_security_bits: RSA/DSA by modulus (BN_security_bits), EC by curve size, EdDSA fixed."""
    if isinstance(key, (rsa.RSAPublicKey, dsa.DSAPublicKey)):
        size = key.key_size
        return next((bits for length, bits in ((15360, 256), (7680, 192), (3072, 128), (2048, 112), (1024, 80))
                     if size >= length), 0)
    if isinstance(key, ec.EllipticCurvePublicKey):
        size = key.curve.key_size
        return next((bits for length, bits in ((512, 256), (384, 192), (256, 128), (224, 112), (160, 80))
                     if size >= length), size // 2)
    if isinstance(key, ed25519.Ed25519PublicKey):
        return 128
    return 224 if isinstance(key, ed448.Ed448PublicKey) else 0


def signature_bits(cert: x509.Certificate) -> int:
    """X509_get_signature_info's security bits: half the digest, SHA-1 63 and MD5 39 (broken), EdDSA fixed."""
    oid = cert.signature_algorithm_oid.dotted_string
    if oid in ("1.3.101.112", "1.3.101.113"):
        return 128 if oid == "1.3.101.112" else 224
    try:
        algorithm = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return 0
    if isinstance(algorithm, hashes.SHA1):
        return 63
    if isinstance(algorithm, hashes.MD5):
        return 39
    return algorithm.digest_size * 4 if algorithm is not None else 0


def _hash_name(cert: x509.Certificate) -> str:
    try:
        algorithm = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return cert.signature_algorithm_oid.dotted_string
    return algorithm.name.upper() if algorithm is not None else "an unknown hash"


def _key_name(cert: x509.Certificate) -> str:
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return "unreadable"
    if isinstance(key, (rsa.RSAPublicKey, dsa.DSAPublicKey)):
        return f"{'RSA' if isinstance(key, rsa.RSAPublicKey) else 'DSA'}-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"ECDSA {key.curve.name}"
    return type(key).__name__.replace("PublicKey", "")


def _who(cert: x509.Certificate, depth: int = 1, length: int = 0) -> str:
    """A certificate of the path as a message names it: 'the root ...' at the top, else 'intermediate ...'."""
    name = repr(cert.subject.rfc4514_string() or "(empty subject)")
    return f"the root {name}" if depth == length - 1 else f"{'intermediate ' if depth > 0 else ''}{name}"
