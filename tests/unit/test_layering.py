"""The tree's shape, read from the source with `ast`: which package may import which, and no overlong function.

Shared core (`errors`, `sslmode`, `layout`, `pki`, `pgwire`) imports no product; the products
(`boot`, `certs`, `audit`, `pooler`) import the core and never each other, with one
exception: `pooler` builds on `boot` (it must accept exactly what a member accepts, through
the same code); only `cli` knows them all, by name, through its command table.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "entrypoint"
CORE = {"entrypoint", "entrypoint.errors", "entrypoint.sslmode", "entrypoint.layout", "entrypoint.pki", "entrypoint.pgwire"}
PRODUCTS = ("entrypoint.boot", "entrypoint.certs", "entrypoint.audit", "entrypoint.pooler")
BUILDS_ON = {"entrypoint.pooler": "entrypoint.boot"}  # the only product-to-product edge
MAX_FUNCTION_LINES = 60


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def _imports(path: Path) -> list:
    """Every entrypoint module `path` imports, at any depth (function-level imports too), with its line."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            out += [(n, node.lineno) for n in names if n.split(".")[0] == "entrypoint"]
        elif isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == "entrypoint"]
    return out


def _owner(module: str) -> str:
    """The package a module belongs to for the rules: a product, a core part, or the module itself."""
    for product in PRODUCTS:
        if module == product or module.startswith(product + "."):
            return product
    if module.startswith("entrypoint.pki"):
        return "entrypoint.pki"
    return module


def _allowed(importer: str, imported: str) -> bool:
    mine, theirs = _owner(importer), _owner(imported)
    if mine == theirs or theirs in CORE or imported in ("entrypoint", "entrypoint.__version__"):
        return True
    if mine in CORE:
        return False  # the core never imports a product
    if mine in PRODUCTS:
        return BUILDS_ON.get(mine) == theirs  # a product never imports another product, but for BUILDS_ON
    return mine in ("entrypoint.cli", "entrypoint.__main__") and theirs == "entrypoint.cli"


def _module_of(name: str) -> str:
    """The module an imported name lives in: `entrypoint.errors.Problem` -> `entrypoint.errors`."""
    known = [m for m, _ in _modules() if name == m or name.startswith(m + ".")]
    return max(known, key=len) if known else name


def test_every_import_follows_the_layering():
    wrong = []
    for module, path in _modules():
        for imported, line in _imports(path):
            target = _module_of(imported)
            if not _allowed(module, target):
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {module} imports {target}")
    assert wrong == [], "\n".join(wrong)


def test_the_rules_would_catch_a_forbidden_import():
    """The checker itself: these imports are the ones the layout issue forbids."""
    assert not _allowed("entrypoint.boot.material", "entrypoint.certs.names")
    assert not _allowed("entrypoint.certs.inspect", "entrypoint.audit.probes")
    assert not _allowed("entrypoint.pki.names", "entrypoint.boot.settings")
    assert not _allowed("entrypoint.sslmode", "entrypoint.audit.findings")
    assert _allowed("entrypoint.audit.findings", "entrypoint.sslmode")
    assert _allowed("entrypoint.certs.inspect", "entrypoint.pki.chain")
    assert _allowed("entrypoint.pooler.render", "entrypoint.boot.settings")
    assert not _allowed("entrypoint.boot.render", "entrypoint.pooler.render")
    assert not _allowed("entrypoint.pooler.render", "entrypoint.audit.probes")


def test_cli_registers_every_product():
    from entrypoint import cli
    registered = {f"{p}.commands" for p in PRODUCTS if (PACKAGE / p.split(".")[1] / "commands.py").exists()}
    assert set(cli.COMMAND_MODULES) == registered


@pytest.mark.parametrize("module, path", list(_modules()), ids=[m for m, _ in _modules()])
def test_no_function_is_longer_than_the_limit(module, path):
    long = [f"{node.name} ({node.end_lineno - node.lineno + 1} lines, line {node.lineno})"
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert long == [], f"{os.path.relpath(path)}: split {', '.join(long)}"
