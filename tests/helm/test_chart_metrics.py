"""The TLS exporter the chart deploys (metrics.*): what it runs, what it mounts, who scrapes it, which alerts
it ships; and its contracts with verify's own flag parser, the certificate tool and the repo's rules file."""

from __future__ import annotations

import re

import pytest
import yaml

from entrypoint import cli, layout
from entrypoint.audit.commands import options_from
from entrypoint.certs.names import ClusterNames, server_names
from tests.helm.support import CHART_DIR, Case, Rendered, helm, render, selects, volume_named

REPO = CHART_DIR.parents[1]
RULES = REPO / "monitoring" / "pck-alerts.yml"
CHART_RULES = CHART_DIR / "files" / "pck-alerts.yml"
JOB_LABEL = "patroni-citus-k8s/metrics-job"


def _exporter(rendered: Rendered) -> dict:
    return rendered.get("Deployment", f"{rendered.case.release}-tls-metrics")


def _container(deployment: dict) -> dict:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def _env(container: dict) -> dict:
    return {e["name"]: e for e in container["env"]}


@pytest.fixture(scope="module")
def metrics(rendered_cases) -> Rendered:
    return rendered_cases["metrics"]


def test_nothing_of_the_exporter_is_rendered_unless_enabled(rendered: Rendered) -> None:
    if rendered.case.user_values().get("metrics", {}).get("enabled"):
        return
    assert not [n for n in rendered.names("Deployment") if n.endswith("-tls-metrics")]
    assert not rendered.of_kind("ServiceMonitor") and not rendered.of_kind("PrometheusRule")
    assert not [n for n in rendered.names("Service") if n.endswith("-tls-metrics")]


def test_the_exporter_runs_verify_serve_with_flags_verify_accepts(metrics: Rendered) -> None:
    container = _container(_exporter(metrics))
    assert "command" not in container  # the image's ENTRYPOINT, patroni-citus-k8s
    args = cli.build_parser().parse_args(container["args"])
    options = options_from(args)
    assert options.problems() == []
    assert options.output == "serve" and options.listen == ("0.0.0.0", 9810)
    assert options.every == 30 and options.mode == "verify-full" and options.expiry_days == 30
    assert options.secret_dir == layout.CERT_DIR
    assert options.api_host == "citusdemo.db.svc.cluster.local"  # the headless Service: any member
    assert [p["containerPort"] for p in container["ports"] if p["name"] == "metrics"] == [9810]


def test_the_exporter_connects_as_the_members_say_with_a_name_the_certificate_covers(metrics: Rendered) -> None:
    env = _env(_container(_exporter(metrics)))
    member_env = {e["name"]: e for e in metrics.statefulsets[0]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["PGPASSWORD"]["valueFrom"] == member_env["PATRONI_SUPERUSER_PASSWORD"]["valueFrom"]
    assert env["PGUSER"]["value"] == member_env["PATRONI_SUPERUSER_USERNAME"]["value"]
    assert env["PGSSLMODE"]["value"] == member_env["PGSSLMODE"]["value"] == "verify-full"
    assert env["PGSSLROOTCERT"]["value"] == member_env["PGSSLROOTCERT"]["value"]
    # Mutual TLS: the members demand a client certificate, so the exporter presents the Secret's.
    assert (env["PGSSLCERT"]["value"], env["PGSSLKEY"]["value"]) == (member_env["PGSSLCERT"]["value"],
                                                                     member_env["PGSSLKEY"]["value"])
    assert env["PGDATABASE"]["value"] == "citus"  # pg_dist_node, for every Citus group
    sans = server_names(ClusterNames(cluster="citusdemo", namespace="db", domain="cluster.local", groups=3))
    assert env["PGHOST"]["value"] in sans
    assert "PASSWORD" not in " ".join(_container(_exporter(metrics))["args"]).upper()


def test_the_exporter_mounts_the_members_secret_the_same_way(metrics: Rendered) -> None:
    deployment = _exporter(metrics)
    mine = volume_named(deployment, "ssl-certs")
    assert mine == volume_named(metrics.statefulsets[0], "ssl-certs")
    mounts = {m["mountPath"]: m for m in _container(deployment)["volumeMounts"]}
    assert mounts[layout.CERT_DIR]["readOnly"] is True and mounts[layout.CERT_DIR]["name"] == "ssl-certs"
    assert "/tmp" in mounts  # the fork server's socket


def test_the_exporter_runs_as_the_members_do_and_needs_no_kubernetes_api(metrics: Rendered) -> None:
    deployment = _exporter(metrics)
    pod = deployment["spec"]["template"]["spec"]
    member_pod = metrics.statefulsets[0]["spec"]["template"]["spec"]
    assert pod["securityContext"] == member_pod["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert _container(deployment)["securityContext"] == member_pod["containers"][0]["securityContext"]
    assert _container(deployment)["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert pod["automountServiceAccountToken"] is False and "serviceAccountName" not in pod
    assert deployment["spec"]["replicas"] == 1
    for probe in ("readinessProbe", "livenessProbe"):
        assert _container(deployment)[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}


def test_no_patroni_selector_picks_up_the_exporter(metrics: Rendered) -> None:
    labels = _exporter(metrics)["spec"]["template"]["metadata"]["labels"]
    for svc in metrics.of_kind("Service"):
        selector = svc["spec"].get("selector")
        if selector and not svc["metadata"]["name"].endswith("-tls-metrics"):
            assert not selects(selector, labels), svc["metadata"]["name"]
    for pdb in metrics.of_kind("PodDisruptionBudget"):
        assert not selects(pdb["spec"]["selector"]["matchLabels"], labels)
    for sts in metrics.statefulsets:
        assert not selects(sts["spec"]["selector"]["matchLabels"], labels)


def test_service_and_service_monitor_reach_the_exporter_under_the_rules_job(metrics: Rendered) -> None:
    deployment = _exporter(metrics)
    service = metrics.get("Service", "citusdemo-tls-metrics")
    assert selects(service["spec"]["selector"], deployment["spec"]["template"]["metadata"]["labels"])
    assert selects(deployment["spec"]["selector"]["matchLabels"], deployment["spec"]["template"]["metadata"]["labels"])
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == "metrics" and port["port"] == 9810
    (monitor,) = metrics.of_kind("ServiceMonitor")
    assert selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["db"]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == port["name"] and endpoint["path"] == "/metrics" and endpoint["scheme"] == "http"
    # The job the alert rules name comes from the Service's label through jobLabel.
    job = service["metadata"]["labels"][monitor["spec"]["jobLabel"]]
    assert monitor["spec"]["jobLabel"] == JOB_LABEL
    assert set(re.findall(r'job="([^"]+)"', RULES.read_text())) == {job}


def test_the_prometheus_rule_is_the_repos_rules_file(metrics: Rendered) -> None:
    assert CHART_RULES.read_bytes() == RULES.read_bytes(), \
        "helm/citus-cluster/files/pck-alerts.yml must be a copy: cp monitoring/pck-alerts.yml helm/citus-cluster/files/"
    (rule,) = metrics.of_kind("PrometheusRule")
    assert rule["metadata"]["name"] == "citusdemo-tls-alerts"
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]


def test_extra_labels_reach_the_monitoring_objects_for_prometheus_selectors() -> None:
    rendered = render(Case("labels", "citusdemo", "default", sets=(
        "metrics.enabled=true,metrics.serviceMonitor.enabled=true,metrics.serviceMonitor.labels.release=prom,"
        "metrics.prometheusRule.enabled=true,metrics.prometheusRule.labels.role=alert-rules,"
        "metrics.serviceMonitor.interval=1m,metrics.port=9900,metrics.interval=60,metrics.mode=require")))
    (monitor,) = rendered.of_kind("ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prom" and monitor["spec"]["endpoints"][0]["interval"] == "1m"
    assert rendered.of_kind("PrometheusRule")[0]["metadata"]["labels"]["role"] == "alert-rules"
    container = _container(_exporter(rendered))
    options = options_from(cli.build_parser().parse_args(container["args"]))
    assert options.problems() == [] and options.listen == ("0.0.0.0", 9900)
    assert (options.every, options.mode) == (60, "require")


def test_without_tls_the_exporter_mounts_nothing_and_judges_at_the_clusters_mode() -> None:
    rendered = render(Case("plain", "citusdemo", "default", sets="metrics.enabled=true"))
    container = _container(_exporter(rendered))
    options = options_from(cli.build_parser().parse_args(container["args"]))
    assert options.mode == "prefer" and options.secret_dir is None
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp"}
    assert not {"PGSSLROOTCERT", "PGSSLCERT", "PGSSLKEY"} & set(_env(container))


def test_a_prometheus_rule_alone_is_allowed_a_service_monitor_alone_is_not() -> None:
    rendered = render(Case("rules", "citusdemo", "default", sets="metrics.prometheusRule.enabled=true"))
    assert rendered.of_kind("PrometheusRule") and not rendered.of_kind("Deployment")
    with pytest.raises(helm.HelmError) as caught:
        render(Case("monitor", "citusdemo", "default", sets="metrics.serviceMonitor.enabled=true"))
    assert "metrics.serviceMonitor.enabled=true but metrics.enabled=false" in str(caught.value)


def test_with_a_network_policy_the_exporter_reaches_both_ports_of_every_member() -> None:
    rendered = render(Case("np-metrics", "citusdemo", "default",
                           sets="ssl.enabled=true,metrics.enabled=true,networkPolicy.enabled=true"))
    (policy,) = rendered.of_kind("NetworkPolicy")
    exporter = rendered.get("Deployment", "citusdemo-tls-metrics")["spec"]["template"]["metadata"]["labels"]
    admitted = [rule for rule in policy["spec"]["ingress"]
                if any(selects(peer.get("podSelector", {}).get("matchLabels", {}), exporter)
                       for peer in rule.get("from", []))]
    assert [rule["ports"] for rule in admitted] == [[{"port": 5432, "protocol": "TCP"},
                                                      {"port": 8008, "protocol": "TCP"}]]
