"""In-memory test PKI built on the product's own certificate code: a CA, then certificates for any names."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass

from entrypoint import certgen

NOW = dt.datetime.now(dt.timezone.utc)


@dataclass
class Pair:
    cert_pem: bytes
    key_pem: bytes
    cert: object
    key: object


class TestCA:
    """A CA that issues server certificates, as trustme does, but with the product's certgen."""

    __test__ = False  # not a pytest class

    def __init__(self, name: str = "test CA", key_type: str = "ecdsa-p256", days: int = 365) -> None:
        self.key = certgen.new_private_key(key_type)
        self.cert = certgen.issue_ca(self.key, name, days, NOW)
        self.cert_pem = certgen.cert_pem(self.cert)
        self.key_type = key_type

    def issue(self, *names: str, days: int = 365, now: dt.datetime = NOW, cn: str = "") -> Pair:
        key = certgen.new_private_key(self.key_type)
        cert = certgen.issue_server_cert(self.cert, self.key, key, list(names), cn or (names[0] if names else "node"),
                                         days, now)
        return Pair(certgen.cert_pem(cert), certgen.key_pem(key), cert, key)

    def write_dir(self, directory: str, pair: Pair, ca_pem: bytes | None = None,
                  names: tuple = ("ca.crt", "server.crt", "server.key")) -> str:
        """Write ca/cert/key into `directory` as a Secret mount would (root-owned, 0600)."""
        os.makedirs(directory, exist_ok=True)
        for name, data in zip(names, (ca_pem or self.cert_pem, pair.cert_pem, pair.key_pem)):
            path = os.path.join(directory, name)
            fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        return directory
