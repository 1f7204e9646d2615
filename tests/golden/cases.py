"""The golden cases: every mode x {coordinator, worker} x {mTLS off, on}, rendered through the real pipeline.

Inputs are fixed (dummy passwords, default paths, a Kubernetes pod's environment), so the
output depends only on the code and the template. `scripts/regen-golden` runs this module
with --write; tests/golden/test_golden.py compares byte for byte.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from dataclasses import dataclass

from entrypoint import sslmode
from entrypoint.boot.material import check_material, files_to_read
from entrypoint.boot.render import render_for
from entrypoint.boot.settings import HostFacts, parse_settings
from entrypoint.boot.stage import plan_paths

EXPECTED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "expected")
CERT_DIR = "/etc/ssl/certs/postgresql"
SECRET_FILES = ("ca.crt", "server.crt", "server.key")
ROLES = {"coordinator": ("citusdemo-0-0", "0"), "worker": ("citusdemo-1-0", "1")}

# A pod of the chart's StatefulSet, as Kubernetes and the chart set it up.
POD_ENV = {
    "KUBERNETES_SERVICE_HOST": "10.96.0.1",
    "PATRONI_KUBERNETES_NAMESPACE": "default",
    "PATRONI_SCOPE": "citusdemo",
    "PATRONI_CITUS_DATABASE": "citus",
    "PATRONI_SUPERUSER_PASSWORD": "dummy-superuser-password",
    "PATRONI_REPLICATION_USERNAME": "standby",
    "PATRONI_REPLICATION_PASSWORD": "dummy-replication-password",
    "PATRONI_REWIND_USERNAME": "rewind_user",
    "PATRONI_REWIND_PASSWORD": "dummy-rewind-password",
    "PATRONI_POSTGRESQL_DATA_DIR": "/home/postgres/pgdata/pgroot/data",
}
FACTS = {"pg_bin_dir": "/usr/lib/postgresql/15/bin"}


@dataclass(frozen=True)
class Case:
    mode: str
    role: str
    mtls: bool
    certs: bool = True  # whether the Secret is mounted (only prefer runs without it)
    crl: bool = False  # whether the Secret carries ca.crl (revocation)

    @property
    def file_name(self) -> str:
        return (f"{self.mode}{'' if self.certs else '-nocerts'}-{self.role}{'-mtls' if self.mtls else ''}"
                f"{'-crl' if self.crl else ''}.yml")

    def env(self) -> dict:
        name, group = ROLES[self.role]
        return {**POD_ENV, "PGSSLMODE": self.mode, "PATRONI_NAME": name, "PATRONI_CITUS_GROUP": group,
                "PCK_CLIENT_CERT_AUTH": "true" if self.mtls else "false"}


def all_cases() -> list:
    cases = [Case(mode.name, role, mtls) for mode in sslmode.MODES for role in ROLES
             for mtls in ((False, True) if mode.requires_tls else (False,))]
    cases += [Case("prefer", role, False, certs=False) for role in ROLES]
    return cases + [Case("verify-full", "coordinator", True, crl=True), Case("require", "worker", False, crl=True)]


def secret_files() -> dict:
    """{path: bytes} of a mounted Secret from a throwaway CA; the output holds paths only, never these bytes."""
    from tests.support.pki import TestCA
    ca = TestCA("golden CA")
    pair = ca.issue("*.citusdemo.default.svc.cluster.local", "localhost", "127.0.0.1", "::1")
    files = {f"{CERT_DIR}/{name}": data for name, data in zip(SECRET_FILES, (ca.cert_pem, pair.cert_pem, pair.key_pem))}
    files[f"{CERT_DIR}/ca.crl"] = ca.crl(revoked=[ca.issue("revoked.example")])
    return files


def render_case(case: Case, files: dict) -> str:
    """The YAML `render --show-secrets` prints for this case."""
    entries = frozenset((SECRET_FILES + (("ca.crl",) if case.crl else ())) if case.certs else ())
    settings = parse_settings(case.env(), HostFacts(cert_dir_entries=entries, **FACTS))
    read = {path: files[path] for path in files_to_read(settings) if case.certs}
    material = check_material(settings, read, dt.datetime.now(dt.timezone.utc))
    return render_for(settings, plan_paths(settings, material), show_secrets=True)


def write_all() -> list:
    """Rewrite every expected file and remove ones no case produces; returns the names written."""
    os.makedirs(EXPECTED_DIR, exist_ok=True)
    files = secret_files()
    wanted = {case.file_name: render_case(case, files) for case in all_cases()}
    for stale in sorted(set(os.listdir(EXPECTED_DIR)) - set(wanted)):
        os.unlink(os.path.join(EXPECTED_DIR, stale))
    for name, text in wanted.items():
        with open(os.path.join(EXPECTED_DIR, name), "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
    return sorted(wanted)


def main(argv: list) -> int:
    parser = argparse.ArgumentParser(description="Regenerate the golden Patroni YAML files.")
    parser.add_argument("--write", action="store_true", help="rewrite tests/golden/expected/")
    if not parser.parse_args(argv).write:
        parser.print_help()
        return 2
    names = write_all()
    print(f"wrote {len(names)} files to {os.path.relpath(EXPECTED_DIR)}; review with: git diff -- tests/golden/expected")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
