"""The full rendered YAML for every golden case, compared byte for byte with tests/golden/expected/."""

from __future__ import annotations

import difflib
import os

import pytest

from tests.golden.cases import EXPECTED_DIR, all_cases, render_case, secret_files

CASES = all_cases()


@pytest.fixture(scope="module")
def files() -> dict:
    return secret_files()


@pytest.mark.parametrize("case", CASES, ids=[c.file_name for c in CASES])
def test_rendered_yaml_matches_golden_file(case, files):
    with open(os.path.join(EXPECTED_DIR, case.file_name), encoding="utf-8", newline="") as handle:
        expected = handle.read()
    actual = render_case(case, files)
    if actual != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(True), actual.splitlines(True),
                                            f"expected/{case.file_name}", "rendered"))
        pytest.fail(f"rendered YAML differs from the golden file; if the change is intended run "
                    f"scripts/regen-golden and commit the result\n{diff}")


def test_every_golden_file_has_a_case():
    assert sorted(os.listdir(EXPECTED_DIR)) == sorted(c.file_name for c in CASES)


def test_golden_output_does_not_depend_on_the_certificates():
    """Two different CAs give the same text: the files hold paths, never certificate bytes."""
    first, second = secret_files(), secret_files()
    assert first != second
    assert all(render_case(case, first) == render_case(case, second) for case in CASES)
