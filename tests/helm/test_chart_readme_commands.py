"""Every `helm install` / `helm upgrade` command the chart's README shows renders, as typed, into valid Kubernetes."""

from __future__ import annotations

import re
import shlex

import pytest

from tests.helm.support import CHART_DIR, Case, render

kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate is not installed: pip install -r requirements-dev.txt")


def readme_helm_commands() -> list[list[str]]:
    """The helm commands in the README's bash blocks, continuation lines joined, comments dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", (CHART_DIR / "README.md").read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words[:2] in (["helm", "install"], ["helm", "upgrade"]):
                commands.append(words)
    return commands


def as_case(words: list[str]) -> Case:
    positional, sets, namespace, args = [], [], "default", iter(words[2:])
    for word in args:
        if word in ("-n", "--namespace"):
            namespace = next(args)
        elif word == "--set":
            sets.append(next(args))
        elif not word.startswith("-"):
            positional.append(word)
    release, chart = positional
    assert chart == "./helm/citus-cluster", words
    return Case("readme", release, namespace, sets=",".join(sets))


COMMANDS = readme_helm_commands()


def test_the_readme_shows_the_operations_commands() -> None:
    assert len(COMMANDS) >= 10


@pytest.mark.parametrize("words", COMMANDS, ids=[" ".join(w[2:])[:80] for w in COMMANDS])
def test_readme_command_renders_valid_objects(words: list[str]) -> None:
    rendered = render(as_case(words))
    assert rendered.statefulsets
    for obj in rendered.objects:
        if obj["kind"] != "Certificate":
            kubernetes_validate.validate(obj, "1.25.0", strict=True)
