"""Shared inputs for the unit tests: a base environment, host facts and an in-memory PKI."""

from __future__ import annotations

import datetime as dt
import errno

import pytest
from cryptography.hazmat.primitives import serialization

from entrypoint.boot.settings import HostFacts, parse_settings
from entrypoint.boot.material import check_material, files_to_read
from tests.support.pki import NOW, Pair, TestCA

CERT_DIR = "/certs"
SEED_NAMES = ("ca.crt", "server.crt", "server.key")
CERT_MANAGER_NAMES = ("ca.crt", "tls.crt", "tls.key")
CONNECT_HOST = "demo-0-0.demo.ns.svc.cluster.local"
WILDCARD = "*.demo.ns.svc.cluster.local"

# The smallest environment every mode accepts (with certificates that cover CONNECT_HOST).
BASE_ENV = {
    "PATRONI_SCOPE": "demo",
    "PATRONI_NAME": "demo-0-0",
    "PATRONI_SUPERUSER_PASSWORD": "su-Secret-1",
    "PATRONI_REPLICATION_PASSWORD": "repl-Secret-2",
    "PATRONI_POSTGRESQL_CONNECT_ADDRESS": f"{CONNECT_HOST}:5432",
    "PCK_CERT_DIR": CERT_DIR,
    "PCK_RUNTIME_DIR": "/run/pck",
}


def env_with(**changes: str | None) -> dict:
    """BASE_ENV with `changes` applied; a None value removes the variable."""
    env = dict(BASE_ENV)
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def facts(names: tuple = SEED_NAMES, **kw) -> HostFacts:
    return HostFacts(cert_dir_entries=frozenset(names), **kw)


def settings_for(mode: str, names: tuple = SEED_NAMES, **changes: str | None):
    return parse_settings(env_with(PGSSLMODE=mode, **changes), facts(names))


def cert_files(pair: Pair, ca_pem: bytes, names: tuple = SEED_NAMES, cert_dir: str = CERT_DIR) -> dict:
    """The {path: bytes} a Secret mount with ca, cert and key under `names` would give."""
    return {f"{cert_dir}/{name}": data for name, data in zip(names, (ca_pem, pair.cert_pem, pair.key_pem))}


def encrypt_key(pair: Pair, password: bytes, fmt=serialization.PrivateFormat.PKCS8) -> bytes:
    return pair.key.private_bytes(serialization.Encoding.PEM, fmt, serialization.BestAvailableEncryption(password))


def check(settings, files: dict, now: dt.datetime = NOW):
    """check_material over what `read_files` would give: only the files the settings ask for, absent ones as ENOENT."""
    read = {path: files.get(path, FileNotFoundError(errno.ENOENT, "No such file or directory", path))
            for path in files_to_read(settings)}
    return check_material(settings, read, now)


@pytest.fixture(scope="session")
def ca() -> TestCA:
    return TestCA("unit test CA")


@pytest.fixture(scope="session")
def node(ca: TestCA) -> Pair:
    """A node certificate as `certs generate` makes it: the headless-service wildcard plus local names."""
    return ca.issue(WILDCARD, "localhost", "127.0.0.1", "::1")


@pytest.fixture(scope="session")
def node_files(ca: TestCA, node: Pair) -> dict:
    return cert_files(node, ca.cert_pem)
