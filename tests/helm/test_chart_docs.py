"""The chart's README documents every value and values.yaml comments every key."""

from __future__ import annotations

import json
import re
from typing import Any, Iterator

import yaml

from tests.helm.support import CHART_DIR

NEEDS_HELM = False  # reads files only; runs even where helm-python-sdk is missing

ROW = re.compile(r"^\| `([^`]+)` \| (.*?) \| (.+) \|$")


def _values() -> dict[str, Any]:
    return yaml.safe_load((CHART_DIR / "values.yaml").read_text())


def _schema() -> dict[str, Any]:
    return json.loads((CHART_DIR / "values.schema.json").read_text())


def documented_paths(values: dict[str, Any], schema: dict[str, Any], prefix: str = "") -> Iterator[str]:
    """Every key path a user sets, at the depth the schema types it.

    The walk goes into an object the schema closes (`additionalProperties: false`), the
    chart's own structure; an open object or a shared definition (`$ref`, e.g. resources)
    is a Kubernetes object passed through whole, documented as one row.
    """
    for key, value in values.items():
        path = f"{prefix}{key}"
        node = schema.get("properties", {}).get(key)
        assert node is not None, f"{path} is in values.yaml but not in values.schema.json"
        if isinstance(value, dict) and node.get("additionalProperties") is False and "$ref" not in node:
            yield from documented_paths(value, node, path + ".")
        else:
            yield path


def readme_rows() -> dict[str, tuple[str, str]]:
    rows: dict[str, tuple[str, str]] = {}
    in_values = False
    for line in (CHART_DIR / "README.md").read_text().splitlines():
        if line.startswith("## "):
            in_values = line.strip() == "## Values"
        match = ROW.match(line) if in_values else None
        if match:
            assert match.group(1) not in rows, f"{match.group(1)} documented twice"
            rows[match.group(1)] = (match.group(2), match.group(3))
    return rows


def _lookup(values: dict[str, Any], path: str) -> Any:
    for part in path.split("."):
        values = values[part]
    return values


def test_readme_documents_every_value_and_nothing_else() -> None:
    expected = list(documented_paths(_values(), _schema()))
    rows = readme_rows()
    assert sorted(set(expected) - set(rows)) == [], "values missing from README.md"
    assert sorted(set(rows) - set(expected)) == [], "README.md documents values that do not exist"


def test_readme_defaults_match_values_yaml() -> None:
    values = _values()
    for path, (default, meaning) in readme_rows().items():
        actual = _lookup(values, path)
        assert meaning.strip(), f"{path} has no meaning"
        literal = re.fullmatch(r"`(.*)`", default.strip())
        if literal:
            assert yaml.safe_load(literal.group(1)) == actual, f"{path}: README says {default}, values.yaml {actual!r}"
        else:  # a summary of an object passed through to Kubernetes
            assert isinstance(actual, dict) and actual, f"{path}: give the default as `literal`"


def test_values_yaml_comments_every_documented_key() -> None:
    """Walks values.yaml's lines, tracking each key's path by indentation."""
    documented = set(documented_paths(_values(), _schema()))
    stack: list[tuple[int, str]] = []
    previous = ""
    missing = []
    for line in (CHART_DIR / "values.yaml").read_text().splitlines():
        match = re.match(r"^( *)([A-Za-z][A-Za-z0-9_]*):", line)
        if match:
            indent = len(match.group(1))
            while stack and stack[-1][0] >= indent:
                stack.pop()
            stack.append((indent, match.group(2)))
            path = ".".join(key for _, key in stack)
            commented = previous.lstrip().startswith("#") or " # " in line
            if path in documented and not commented:
                missing.append(path)
        if line.strip():
            previous = line
    assert missing == []
