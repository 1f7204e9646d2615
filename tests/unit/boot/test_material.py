"""check_material over in-memory certificates: every way a Secret can be wrong, and what is only a warning."""

from __future__ import annotations

import base64
import datetime as dt
import errno

import pytest
from hypothesis import given, settings as hsettings, strategies as st
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from entrypoint.errors import InputError
from entrypoint.boot.settings import parse_settings
from entrypoint.boot.material import files_to_read
from entrypoint.pki.load import load_private_key
from entrypoint.pki.names import name_covered
from tests.support.pki import NOW, TestCA, issue_leaf, new_key, pem_cert
from tests.unit.conftest import (CERT_MANAGER_NAMES, CONNECT_HOST, cert_files, check, encrypt_key, env_with,
                                 facts, settings_for)

CERT, KEY, CA = "/certs/server.crt", "/certs/server.key", "/certs/ca.crt"
TLS_MODES = ("require", "verify-ca", "verify-full")


def problems(settings, files: dict, now: dt.datetime = NOW) -> list:
    """Check expecting failure; returns the problems as (where, what, fix) tuples."""
    with pytest.raises(InputError) as caught:
        check(settings, files, now)
    return [(p.where, p.what, p.fix) for p in caught.value.problems]


def only_problem(settings, files: dict, now: dt.datetime = NOW) -> tuple:
    found = problems(settings, files, now)
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize("mode", ("allow", "prefer") + TLS_MODES)
def test_good_material_passes_every_mode(mode, node_files, node):
    material = check(settings_for(mode), node_files)
    assert material.server.leaf == node.cert and material.warnings == ()
    assert material.ca_pem == node_files[CA]


def test_cert_manager_names(ca, node):
    settings = settings_for("verify-full", CERT_MANAGER_NAMES)
    material = check(settings, cert_files(node, ca.cert_pem, CERT_MANAGER_NAMES))
    assert material.server.leaf == node.cert
    assert list(files_to_read(settings)) == ["/certs/tls.crt", "/certs/tls.key", CA]


def test_disable_reads_nothing():
    settings = settings_for("disable")
    assert list(files_to_read(settings)) == []
    material = check(settings, {})
    assert (material.server, material.ca_pem, material.warnings) == (None, None, ())


def test_disable_ignores_a_stale_passphrase_file_it_could_not_read():
    """The recovery path: a password file left in the pod spec, now missing, must not stop a disable start."""
    from entrypoint.boot.settings import parse_settings
    from tests.unit.conftest import env_with, facts

    env = env_with(PGSSLMODE="disable", PGSSLKEY_PASSWORD_FILE="/gone/key.pass", PGSSLKEY_PASSWORD="x")
    settings = parse_settings(env, facts(key_password_file_error="No such file or directory"))
    assert settings.key_password is None
    (warning,) = check(settings, {}).warnings
    assert "PGSSLKEY_PASSWORD, PGSSLKEY_PASSWORD_FILE ignored" in warning


@pytest.mark.parametrize("mode", TLS_MODES)
def test_key_cert_mismatch(mode, ca, node, node_files):
    other = ca.issue("other.example")
    where, what, fix = only_problem(settings_for(mode), {**node_files, KEY: other.key_pem})
    assert where == "PGSSLKEY" and "does not belong" in what and CERT in what and "same Secret" in fix


@pytest.mark.parametrize("path, var", [(CERT, "PGSSLCERT"), (KEY, "PGSSLKEY"), (CA, "PGSSLROOTCERT")])
@pytest.mark.parametrize("data, words", [
    (b"hello, not a certificate\n", "not a PEM"),
    (b"", "is empty"),
    (b"\n  \n", "is empty"),
])
def test_bad_file_contents(path, var, data, words, node_files):
    where, what, _ = only_problem(settings_for("verify-full"), {**node_files, path: data})
    assert where == var and words in what and path in what


def test_der_certificate_is_not_pem(node, node_files):
    der = node.cert.public_bytes(serialization.Encoding.DER)
    where, what, fix = only_problem(settings_for("require"), {**node_files, CERT: der})
    assert where == "PGSSLCERT" and "openssl x509 -inform der" in fix


@pytest.mark.parametrize("path, var", [(CERT, "PGSSLCERT"), (KEY, "PGSSLKEY")])
def test_unreadable_file_points_at_fsgroup(path, var, node_files):
    denied = PermissionError(errno.EACCES, "Permission denied", path)
    where, what, fix = only_problem(settings_for("require"), {**node_files, path: denied})
    assert where == var and "Permission denied" in what and path in what
    assert "fsGroup" in fix and "root" in fix


@pytest.mark.parametrize("mode", TLS_MODES)
def test_missing_files_in_a_mode_that_needs_them(mode):
    missing = {p: FileNotFoundError(errno.ENOENT, "No such file or directory", p) for p in (CERT, KEY, CA)}
    found = problems(settings_for(mode, ()), missing)
    wheres = [w for w, _, _ in found]
    expected = ["PGSSLCERT", "PGSSLKEY"] + (["PGSSLROOTCERT"] if mode != "require" else [])
    assert wheres == expected
    assert all("No such file" in what and "mount the" in fix for _, what, fix in found)


def test_require_does_not_need_a_ca(node_files):
    files = {CERT: node_files[CERT], KEY: node_files[KEY]}
    material = check(settings_for("require"), files)
    assert material.ca_pem is None and material.cas == ()


@pytest.mark.parametrize("mode", ("verify-ca", "verify-full"))
def test_bundle_of_two_cas_where_the_second_signed(mode, node, ca):
    first = TestCA("unrelated CA")
    material = check(settings_for(mode), cert_files(node, first.cert_pem + ca.cert_pem))
    assert len(material.cas) == 2


@pytest.mark.parametrize("mode", ("verify-ca", "verify-full"))
def test_certificate_from_another_ca(mode, node, node_files):
    stranger = TestCA("stranger CA")
    where, what, fix = only_problem(settings_for(mode), {**node_files, CA: stranger.cert_pem})
    assert where == "PGSSLCERT" and "not signed by any CA" in what and "ca.crt" in fix


def test_same_subject_other_key_is_not_the_signer(node, node_files):
    """A CA with the same name but another key did not sign: the signature is what counts."""
    impostor = TestCA("unit test CA")
    where, what, _ = only_problem(settings_for("verify-ca"), {**node_files, CA: impostor.cert_pem})
    assert "not signed" in what


def test_require_does_not_check_the_chain(node, node_files):
    stranger = TestCA("stranger CA")
    assert check(settings_for("require"), {**node_files, CA: stranger.cert_pem}).server is not None


def _ca_cert(subject: str, key, issuer: x509.Certificate | None, issuer_key, path_length: int | None):
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, subject)])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(issuer.subject if issuer else name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(hours=1)).not_valid_after(NOW + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
            .sign(issuer_key, hashes.SHA256()))


def test_intermediate_in_the_cert_file_chains_to_the_root(node_files):
    """server.crt = leaf + intermediate, ca.crt = root: accepted, because the chain is followed."""
    root_key, inter_key = new_key(), new_key()
    root = _ca_cert("root", root_key, None, root_key, 1)
    inter = _ca_cert("intermediate", inter_key, root, root_key, 0)
    leaf = issue_leaf(inter, inter_key, [CONNECT_HOST], new_key())
    files = {CA: pem_cert(root), CERT: leaf.cert_pem + pem_cert(inter), KEY: leaf.key_pem}
    material = check(settings_for("verify-full"), files)
    assert len(material.server.chain) == 2
    where, what, _ = only_problem(settings_for("verify-full"), {**files, CERT: leaf.cert_pem})
    assert where == "PGSSLCERT" and "not signed" in what


@pytest.mark.parametrize("issued_at, days, words", [
    (NOW - dt.timedelta(days=400), 365, "expired on"),
    (NOW + dt.timedelta(days=2), 365, "is not valid until"),
])
def test_dates_outside_the_window_are_errors(ca, issued_at, days, words):
    pair = ca.issue(CONNECT_HOST, days=days, now=issued_at)
    where, what, fix = only_problem(settings_for("verify-full"), cert_files(pair, ca.cert_pem))
    assert where == "PGSSLCERT" and words in what and fix


def test_an_expired_ca_on_the_path_is_an_error_and_one_off_it_only_a_warning(ca):
    old = TestCA("old CA", days=365)
    later = NOW + dt.timedelta(days=400)
    leaf = old.issue(CONNECT_HOST, days=900)
    found = problems(settings_for("verify-ca"), cert_files(leaf, old.cert_pem), now=later)
    assert any(w == "PGSSLCERT" and "expired" in what for w, what, _ in found), found
    fresh = TestCA("fresh CA", days=900)
    pair = fresh.issue(CONNECT_HOST, days=800)
    material = check(settings_for("verify-ca"), cert_files(pair, fresh.cert_pem + old.cert_pem), now=later)
    assert any("PGSSLROOTCERT" in w and "expired" in w for w in material.warnings)


def test_expiring_within_the_warning_window_is_only_a_warning(ca):
    pair = ca.issue(CONNECT_HOST, days=10)
    material = check(settings_for("verify-full"), cert_files(pair, ca.cert_pem))
    assert len(material.warnings) == 1
    assert "PGSSLCERT" in material.warnings[0] and "expires in 9 days" in material.warnings[0]


def test_warning_window_is_configurable(ca):
    pair = ca.issue(CONNECT_HOST, days=60)
    settings = settings_for("verify-full", PCK_EXPIRY_WARN_DAYS="90")
    assert len(check(settings, cert_files(pair, ca.cert_pem)).warnings) == 1
    assert check(settings_for("verify-full"), cert_files(pair, ca.cert_pem)).warnings == ()


def test_common_name_counts_only_without_dns_sans(ca):
    assert name_covered(ca.issue(cn="db.example").cert, "db.example")
    assert not name_covered(ca.issue("other.example", cn="db.example").cert, "db.example")


@pytest.mark.parametrize("connect, sans, ok", [
    (f"{CONNECT_HOST}:5432", ["*.demo.ns.svc.cluster.local"], True),
    (f"{CONNECT_HOST}:5432", ["*.citusdemo-*"], False),
    (f"{CONNECT_HOST}:5432", ["localhost", "127.0.0.1"], False),
    ("10.1.2.3:5432", ["10.1.2.3"], True),
    ("10.1.2.3:5432", ["10.1.2.4", "*.demo.ns.svc.cluster.local"], False),
    ("[fd00::7]:5432", ["fd00::7"], True),
])
def test_verify_full_needs_the_connect_address_covered(ca, connect, sans, ok):
    settings = settings_for("verify-full", PATRONI_POSTGRESQL_CONNECT_ADDRESS=connect)
    files = cert_files(ca.issue(*sans), ca.cert_pem)
    if ok:
        assert check(settings, files).server is not None
        return
    found = problems(settings, files)
    # Both the PostgreSQL and the REST API connect address use that host.
    assert [w for w, _, _ in found] == [CERT, CERT]
    host = connect.rpartition(":")[0].strip("[]")
    assert all(repr(host) in what and "SANs are" in what and "re-issue" in fix for _, what, fix in found)


def test_derived_kubernetes_name_is_checked_and_says_so(ca):
    env = env_with(KUBERNETES_SERVICE_HOST="10.96.0.1", PATRONI_POSTGRESQL_CONNECT_ADDRESS=None,
                   PATRONI_KUBERNETES_NAMESPACE="other-ns", PGSSLMODE="verify-full")
    settings = parse_settings(env, facts())
    _, what, _ = problems(settings, cert_files(ca.issue("*.demo.ns.svc.cluster.local"), ca.cert_pem))[0]
    assert "demo-0-0.demo.other-ns.svc.cluster.local" in what and "derived from the pod name" in what


@pytest.mark.parametrize("mode", ("require", "verify-ca"))
def test_only_verify_full_checks_names(mode, ca):
    assert check(settings_for(mode), cert_files(ca.issue("unrelated.example"), ca.cert_pem)).server


@pytest.mark.parametrize("fmt", [serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL])
def test_encrypted_key_without_password(fmt, node, node_files):
    files = {**node_files, KEY: encrypt_key(node, b"k3y pass", fmt)}
    where, what, fix = only_problem(settings_for("require"), files)
    assert where == "PGSSLKEY" and "encrypted" in what and "PGSSLKEY_PASSWORD" in fix


@pytest.mark.parametrize("fmt", [serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL])
def test_encrypted_key_with_wrong_password(fmt, node, node_files):
    files = {**node_files, KEY: encrypt_key(node, b"k3y pass", fmt)}
    where, what, _ = only_problem(settings_for("require", PGSSLKEY_PASSWORD="wrong"), files)
    assert where == "PGSSLKEY_PASSWORD" and "does not decrypt" in what


@pytest.mark.parametrize("password", ["k3y pass", "ünïcødé 🔑 'q\" #:"])
@pytest.mark.parametrize("fmt", [serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL])
def test_encrypted_key_with_right_password_is_staged_decrypted(fmt, password, node, node_files):
    files = {**node_files, KEY: encrypt_key(node, password.encode(), fmt)}
    material = check(settings_for("require", PGSSLKEY_PASSWORD=password), files)
    assert b"ENCRYPTED" not in material.server.key_pem
    staged = load_private_key(material.server.key_pem, None)
    assert staged.private_numbers() == node.key.private_numbers()


def test_password_given_for_a_plain_key_is_harmless(node_files):
    assert check(settings_for("require", PGSSLKEY_PASSWORD="unused"), node_files).server is not None


@pytest.mark.parametrize("mode", ("allow", "prefer"))
def test_prefer_without_certificates_warns_and_runs_plain(mode):
    settings = settings_for(mode, ())
    assert not settings.server_ssl
    assert list(files_to_read(settings)) == [CA]
    material = check(settings, {CA: FileNotFoundError(errno.ENOENT, "No such file or directory", CA)})
    assert material.server is None and material.ca_pem is None
    assert len(material.warnings) == 1 and f"PGSSLMODE={mode}" in material.warnings[0]
    assert "plaintext" in material.warnings[0]


def test_prefer_with_an_explicit_missing_certificate_is_an_error():
    settings = settings_for("prefer", (), PGSSLCERT="/x/node.crt", PGSSLKEY="/x/node.key")
    missing = {p: FileNotFoundError(errno.ENOENT, "No such file or directory", p) for p in files_to_read(settings)}
    assert {w for w, _, _ in problems(settings, missing)} == {"PGSSLCERT", "PGSSLKEY"}


def test_mutual_tls_with_a_separate_client_pair(ca, node_files):
    client = ca.issue(cn="postgres")
    settings = settings_for("verify-full", PCK_CLIENT_CERT_AUTH="true",
                            PCK_CLIENT_CERT="/c/client.crt", PCK_CLIENT_KEY="/c/client.key")
    files = {**node_files, "/c/client.crt": client.cert_pem, "/c/client.key": client.key_pem}
    material = check(settings, files)
    assert material.client.leaf == client.cert
    stranger = TestCA("stranger").issue(cn="postgres")
    where, what, _ = only_problem(settings, {**files, "/c/client.crt": stranger.cert_pem,
                                             "/c/client.key": stranger.key_pem})
    assert where == "PCK_CLIENT_CERT" and "not signed" in what


def test_mutual_tls_needs_the_ca_even_in_require(node, node_files):
    settings = settings_for("require", PCK_CLIENT_CERT_AUTH="true")
    missing_ca = {**node_files, CA: FileNotFoundError(errno.ENOENT, "No such file or directory", CA)}
    assert only_problem(settings, missing_ca)[0] == "PGSSLROOTCERT"


def test_every_tls_problem_is_reported_together(ca, node):
    stranger = TestCA("stranger")
    files = {CERT: ca.issue("x.example", days=1, now=NOW - dt.timedelta(days=5)).cert_pem,
             KEY: node.key_pem, CA: stranger.cert_pem}
    # Key mismatch stops the pair's own checks; the CA file problem is still reported.
    found = problems(settings_for("verify-full"), files)
    assert [w for w, _, _ in found] == ["PGSSLKEY"]
    expired = ca.issue("x.example", days=1, now=NOW - dt.timedelta(days=5))
    found = problems(settings_for("verify-full"), {**cert_files(expired, stranger.cert_pem)})
    assert {w for w, _, _ in found} == {"PGSSLCERT", CERT}
    assert len(found) == 4  # expired, not signed by the CA, two uncovered connect addresses


def test_patroni_tls_files_are_read_checked_and_re_encoded(ca, node, node_files):
    settings = settings_for("verify-full", PATRONI_ETCD3_CACERT="/etcd/ca.pem", PATRONI_ETCD3_KEY="/etcd/k.pem")
    assert list(files_to_read(settings))[-2:] == ["/etcd/ca.pem", "/etcd/k.pem"]
    files = {**node_files, "/etcd/ca.pem": ca.cert_pem, "/etcd/k.pem": PermissionError(13, "Permission denied")}
    where, what, _ = only_problem(settings, files)
    assert where == "PATRONI_ETCD3_KEY" and "Permission denied" in what
    material = check(settings, {**files, "/etcd/k.pem": node.key_pem})
    assert {var: staged.data for var, staged in material.extra_files.items()} == {
        "PATRONI_ETCD3_CACERT": ca.cert_pem, "PATRONI_ETCD3_KEY": node.key_pem}


@pytest.mark.parametrize("var, content, words", [
    ("PATRONI_ETCD3_CACERT", b"root:x:0:0:root:/root:/bin/bash\n", "is not a PEM certificate"),  # /etc/shadow-like
    ("PATRONI_ETCD3_KEY", b"etcd key", "is not a PEM private key"),
    ("PATRONI_RESTAPI_CERTFILE", b"", "is empty"),
])
def test_patroni_tls_files_that_do_not_hold_what_they_name_are_refused(node_files, var, content, words):
    settings = settings_for("verify-full", **{var: "/x/file.pem"})
    where, what, _ = only_problem(settings, {**node_files, "/x/file.pem": content})
    assert where == var and words in what


def test_patroni_restapi_pair_must_match_and_cover_the_rest_connect_address(ca, node, node_files):
    other = ca.issue("elsewhere.example")
    settings = settings_for("verify-full", PATRONI_RESTAPI_CERTFILE="/api/c.pem", PATRONI_RESTAPI_KEYFILE="/api/k.pem")
    found = problems(settings, {**node_files, "/api/c.pem": other.cert_pem, "/api/k.pem": node.key_pem})
    assert {where for where, _, _ in found} == {"PATRONI_RESTAPI_KEYFILE", "PATRONI_RESTAPI_CERTFILE"}
    assert any("does not cover" in what for _, what, _ in found)
    material = check(settings, {**node_files, "/api/c.pem": node.cert_pem, "/api/k.pem": node.key_pem})
    assert set(material.extra_files) == {"PATRONI_RESTAPI_CERTFILE", "PATRONI_RESTAPI_KEYFILE"}


# A key on secp112r1: OpenSSL makes it, cryptography refuses it with UnsupportedAlgorithm (not a ValueError).
UNSUPPORTED_CURVE_KEY = b"""-----BEGIN EC PRIVATE KEY-----
MD4CAQEEDlfbupfFSHyjicxVBrM7oAcGBSuBBAAGoSADHgAE1JUerG9Bx0rFYoau
0AYSndGKY81xABrSmZHAhQ==
-----END EC PRIVATE KEY-----
"""


def test_key_on_an_unsupported_curve_is_bad_input(node_files):
    where, what, _ = only_problem(settings_for("require"), {**node_files, KEY: UNSUPPORTED_CURVE_KEY})
    assert where == "PGSSLKEY"


def pem(label: bytes, body: bytes) -> bytes:
    return b"-----BEGIN " + label + b"-----\n" + base64.encodebytes(body) + b"-----END " + label + b"-----\n"


def corrupted(data: bytes, where: int, value: int) -> bytes:
    """A PEM file whose DER has one byte changed."""
    label = data.split(b"-----")[1][len("BEGIN "):]
    der = bytearray(base64.b64decode(b"".join(data.split(b"\n")[1:-2])))
    der[where % len(der)] = value
    return pem(label, bytes(der))


LABELS = st.sampled_from([b"CERTIFICATE", b"PRIVATE KEY", b"EC PRIVATE KEY", b"RSA PRIVATE KEY",
                          b"ENCRYPTED PRIVATE KEY"])


@pytest.mark.parametrize("old, new", [
    ("2a8648ce3d0201", "008648ce3d0201"),  # id-ecPublicKey OID damaged: UnsupportedAlgorithm
    ("03420004", "03420009"),  # EC point damaged: ValueError("Invalid key")
], ids=["algorithm-oid", "ec-point"])
def test_damaged_certificate_is_bad_input(node, node_files, old, new):
    der = node.cert.public_bytes(serialization.Encoding.DER)
    assert bytes.fromhex(old) in der
    damaged = pem(b"CERTIFICATE", der.replace(bytes.fromhex(old), bytes.fromhex(new), 1))
    where, _, _ = only_problem(settings_for("require"), {**node_files, CERT: damaged})
    assert where == "PGSSLCERT"


@hsettings(max_examples=200, deadline=None)
@given(data=st.data(), mode=st.sampled_from(("prefer",) + TLS_MODES))
def test_any_file_contents_give_material_or_input_error(node_files, data, mode):
    """Whatever bytes a Secret holds, the checks end in TlsMaterial or InputError, never another exception."""
    files = dict(node_files)
    for path in data.draw(st.sets(st.sampled_from([CERT, KEY, CA]), min_size=1)):
        files[path] = data.draw(st.one_of(
            st.binary(max_size=200),
            st.builds(pem, LABELS, st.binary(max_size=200)),
            st.builds(corrupted, st.sampled_from([node_files[CERT], node_files[KEY], node_files[CA]]),
                      st.integers(0, 10_000), st.integers(0, 255)),
            st.sampled_from([node_files[CERT], node_files[KEY], node_files[CA], UNSUPPORTED_CURVE_KEY]).filter(
                lambda blob: blob is not UNSUPPORTED_CURVE_KEY),  # that one is the known bug above
        ))
    try:
        check(settings_for(mode), files)
    except InputError as err:
        assert all(p.where and p.what and p.fix for p in err.problems)
