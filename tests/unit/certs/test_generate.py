"""The certificate tool's pure parts: the names a cluster needs, the certificates and manifests built from them."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import os
import stat

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from hypothesis import given, settings, strategies as st

from entrypoint.certs.files import OutputFile, write_files
from entrypoint.certs.generate import GenerateRequest, build_outputs, check_request
from entrypoint.certs.issue import load_ca, new_private_key
from entrypoint.certs.manifests import kubectl_create_secret_command
from entrypoint.certs.names import ClusterNames, check_cluster_names, server_names
from entrypoint.errors import InputError
from entrypoint.pki.keys import describe_key
from entrypoint.pki.names import san_problem
from entrypoint.pki.chain import chains_to
from entrypoint.pki.keys import key_matches
from entrypoint.pki.load import load_certificates, load_private_key
from entrypoint.pki.names import name_covered

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def _files(request: GenerateRequest, ca=None) -> dict:
    return {f.name: f for f in build_outputs(request, NOW, ca)}


def _cert(files: dict, name: str) -> x509.Certificate:
    return load_certificates(files[name].content)[0]


def test_default_names_cover_groups_workers_pooler_headless_pods_and_loopback():
    names = server_names(ClusterNames())
    for service in ("citusdemo", "citusdemo-0", "citusdemo-1", "citusdemo-2", "citusdemo-workers",
                    "citusdemo-pooler"):
        for form in (service, f"{service}.default", f"{service}.default.svc",
                     f"{service}.default.svc.cluster.local"):
            assert form in names
    assert "*.citusdemo.default.svc.cluster.local" in names
    assert {"localhost", "127.0.0.1", "::1"} <= set(names)
    assert "citusdemo-3" not in names
    assert len(names) == len(set(names))


def test_groups_namespace_domain_and_extra_sans_shape_the_list():
    names = server_names(ClusterNames("shop", "prod", "corp.example", 1,
                                              ("DB.Example.com", "10.0.0.7", "0:0::1")))
    assert "shop-0.prod.svc.corp.example" in names and "shop-1" not in names
    assert "*.shop.prod.svc.corp.example" in names
    assert "db.example.com" in names and "10.0.0.7" in names
    assert names.count("::1") == 1  # an extra spelled differently is still one name


def test_seed_wildcard_form_is_rejected_with_the_reason():
    problems = check_cluster_names(ClusterNames(extra=("*.citusdemo-*.default.svc.cluster.local",)))
    assert len(problems) == 1
    assert "--san" in str(problems[0]) and "whole left-most label" in str(problems[0])


@pytest.mark.parametrize("field,value,needle", [
    ("cluster", "Citus_Demo", "CLUSTER_NAME"),
    ("cluster", "1citus", "CLUSTER_NAME"),
    ("cluster", "c" * 56, "CLUSTER_NAME"),
    ("namespace", "-ns", "NAMESPACE"),
    ("domain", "cluster..local", "--domain (PCK_CLUSTER_DOMAIN)"),
    ("domain", "cluster.local.", "--domain"),
    ("groups", 0, "--groups"),
    ("extra", ("foo*.example.com",), "--san"),
    ("extra", ("*.com",), "--san"),
    ("extra", ("bad_name.example",), "--san"),
])
def test_bad_names_are_reported_by_the_input_that_carries_them(field, value, needle):
    problems = check_cluster_names(ClusterNames(**{field: value}))
    assert len(problems) == 1 and needle in str(problems[0])


def test_names_too_long_together_are_refused():
    problems = check_cluster_names(ClusterNames(cluster="c" * 55, namespace="n" * 63,
                                                        domain=".".join(["d" * 60] * 3)))
    assert len(problems) == 1 and "longer than 253" in str(problems[0]) and "shorten" in str(problems[0])


def test_longest_valid_cluster_name_is_accepted():
    assert check_cluster_names(ClusterNames(cluster="c" * 55)) == []


@pytest.mark.parametrize("key_type,cls,size", [
    ("ecdsa-p256", ec.EllipticCurvePrivateKey, 256),
    ("rsa-2048", rsa.RSAPrivateKey, 2048),
    ("rsa-3072", rsa.RSAPrivateKey, 3072),
])
def test_key_types(key_type, cls, size):
    key = new_private_key(key_type)
    assert isinstance(key, cls) and key.key_size == size
    assert describe_key(key) == key_type


def test_unknown_key_type_names_the_flag_and_the_choices():
    (problem,) = check_request(GenerateRequest(key_type="dsa-1024"))
    assert problem.where == "--key-type" and "ecdsa-p256" in problem.fix and "rsa-4096" in problem.fix
    with pytest.raises(ValueError):
        new_private_key("dsa-1024")


def test_generated_set_chains_and_carries_the_right_usages():
    files = _files(GenerateRequest(clients=("postgres",)))
    ca, server, client = _cert(files, "ca.crt"), _cert(files, "server.crt"), _cert(files, "client-postgres.crt")
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert chains_to([server], [ca]) and chains_to([client], [ca])
    assert key_matches(load_private_key(files["server.key"].content, None), server)
    assert key_matches(load_private_key(files["ca.key"].content, None), ca)
    eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert list(client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == \
        [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert client.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "postgres"
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
    assert "127.0.0.1" not in san.get_values_for_type(x509.DNSName)  # IPs are IP SANs, as trustme does
    assert files["ca.key"].mode == files["server.key"].mode == files["client-postgres.key"].mode == 0o600


def test_validity_is_real_and_configurable():
    files = _files(GenerateRequest(ca_days=365, server_days=90))
    assert _cert(files, "ca.crt").not_valid_after_utc == NOW + dt.timedelta(days=365)
    assert _cert(files, "server.crt").not_valid_after_utc == NOW + dt.timedelta(days=90)
    assert _cert(files, "server.crt").not_valid_before_utc <= NOW
    defaults = _files(GenerateRequest())
    assert _cert(defaults, "ca.crt").not_valid_after_utc == NOW + dt.timedelta(days=3650)
    assert _cert(defaults, "server.crt").not_valid_after_utc == NOW + dt.timedelta(days=1095)


def test_server_cannot_outlive_its_ca():
    with pytest.raises(InputError) as err:
        build_outputs(GenerateRequest(ca_days=30, server_days=90), NOW)
    assert "--server-days" in str(err.value) and "--ca-days" in str(err.value)


def test_renewal_reuses_the_ca_and_refuses_to_outlive_it():
    first = _files(GenerateRequest())
    ca = load_ca(first["ca.crt"].content, first["ca.key"].content)
    renewed = _files(GenerateRequest(renew=True, server_days=30), ca)
    assert "ca.crt" not in renewed and "ca.key" not in renewed
    assert chains_to([_cert(renewed, "server.crt")], [ca[0]])
    later = NOW + dt.timedelta(days=3640)
    with pytest.raises(InputError) as err:
        build_outputs(GenerateRequest(renew=True, server_days=30), later, ca)
    assert "existing CA" in str(err.value)


def test_load_ca_refuses_a_leaf_or_a_foreign_key():
    files = _files(GenerateRequest())
    with pytest.raises(ValueError, match="not a CA"):
        load_ca(files["server.crt"].content, files["server.key"].content)
    with pytest.raises(ValueError, match="does not belong"):
        load_ca(files["ca.crt"].content, files["server.key"].content)


def test_opaque_and_tls_secret_manifests_hold_the_files():
    files = _files(GenerateRequest(secret_type="opaque"))
    doc = yaml.safe_load(files["secret.yaml"].content)
    assert doc["type"] == "Opaque" and doc["metadata"]["name"] == "citusdemo-ssl-certs"
    assert base64.b64decode(doc["data"]["server.key"]) == files["server.key"].content
    assert base64.b64decode(doc["data"]["ca.crt"]) == files["ca.crt"].content
    assert files["secret.yaml"].mode == 0o600
    tls = yaml.safe_load(_files(GenerateRequest(secret_type="tls"))["secret.yaml"].content)
    assert tls["type"] == "kubernetes.io/tls" and set(tls["data"]) == {"ca.crt", "ca.crl", "tls.crt", "tls.key"}


def test_cert_manager_manifest_asks_for_the_same_names():
    request = GenerateRequest(names=ClusterNames(namespace="prod", extra=("10.1.2.3",)), cert_manager=True)
    issuer, certificate = yaml.safe_load_all(_files(request)["cert-manager.yaml"].content)
    assert issuer["kind"] == "Issuer" and issuer["spec"]["ca"]["secretName"] == "citusdemo-ca"
    spec = certificate["spec"]
    assert spec["secretName"] == "citusdemo-ssl-certs"
    assert spec["issuerRef"]["name"] == issuer["metadata"]["name"]
    assert spec["dnsNames"] + spec["ipAddresses"] == server_names(request.names)
    assert "10.1.2.3" in spec["ipAddresses"] and "server auth" in spec["usages"]
    assert spec["privateKey"]["algorithm"] == "ECDSA"


def test_kubectl_command_is_the_seeds():
    assert kubectl_create_secret_command("citusdemo", "default", "certs") == (
        "kubectl create secret generic citusdemo-ssl-certs \\\n"
        "  --from-file=ca.crt=certs/ca.crt \\\n"
        "  --from-file=server.crt=certs/server.crt \\\n"
        "  --from-file=server.key=certs/server.key \\\n"
        "  --namespace=default")


_label = st.from_regex(r"\A[a-z][a-z0-9-]{0,20}[a-z0-9]\Z")


@settings(max_examples=25, deadline=None)
@given(cluster=_label, namespace=_label, groups=st.integers(1, 6), member=st.integers(0, 5))
def test_every_generated_name_is_covered_by_the_certificate(cluster, namespace, groups, member):
    names = ClusterNames(cluster, namespace, "cluster.local", groups)
    assert check_cluster_names(names) == []
    cert = _cert(_files(GenerateRequest(names=names)), "server.crt")
    for name in server_names(names):
        assert san_problem(name) is None
        if not name.startswith("*."):
            assert name_covered(cert, name), name
    group = member % groups
    pod = f"{cluster}-{group}-{member}.{cluster}.{namespace}.svc.cluster.local"
    assert name_covered(cert, pod)
    assert not name_covered(cert, f"x.{pod}")  # a wildcard stands for one label only
    assert not name_covered(cert, f"{cluster}-{groups}.{namespace}.svc")


# --- write_files: the one side effect ------------------------------------------------------

def _out() -> list:
    return [OutputFile("a.crt", b"cert", 0o644), OutputFile("a.key", b"key", 0o600)]


def test_write_files_creates_keys_private_from_the_first_byte(tmp_path, monkeypatch):
    opened = []
    real_open = os.open

    def recording_open(path, flags, mode=0o777, *args, **kwargs):
        opened.append((os.path.basename(path), flags, mode))
        return real_open(path, flags, mode, *args, **kwargs)

    monkeypatch.setattr(os, "open", recording_open)
    old_umask = os.umask(0)
    try:
        write_files(str(tmp_path), _out(), replace=False)
    finally:
        os.umask(old_umask)
    created = {name: (flags, mode) for name, flags, mode in opened if name in ("a.crt", "a.key")}
    assert created["a.key"][1] == 0o600
    assert created["a.key"][0] & os.O_EXCL and created["a.key"][0] & os.O_CREAT
    assert stat.S_IMODE(os.stat(tmp_path / "a.key").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "a.crt").st_mode) == 0o644
    assert sorted(os.listdir(tmp_path)) == ["a.crt", "a.key"]  # no staging directory left


def test_write_files_never_overwrites_without_replace_and_leaves_nothing(tmp_path):
    (tmp_path / "a.key").write_bytes(b"old")
    with pytest.raises(FileExistsError):
        write_files(str(tmp_path), _out(), replace=False)
    assert (tmp_path / "a.key").read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["a.key"]


def test_write_files_rolls_back_a_replace_that_fails_half_way(tmp_path):
    (tmp_path / "a.crt").write_bytes(b"old cert")
    (tmp_path / "a.key").mkdir()  # cannot be replaced by a file
    with pytest.raises(OSError):
        write_files(str(tmp_path), _out(), replace=True)
    assert (tmp_path / "a.crt").read_bytes() == b"old cert"
    assert sorted(os.listdir(tmp_path)) == ["a.crt", "a.key"]
