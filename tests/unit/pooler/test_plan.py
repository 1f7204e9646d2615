"""pooler's inputs and plan over real files in a temporary Secret-like directory: the member's checks plus its own."""

from __future__ import annotations

import os

import pytest

from entrypoint.errors import InputError
from entrypoint.pooler import plan as pooler_plan
from entrypoint.pooler.plan import inputs, member_view, plan, render_for
from entrypoint.pooler.report import check_report
from tests.support.pki import TestCA

CA = TestCA("pooler unit CA")
SERVICE = "citusdemo-pooler.default.svc.cluster.local"
SECRET = 'pw "with" quotes'


@pytest.fixture
def env(tmp_path):
    certs = tmp_path / "certs"
    CA.write_dir(str(certs), CA.issue(SERVICE, cn="pooler"))
    return {"PGSSLMODE": "verify-full", "PCK_CERT_DIR": str(certs), "PCK_RUNTIME_DIR": str(tmp_path / "run"),
            "PCK_POOLER_TARGET": "citusdemo-0.default.svc.cluster.local:5432",
            "PCK_POOLER_SERVICE": f"{SERVICE}:6432", "PCK_POOLER_AUTH_PASSWORD": SECRET,
            "PATH": "/usr/sbin:/usr/bin:/bin"}


def problems(env) -> list:
    with pytest.raises(InputError) as err:
        inputs(env)
    return list(err.value.problems)


def test_a_pooler_needs_no_patroni_passwords_name_or_connect_address(env):
    settings, material, pooler = inputs(env)
    assert settings.mode.name == "verify-full" and material.server is not None
    assert settings.served_names == (("PCK_POOLER_SERVICE", pooler.service),)
    assert member_view({"PATRONI_SCOPE": "prod"})["PATRONI_SCOPE"] == "prod"


def test_the_certificate_must_cover_the_service_at_verify_full_only(env):
    env["PCK_POOLER_SERVICE"] = "other.example.org:6432"
    found = problems(env)
    assert len(found) == 1 and "does not cover 'other.example.org'" in found[0].what and "PCK_POOLER_SERVICE" in \
        found[0].what
    inputs({**env, "PGSSLMODE": "verify-ca"})  # the name is not checked below verify-full


def test_verify_full_without_a_service_name_is_a_problem(env):
    del env["PCK_POOLER_SERVICE"]
    assert [p.where for p in problems(env)] == ["PCK_POOLER_SERVICE"]
    inputs({**env, "PGSSLMODE": "require"})


def test_tls_and_pooler_problems_are_reported_together(env):
    env.update(PCK_POOLER_POOL_MODE="sessions", PGSSLCERT=env["PCK_CERT_DIR"] + "/missing.crt")
    where = [p.where for p in problems(env)]
    assert where == ["PGSSLCERT", "PCK_POOLER_POOL_MODE"]


def test_the_password_file_goes_through_the_safe_reader_and_is_never_shown(env, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    del env["PCK_POOLER_AUTH_PASSWORD"]
    found = problems({**env, "PCK_POOLER_AUTH_PASSWORD_FILE": str(fifo)})  # returns: a FIFO never blocks
    assert [p.where for p in found] == ["PCK_POOLER_AUTH_PASSWORD_FILE"] and "FIFO" in found[0].what
    big = tmp_path / "big"
    big.write_bytes(b"x" * 10000)
    assert "more than" in problems({**env, "PCK_POOLER_AUTH_PASSWORD_FILE": str(big)})[0].what
    good = tmp_path / "password"
    good.write_text(SECRET + "\n")
    assert inputs({**env, "PCK_POOLER_AUTH_PASSWORD_FILE": str(good)})[2].auth_password == SECRET
    both = problems({**env, "PCK_POOLER_AUTH_PASSWORD": "x", "PCK_POOLER_AUTH_PASSWORD_FILE": str(good)})
    assert [p.where for p in both] == ["PCK_POOLER_AUTH_PASSWORD"]
    broken = problems({**env, "PCK_POOLER_AUTH_PASSWORD": "line\nbreak-secret"})
    assert "not shown" in broken[0].what and "break-secret" not in str(broken)


def test_render_and_check_show_no_secret(env):
    settings, material, pooler = inputs(env)
    text = render_for(settings, material, pooler)
    assert SECRET not in text and "<redacted>" in text and "server_tls_sslmode = verify-full" in text


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/usr/sbin/pgbouncer"), reason="needs root and PgBouncer")
def test_plan_resolves_pgbouncer_and_keeps_secrets_out_of_its_environment(env):
    env["PGPASSWORD"] = "libpq-secret"
    p = plan(env)
    assert p.command == ["/usr/sbin/pgbouncer", os.path.join(env["PCK_RUNTIME_DIR"], "pgbouncer.ini")]
    assert "PCK_POOLER_AUTH_PASSWORD" not in p.child_env and "PGPASSWORD" not in p.child_env
    assert SECRET not in p.ini and p.auth_text == '"pgbouncer" "pw ""with"" quotes"\n'
    report = check_report(p)
    assert "would start" in report and SECRET not in report and f"covers {SERVICE}: yes" in report
    assert not os.path.exists(env["PCK_RUNTIME_DIR"])  # planning writes nothing


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (the run user is resolved for root)")
def test_a_missing_pgbouncer_is_a_problem(env, monkeypatch):
    monkeypatch.setattr(pooler_plan, "PGBOUNCER_DIRS", ("/nonexistent",))
    with pytest.raises(InputError) as err:
        plan({**env, "PATH": "/nonexistent"})
    assert [p.where for p in err.value.problems] == ["pgbouncer"]
