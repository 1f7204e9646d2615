"""`pooler check`'s report: what run would do, one escaped line each (no secret in it)."""

from __future__ import annotations

from entrypoint.boot.commands import material_lines
from entrypoint.errors import printable
from entrypoint.pooler.plan import PoolerPlan


def _ini(plan: PoolerPlan, key: str) -> str:
    for line in plan.ini.splitlines():
        name, sep, value = line.partition(" = ")
        if sep and name == key:
            return value or "-"
    return "-"


def check_report(plan: PoolerPlan) -> str:
    settings, pooler, material = plan.settings, plan.pooler, plan.material
    lines = [
        f"PGSSLMODE            {settings.mode}",
        f"client leg           client_tls_sslmode={_ini(plan, 'client_tls_sslmode')}"
        f" ({'plaintext refused' if settings.mode.requires_tls else 'plaintext allowed'}),"
        f" protocols {_ini(plan, 'client_tls_protocols')}",
        f"server leg           server_tls_sslmode={_ini(plan, 'server_tls_sslmode')} to {pooler.target}"
        f"{', client certificate presented' if _ini(plan, 'server_tls_cert_file') != '-' else ''}",
        f"mutual TLS           {'on' if settings.mtls.enabled else 'off'}",
        f"listen               {pooler.listen}",
        f"service              {pooler.service or 'not set'}",
        f"auth                 SCRAM pass-through: auth_user {pooler.auth_user}, auth_query on pgbouncer.user_lookup",
        f"pool                 {pooler.pool_mode}, max_client_conn {pooler.max_client_conn}, "
        f"default_pool_size {pooler.default_pool_size}",
        f"config file          {plan.ini_path} (auth file {plan.auth_path}, 0600)",
        f"exec                 {' '.join(plan.command)} as {plan.user.name}",
    ]
    lines += material_lines(settings, material, pooler.service.host if pooler.service is not None else None)
    lines += ["CRL                  not applied: PgBouncer 1.18 has no CRL setting (docs/pooler.md)"]
    lines += [f"warning: {w}" for w in material.warnings]
    lines.append("result               would start")
    return "\n".join(printable(line) for line in lines)
