"""The connection pooler (pooler.enabled): PgBouncer's Deployment, Service, PDB, auth Secret and setup Job.

The pooler's environment is parsed by the entrypoint's own parsers (entrypoint/pooler/settings.py for
PCK_POOLER_*, the boot settings for the TLS variables), as test_chart_entrypoint_contract.py does for
the members, and its names are checked against the certificate tool's.
"""

from __future__ import annotations

import base64
import os
import stat
import subprocess
from typing import Any

import pytest

from entrypoint import layout
from entrypoint.boot import settings as settings_module
from entrypoint.certs.names import ClusterNames, server_names
from entrypoint.errors import Collector
from entrypoint.pooler.settings import DEFAULT_PORT, parse_pooler
from tests.helm.support import (
    CERT_DIR,
    CSI_DIR,
    Case,
    Rendered,
    container,
    env_of,
    helm,
    mounted_files,
    pod_environment,
    render,
    selects,
    volume_named,
)
from tests.helm.test_chart_entrypoint_contract import covered

POD_SUFFIX = "5d8f7c9b4-x2k9q"  # a Deployment pod's name: <deployment>-<hash>-<id>


def _pooler_enabled(rendered: Rendered) -> bool:
    return bool(rendered.case.user_values().get("pooler", {}).get("enabled"))


def _deployment(rendered: Rendered) -> dict[str, Any]:
    return rendered.get("Deployment", f"{rendered.case.release}-pooler")


def _job(rendered: Rendered) -> dict[str, Any]:
    return rendered.get("Job", f"{rendered.case.release}-pooler-setup")


def _pooler_cases(rendered_cases: dict[str, Rendered]) -> list[Rendered]:
    found = [r for r in rendered_cases.values() if _pooler_enabled(r)]
    assert {r.case.id for r in found} == {"pooler", "csi"}
    return found


@pytest.fixture(scope="module")
def plain() -> Rendered:
    """The pooler with TLS off: no certificate, prefer on every link."""
    return render(Case("pooler-plain", "citusdemo", "default", sets="pooler.enabled=true"))


def test_nothing_of_the_pooler_is_rendered_unless_enabled(rendered: Rendered) -> None:
    if _pooler_enabled(rendered):
        return
    r = rendered.case.release
    assert f"{r}-pooler" not in rendered.names("Deployment") + rendered.names("Service")
    assert not rendered.of_kind("Job")
    assert f"{r}-pooler-auth" not in rendered.names("Secret")


def test_deployment_service_and_budget_select_the_pooler_pods_only(rendered_cases: dict[str, Rendered]) -> None:
    rendered = rendered_cases["pooler"]
    r = rendered.case.release
    deployment = _deployment(rendered)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["replicas"] == 3
    assert selects(deployment["spec"]["selector"]["matchLabels"], labels)
    # None of Patroni's labels: no member Service, Patroni selector or member policy picks a pooler pod.
    assert not {"application", "cluster-name", "citus-group", "role"} & set(labels)
    for svc in rendered.of_kind("Service"):
        if svc["metadata"]["name"] != f"{r}-pooler":
            assert not selects(svc["spec"].get("selector") or {"none": "none"}, dict(labels, role="primary"))
    service = rendered.get("Service", f"{r}-pooler")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [{"name": "pgbouncer", "port": DEFAULT_PORT, "targetPort": "pgbouncer",
                                         "protocol": "TCP"}]
    assert selects(service["spec"]["selector"], labels)
    assert {p["name"]: p["containerPort"] for p in container(deployment)["ports"]} == {"pgbouncer": DEFAULT_PORT}
    pdb = rendered.get("PodDisruptionBudget", f"{r}-pooler")
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert pdb["spec"]["maxUnavailable"] == 1
    # A new pod is ready before an old one goes.
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}


def test_the_entrypoint_accepts_the_pooler_pods_environment(rendered_cases: dict[str, Rendered],
                                                            plain: Rendered) -> None:
    for rendered in [*_pooler_cases(rendered_cases), plain]:
        values = rendered.case.user_values()
        r, ns = rendered.case.release, rendered.case.namespace
        domain = values.get("clusterDomain", "cluster.local")
        pooler = {"replicas": 2, "poolMode": "transaction", "maxClientConn": 1000, "defaultPoolSize": 20,
                  "authUser": "pgbouncer", **values["pooler"]}
        deployment = _deployment(rendered)
        env = pod_environment(deployment, POD_SUFFIX, ns)
        bad = Collector()
        parsed = parse_pooler(env, bad)
        assert bad.problems == [], bad.problems
        assert (parsed.target.host, parsed.target.port) == (f"{r}-0.{ns}.svc.{domain}", layout.POSTGRES_PORT)
        assert (parsed.service.host, parsed.service.port) == (f"{r}-pooler.{ns}.svc.{domain}", DEFAULT_PORT)
        assert (parsed.listen.host, parsed.listen.port) == ("*", DEFAULT_PORT)
        assert (parsed.auth_user, parsed.auth_password) == (pooler["authUser"], "s3cret")
        assert (parsed.pool_mode, parsed.max_client_conn, parsed.default_pool_size) == (
            pooler["poolMode"], pooler["maxClientConn"], pooler["defaultPoolSize"])
        # The TLS variables, read by the members' parser (the pooler checks certificates the same way). The
        # two member passwords are stand-ins: the pooler is not given them and does not need them.
        facts = settings_module.HostFacts(cert_dir_entries=mounted_files(deployment, CERT_DIR))
        settings = settings_module.parse_settings(
            {**env, "PATRONI_SUPERUSER_PASSWORD": "-", "PATRONI_REPLICATION_PASSWORD": "-"}, facts)
        ssl = values.get("ssl", {})
        assert settings.mode.name == ssl.get("mode", "verify-ca" if ssl.get("enabled") else "prefer")
        assert settings.mtls.enabled == bool(ssl.get("clientAuth"))
        assert settings.tuning.tls_min_version == ssl.get("minProtocolVersion", "TLSv1.2")
        assert (settings.identity.scope, settings.identity.name) == (r, f"{r}-pooler-{POD_SUFFIX}")
        if ssl.get("enabled"):
            tls_dir = CSI_DIR if ssl.get("certManager", {}).get("csi", {}).get("enabled") else CERT_DIR
            assert (settings.tls.ca_file, settings.tls.cert_file, settings.tls.key_file) == (
                f"{tls_dir}/ca.crt", f"{tls_dir}/server.crt", f"{tls_dir}/server.key")


def test_clients_and_pgbouncer_use_names_the_certificates_carry(rendered_cases: dict[str, Rendered]) -> None:
    for rendered in _pooler_cases(rendered_cases):
        r, ns = rendered.case.release, rendered.case.namespace
        sans = server_names(ClusterNames(cluster=r, namespace=ns, groups=len(rendered.statefulsets)))
        env = pod_environment(_deployment(rendered), POD_SUFFIX, ns)
        parsed = parse_pooler(env, Collector())
        service = f"{r}-pooler"
        for name in (service, f"{service}.{ns}", f"{service}.{ns}.svc", parsed.service.host):
            assert covered(name, sans), name  # the shared certificate, from certs generate or cert-manager
        assert covered(parsed.target.host, sans)  # PgBouncer checks the coordinator's name at verify-full


def test_the_pooler_pods_never_get_a_members_password(rendered_cases: dict[str, Rendered], plain: Rendered) -> None:
    for rendered in [*_pooler_cases(rendered_cases), plain]:
        env = env_of(_deployment(rendered))
        refs = {(v["valueFrom"]["secretKeyRef"]["name"], v["valueFrom"]["secretKeyRef"]["key"])
                for v in env.values() if "secretKeyRef" in v.get("valueFrom", {})}
        assert refs == {(f"{rendered.case.release}-pooler-auth", "auth-password")}
        assert not [n for n in env if n.startswith("PATRONI_") and n.endswith("PASSWORD")]


def test_the_pooler_runs_as_the_members_do(rendered_cases: dict[str, Rendered], plain: Rendered) -> None:
    for rendered in [*_pooler_cases(rendered_cases), plain]:
        deployment = _deployment(rendered)
        pod = deployment["spec"]["template"]["spec"]
        member = rendered.statefulsets[0]["spec"]["template"]["spec"]
        c = container(deployment)
        assert c["args"] == ["pooler", "run"] and "command" not in c  # the image's ENTRYPOINT
        assert pod["securityContext"] == member["securityContext"]
        assert c["securityContext"] == member["containers"][0]["securityContext"]
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert pod["automountServiceAccountToken"] is False and "serviceAccountName" not in pod
        for probe, kind in (("readinessProbe", "readiness"), ("livenessProbe", "liveness")):
            assert c[probe]["exec"]["command"] == ["patroni-citus-k8s", "pooler", "probe", kind]
            assert c[probe]["timeoutSeconds"] > 5
        # Written: the runtime dir (key copies, pgbouncer.ini, its auth file) and /tmp, both in memory;
        # everything else mounted is read-only.
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        for path in (layout.RUNTIME_DIR, "/tmp"):
            assert volume_named(deployment, mounts[path]["name"])["emptyDir"]["medium"] == "Memory", path
        assert {p for p, m in mounts.items() if not m.get("readOnly")} == {layout.RUNTIME_DIR, "/tmp"}
        assert env_of(deployment)["PCK_RUNTIME_DIR"]["value"] == layout.RUNTIME_DIR


@pytest.mark.parametrize("sets, delay, drain", [("", 5.0, 20.0),
                                                 ("pooler.shutdown.delaySeconds=0,pooler.shutdown.drainSeconds=90",
                                                  0.0, 90.0)])
def test_a_stopping_pooler_drains_within_its_grace_period(sets: str, delay: float, drain: float) -> None:
    """preStop is `pooler drain` as the entrypoint's own parser reads it, and the kubelet waits for all of it."""
    from entrypoint.cli import build_parser

    rendered = render(Case("pooler-drain", "citusdemo", "default",
                           sets=",".join(filter(None, ["pooler.enabled=true", sets]))))
    deployment = _deployment(rendered)
    command = container(deployment)["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "patroni-citus-k8s"
    args = build_parser().parse_args(command[1:])
    assert (args.pooler_command, args.delay, args.timeout) == ("drain", delay, drain)
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= delay + drain + 5


def test_the_pooler_mounts_the_tls_files_as_the_members_do(rendered_cases: dict[str, Rendered],
                                                           plain: Rendered) -> None:
    rendered = rendered_cases["pooler"]
    deployment, member = _deployment(rendered), rendered.statefulsets[0]
    assert volume_named(deployment, "ssl-certs") == volume_named(member, "ssl-certs")
    mounts = {m["mountPath"]: m for m in container(deployment)["volumeMounts"]}
    assert mounts[CERT_DIR] == {"name": "ssl-certs", "mountPath": CERT_DIR, "readOnly": True}
    tls = ("PGSSLMODE", "PGSSLROOTCERT", "PGSSLCERT", "PGSSLKEY", "PCK_CLIENT_CERT_AUTH", "PCK_TLS_MIN_VERSION")
    pooler_env, member_env = env_of(deployment), env_of(member)
    assert {k: pooler_env[k] for k in tls} == {k: member_env[k] for k in tls}
    assert not [m for m in container(_deployment(plain))["volumeMounts"]
                if m["mountPath"].startswith("/etc/ssl")]


def test_setup_job_is_a_bounded_retrying_hook_with_the_superusers_credentials(
        rendered_cases: dict[str, Rendered]) -> None:
    for rendered in _pooler_cases(rendered_cases):
        r, ns = rendered.case.release, rendered.case.namespace
        values = rendered.case.user_values()
        job = _job(rendered)
        annotations = job["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "post-install,post-upgrade"
        assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
        spec = job["spec"]
        pod = spec["template"]["spec"]
        assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
        c = container(job)
        timeout = int(c["command"][-1])
        assert timeout == 600 and spec["activeDeadlineSeconds"] > timeout  # bounded, with room to exit itself
        assert c["securityContext"] == rendered.statefulsets[0]["spec"]["template"]["spec"]["containers"][0][
            "securityContext"]
        env = env_of(job)
        assert env["PGHOST"]["value"] == f"{r}-0.{ns}.svc.cluster.local"  # the coordinator group's Service
        assert env["PGUSER"]["value"] == "postgres"
        assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": f"{r}-credentials",
                                                                  "key": "superuser-password"}
        assert env["PCK_POOLER_AUTH_PASSWORD"] == env_of(_deployment(rendered))["PCK_POOLER_AUTH_PASSWORD"]
        assert env["PCK_POOLER_AUTH_USER"]["value"] == values["pooler"].get("authUser", "pgbouncer")
        assert env["PGSSLMODE"]["value"] == "verify-full"
        sans = server_names(ClusterNames(cluster=r, namespace=ns, groups=len(rendered.statefulsets)))
        assert covered(env["PGHOST"]["value"], sans)
        # Mutual TLS (both cases): the members ask for a client certificate.
        assert {"PGSSLCERT", "PGSSLKEY"} <= set(env)


def _run_setup_script(script: str, timeout: str, stub: str, tmp_path: Any) -> subprocess.CompletedProcess:
    """Run the Job's shell loop with a stand-in `patroni-citus-k8s` on PATH."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    tool = bindir / "patroni-citus-k8s"
    tool.write_text("#!/bin/sh\n" + stub)
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    return subprocess.run(["sh", "-c", script, "pooler-setup", timeout], capture_output=True, text=True, timeout=60,
                          env={"PATH": f"{bindir}:{os.environ['PATH']}", "COUNT": str(tmp_path / "count")})


def test_setup_script_retries_until_setup_succeeds_and_gives_up_after_its_budget(
        rendered_cases: dict[str, Rendered], tmp_path: Any) -> None:
    script = container(_job(rendered_cases["pooler"]))["command"][2]
    subprocess.run(["sh", "-n", "-c", script], check=True)
    # Fails once (the coordinator is not up yet), then succeeds: exit 0 after one retry.
    once = ('[ "$1 $2" = "pooler setup" ] || exit 9\n'
            'if [ -e "$COUNT" ]; then exit 0; fi; touch "$COUNT"; exit 1\n')
    proc = _run_setup_script(script, "60", once, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "retrying in 5 s" in proc.stderr
    # Always failing, with no budget left: gives up at once with the command's status.
    proc = _run_setup_script(script, "0", "exit 3\n", tmp_path)
    assert proc.returncode == 3 and "giving up" in proc.stderr, proc


def test_auth_secret_is_generated_or_taken_from_existing_secret(rendered_cases: dict[str, Rendered]) -> None:
    rendered = rendered_cases["pooler"]
    secret = rendered.get("Secret", "citusdemo-pooler-auth")
    assert len(base64.b64decode(secret["data"]["auth-password"])) == 32
    # Not kept on uninstall: the setup Job sets the role's password after every install and upgrade.
    assert "helm.sh/resource-policy" not in secret["metadata"].get("annotations", {})
    own = render(Case("own", "citusdemo", "default", sets="pooler.enabled=true,pooler.existingSecret=pgb-auth"))
    assert "citusdemo-pooler-auth" not in own.names("Secret")
    for obj in (_deployment(own), _job(own)):
        assert env_of(obj)["PCK_POOLER_AUTH_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": "pgb-auth", "key": "auth-password"}


def _render_error(sets: str) -> str:
    with pytest.raises(helm.HelmError) as caught:
        render(Case("bad", "citusdemo", "default", sets=sets))
    return str(caught.value)


@pytest.mark.parametrize("user", ["postgres", "replicator"])
def test_the_auth_user_may_not_be_a_members_role(user: str) -> None:
    """The setup makes the auth role a plain login role: on the superuser that would take its rights away."""
    message = _render_error(f"pooler.enabled=true,pooler.authUser={user}")
    assert f"pooler.authUser={user} is a role the members use" in message


@pytest.mark.parametrize("sets, where", [
    ("pooler.poolMode=batch", "/pooler/poolMode"),
    ("pooler.maxClientConn=0", "/pooler/maxClientConn"),
    ("pooler.replicas=0", "/pooler/replicas"),
    ("pooler.authUser=bad name", "/pooler/authUser"),
    ("pooler.setup.timeoutSeconds=5", "/pooler/setup/timeoutSeconds"),
    ("pooler.shutdown.drainSeconds=0", "/pooler/shutdown/drainSeconds"),
    ("pooler.shutdown.delaySeconds=-1", "/pooler/shutdown/delaySeconds"),
    ("pooler.enable=true", "enable"),
])
def test_schema_rejects_bad_pooler_values(sets: str, where: str) -> None:
    assert where in _render_error(sets)


def test_network_policies_let_clients_reach_the_pooler_and_the_pooler_the_members(
        rendered_cases: dict[str, Rendered]) -> None:
    rendered = rendered_cases["pooler"]
    r = rendered.case.release
    clients = rendered.case.user_values()["networkPolicy"]["clients"]
    pooler_pod = _deployment(rendered)["spec"]["template"]["metadata"]["labels"]
    job_pod = _job(rendered)["spec"]["template"]["metadata"]["labels"]
    policy = rendered.get("NetworkPolicy", f"{r}-pooler")["spec"]
    assert selects(policy["podSelector"]["matchLabels"], pooler_pod)
    member_pod = rendered.statefulsets[0]["spec"]["template"]["metadata"]["labels"]
    assert not selects(policy["podSelector"]["matchLabels"], member_pod)
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["ingress"] == [{"ports": [{"port": DEFAULT_PORT, "protocol": "TCP"}], "from": clients}]
    to_members, dns = policy["egress"]
    assert to_members["ports"] == [{"port": 5432, "protocol": "TCP"}]
    assert to_members["to"] == [{"podSelector": {"matchLabels": {"application": "patroni", "cluster-name": r}}}]
    assert dns["ports"] == [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]
    # The members' policy admits the pooler and the setup Job on 5432, whatever `clients` says.
    members = rendered.get("NetworkPolicy", r)["spec"]
    (rule,) = [i for i in members["ingress"]
               if "matchExpressions" in (i.get("from") or [{}])[0].get("podSelector", {})]
    selector = rule["from"][0]["podSelector"]
    for labels in (pooler_pod, job_pod):
        assert selects(selector["matchLabels"], labels)
        (expr,) = selector["matchExpressions"]
        assert labels[expr["key"]] in expr["values"]
    assert rule["ports"] == [{"port": 5432, "protocol": "TCP"}]
