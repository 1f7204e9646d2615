"""PCK_TLS_UPGRADE: the member serves TLS at once, but its own client links start at prefer and tighten later."""

from __future__ import annotations

import pytest

from entrypoint.boot.render import build_config, pg_hba
from entrypoint.boot.stage import plan_paths
from entrypoint.errors import InputError
from tests.unit.conftest import check, settings_for

CITUS = {"PATRONI_CITUS_GROUP": "1", "PATRONI_CITUS_DATABASE": "citus"}


def config(node_files, settings):
    return build_config(settings, plan_paths(settings, check(settings, node_files)))


@pytest.mark.parametrize("mode", ["require", "verify-ca", "verify-full"])
def test_a_transitional_member_serves_tls_but_links_at_prefer_until_tightened(node_files, mode):
    settings = settings_for(mode, PCK_TLS_UPGRADE="true", **CITUS)
    assert settings.transitional and settings.links.name == "prefer" and settings.mode.name == mode
    loose = config(node_files, settings)
    for role in ("superuser", "replication"):
        auth = loose["postgresql"]["authentication"][role]
        assert auth["sslmode"] == "prefer" and "sslrootcert" not in auth
    assert loose["postgresql"]["parameters"]["citus.node_conninfo"] == "sslmode=prefer"
    assert loose["postgresql"]["parameters"]["ssl"] == "on"
    assert pg_hba(settings) == pg_hba(settings.tightened())  # the server refuses plaintext from the start
    strict = config(node_files, settings.tightened())
    assert strict == config(node_files, settings_for(mode, **CITUS))  # tightened is exactly the mode's own config


@pytest.mark.parametrize("mode", ["disable", "allow", "prefer"])
def test_modes_that_accept_plaintext_need_no_transition(node_files, mode):
    assert not settings_for(mode, PCK_TLS_UPGRADE="true").transitional


def test_the_transition_cannot_go_with_mutual_tls():
    with pytest.raises(InputError) as caught:
        settings_for("verify-full", PCK_TLS_UPGRADE="true", PCK_CLIENT_CERT_AUTH="true")
    (problem,) = [p for p in caught.value.problems if p.where == "PCK_TLS_UPGRADE"]
    assert "second rolling update" in problem.fix
