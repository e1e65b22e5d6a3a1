"""The package's shape, as CONTRIBUTING.md states it: small modules, folders that import only
downwards, target syntax spelled only in the syntax layer and templates, no family literals."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "svc2rules"
MAX_LINES = 600
SYNTAX = PACKAGE / "syntax"
# Spellings that belong to a target's writer: iptables-restore, nft and ipvsadm syntax.
TARGET_SYNTAX = re.compile(
    r"(^|\s)COMMIT(\s|$)|^-[ADIRXFN] \S|^\*(nat|filter|mangle|raw)\b| - \[0:0\]"
    r"|\b(add|delete|flush) (element|set|map|chain|table|rule)\b|^table (ip|ip6|inet) |\btable (ip|ip6|inet) \{"
)
# IPv4 facts spelled as literals instead of asked of IPFamily or a target's spelling table
# (a bare "iptables" is also a backend's name, and "ip" a JSON key: their spellings in a target
# are caught by the target-syntax check).
FAMILY_LITERALS = re.compile(
    r"^(ipv4_addr|ip -4|-4|iptables-restore|iptables-save|ip6?tables-legacy)$|/32\b|net\.ipv4\.|\bipv4_addr\b"
    r"|\bip (saddr|daddr)\b|\bIPv4Address\b"
)
# Where a family's spelling is defined once.
FAMILY_TABLES = {PACKAGE / "family.py"}


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def folder_of(module: str) -> str:
    """`svc2rules.backends.nftables.apply` -> `backends`; a top-level module is its own folder."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imports(path: Path) -> Iterator[str]:
    """Modules of svc2rules this file imports (type-checking-only imports aside)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for child in ast.walk(node))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name.startswith("svc2rules"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                yield ".".join([*base, node.module] if node.module else base)
            elif node.module and node.module.startswith("svc2rules"):
                yield node.module


def string_literals(path: Path) -> Iterator[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node.lineno, node.value
        elif isinstance(node, ast.JoinedStr):
            text = "".join(str(v.value) if isinstance(v, ast.Constant) else "{}" for v in node.values)
            yield node.lineno, text


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_is_over_600_lines(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(PACKAGE)}: {lines} lines"


def test_folders_import_each_other_in_one_direction_only() -> None:
    edges: dict[str, set[str]] = defaultdict(set)
    for path in modules():
        here = folder_of(module_name(path))
        for target in imports(path):
            there = folder_of(target)
            if there != here and target != "svc2rules":
                edges[here].add(there)
    cycles = sorted(f"{a} <-> {b}" for a in edges for b in edges[a] if a < b and a in edges.get(b, ()))
    assert not cycles, f"folders importing each other: {cycles}"


def test_target_syntax_is_spelled_only_in_the_syntax_layer() -> None:
    found = [
        f"{path.relative_to(PACKAGE)}:{line}: {text!r}"
        for path in modules()
        if SYNTAX not in path.parents
        for line, text in string_literals(path)
        if any(TARGET_SYNTAX.search(part) for part in text.splitlines())
    ]
    assert not found, "\n".join(found)


def test_no_ipv4_fact_is_spelled_outside_the_family_tables() -> None:
    found = [
        f"{path.relative_to(PACKAGE)}:{line}: {text!r}"
        for path in modules()
        if SYNTAX not in path.parents and path not in FAMILY_TABLES
        for line, text in string_literals(path)
        if FAMILY_LITERALS.search(text)
    ]
    assert not found, "\n".join(found)
