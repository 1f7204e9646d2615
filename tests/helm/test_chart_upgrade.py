"""ssl.upgrade: the chart gives members PCK_TLS_UPGRADE when a helm upgrade turns TLS on for a running cluster.

`auto` decides from the release's live StatefulSets (lookup). Offline rendering sees none,
so the decision itself (citus-cluster.liveServesTLS) is rendered by real Helm from a small
parent chart that includes this chart and hands the helper StatefulSets this chart renders
for the old release: the objects a running cluster really has.
"""

from __future__ import annotations

import shutil

import pytest
import yaml

from tests.helm.support import CHART_DIR, Case, env_of, helm, render

SEED_UPGRADE = "ssl.enabled=true,ssl.mode=verify-ca,image.tag=latest"  # the seed's helm upgrade


def upgrade_values(rendered) -> set:
    return {env_of(sts).get("PCK_TLS_UPGRADE", {}).get("value") for sts in rendered.statefulsets}


@pytest.mark.parametrize("upgrade, expected", [("auto", {None}), ("true", {"true"}), ("false", {None})])
def test_forced_or_offline(upgrade: str, expected: set) -> None:
    """helm template sees no live objects: auto gives nothing, true forces it (GitOps renders offline)."""
    rendered = render(Case("upgrade", "citusdemo", "default", sets=f"{SEED_UPGRADE},ssl.upgrade={upgrade}"))
    assert upgrade_values(rendered) == expected


def test_no_variable_for_a_mode_that_allows_plaintext() -> None:
    rendered = render(Case("prefer", "citusdemo", "default", sets="ssl.enabled=true,ssl.mode=prefer,ssl.upgrade=true"))
    assert upgrade_values(rendered) == {None}


def test_mutual_tls_in_the_same_upgrade_is_refused_with_the_two_step_fix() -> None:
    with pytest.raises(helm.HelmError) as caught:
        render(Case("mtls", "citusdemo", "default", sets=f"{SEED_UPGRADE},ssl.clientAuth=true,ssl.upgrade=true"))
    assert "ssl.clientAuth=true cannot be switched on in the same helm upgrade" in str(caught.value)
    assert "second helm upgrade" in str(caught.value)


def test_a_misspelled_value_fails() -> None:
    with pytest.raises(helm.HelmError) as caught:
        render(Case("typo", "citusdemo", "default", sets=f"{SEED_UPGRADE},ssl.upgrade=yes"))
    assert "/ssl/upgrade" in str(caught.value)


PROBE = """{{- range $name, $sts := .Values.live }}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ $name }}
data:
  servesTLS: {{ include "citus-cluster.liveServesTLS" (dict "sts" $sts) | quote }}
{{- end }}
"""


@pytest.fixture(scope="module")
def parent_chart(tmp_path_factory):
    root = tmp_path_factory.mktemp("parent")
    (root / "templates").mkdir()
    (root / "Chart.yaml").write_text("apiVersion: v2\nname: probe\nversion: 0.1.0\n")
    (root / "templates" / "probe.yaml").write_text(PROBE)
    shutil.copytree(CHART_DIR, root / "charts" / "citus-cluster")
    return root


def live_statefulset(sets: str) -> dict:
    return render(Case("live", "citusdemo", "default", sets=sets)).statefulsets[0]


@pytest.mark.parametrize("old_sets, serves_tls", [
    ("", False),  # the seed's first install: no certificates
    ("ssl.mode=disable", False),
    ("ssl.enabled=true,ssl.mode=prefer", True),
    ("ssl.enabled=true,ssl.mode=verify-ca", True),
    ("ssl.enabled=true,ssl.mode=verify-full,ssl.clientAuth=true", True),
])
def test_the_decision_on_statefulsets_this_chart_rendered(parent_chart, old_sets: str, serves_tls: bool) -> None:
    with helm.Chart.load(parent_chart) as chart:
        manifests = chart.render({"live": {"old": live_statefulset(old_sets)}}, name="probe", namespace="default",
                                 is_install=True)
    probes = [doc for path, text in manifests.items() if path.endswith("probe.yaml")
              for doc in yaml.safe_load_all(text) if doc]
    assert [p["data"]["servesTLS"] for p in probes] == ["true" if serves_tls else ""]
