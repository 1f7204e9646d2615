"""Fixtures: every install case rendered once per session with real Helm."""

from __future__ import annotations

import pytest

from tests.helm import support
from tests.helm.support import CASE_IDS, CASES, Rendered, render


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if support.helm is None:
        here = str(support.CHART_DIR.parents[1] / "tests" / "helm")
        for item in items:
            if str(item.path).startswith(here) and getattr(getattr(item, "module", None), "NEEDS_HELM", True):
                item.add_marker(pytest.mark.skip(reason=support.HELM_MISSING))


@pytest.fixture(scope="session")
def rendered_cases() -> dict[str, Rendered]:
    return {case.id: render(case) for case in CASES}


@pytest.fixture(params=CASES, ids=CASE_IDS)
def rendered(request: pytest.FixtureRequest, rendered_cases: dict[str, Rendered]) -> Rendered:
    return rendered_cases[request.param.id]
