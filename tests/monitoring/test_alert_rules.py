"""The alert rules, checked and unit-tested by Debian's promtool: the repo's file, the chart's PrometheusRule, and
pck-alerts.test.yml, in which every alert fires on series written there and stays quiet on others."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
RULES = REPO / "monitoring" / "pck-alerts.yml"
UNIT_TESTS = HERE / "pck-alerts.test.yml"


def promtool() -> str:
    found = shutil.which("promtool")
    if not found:
        if os.environ.get("CI"):
            pytest.fail("promtool is not installed in CI (scripts/setup installs Debian's prometheus)")
        pytest.skip("promtool is not installed: apt-get install prometheus (scripts/setup does)")
    return found


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=120)


def alerts() -> list:
    return [rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def test_promtool_checks_the_repos_rules_file():
    result = run("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout


def test_promtool_checks_the_rules_the_chart_renders(tmp_path):
    support = pytest.importorskip("tests.helm.support")
    if support.helm is None:
        pytest.skip(support.HELM_MISSING)
    rendered = support.render(support.Case("rules", "citusdemo", "default", sets="metrics.prometheusRule.enabled=true"))
    (rule,) = rendered.of_kind("PrometheusRule")
    path = tmp_path / "chart-rules.yml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    result = run("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout


def test_promtool_unit_tests_pass():
    result = run("test", "rules", str(UNIT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_tested_firing_and_quiet():
    """Each alert has a case where it fires (exp_alerts listed) and one where it does not (exp_alerts empty)."""
    fires, quiet = set(), set()
    for case in yaml.safe_load(UNIT_TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert sorted(set(alerts()) - fires) == [], "alerts never tested firing"
    assert sorted(set(alerts()) - quiet) == [], "alerts never tested staying quiet"
    assert (fires | quiet) <= set(alerts()), "tests name alerts the file does not have"


def test_a_broken_rule_would_fail_the_unit_tests(tmp_path):
    """The unit tests can fail: with the plaintext alert's condition inverted they do."""
    broken = RULES.read_text().replace("pck_tls_link_plaintext_allowed == 0", "pck_tls_link_plaintext_allowed == 1")
    assert broken != RULES.read_text()
    rules = tmp_path / "monitoring" / "pck-alerts.yml"
    rules.parent.mkdir()
    rules.write_text(broken)
    tests_dir = tmp_path / "tests" / "monitoring"
    tests_dir.mkdir(parents=True)
    (tests_dir / UNIT_TESTS.name).write_text(UNIT_TESTS.read_text())
    result = run("test", "rules", str(tests_dir / UNIT_TESTS.name))
    assert result.returncode != 0 and "PckTLSPlaintextSession" in result.stdout + result.stderr
