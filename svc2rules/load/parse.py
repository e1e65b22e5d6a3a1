"""Parse manifest bytes (YAML or JSON) into raw Kubernetes objects.

Defends against hostile input before anything walks the data: binary garbage, YAML
alias bombs (aliases share nodes, so the parsed value is small but its expansion is
not) and pathological nesting.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from svc2rules.errors import Diagnostic, quote_value

if TYPE_CHECKING:
    import yaml

# Nesting depth is bounded by the parsers themselves (libyaml and json both stop near
# 1000 levels) and validation only descends into declared fields, so only alias
# expansion needs a limit of our own; real kubectl output is far below it.
MAX_EXPANDED_NODES = 5_000_000


@dataclass(frozen=True, slots=True)
class RawObject:
    """One Kubernetes object as parsed, before validation."""

    source: str
    data: dict[str, Any]


def parse_source(name: str, data: bytes) -> tuple[list[RawObject], list[Diagnostic]]:
    """Parse one source into objects, flattening `kind: List` and typed lists."""
    problems: list[Diagnostic] = []
    if b"\x00" in data:
        return [], [Diagnostic(name, "not a text file (contains NUL bytes); expected YAML or JSON")]
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return [], [
            Diagnostic(name, f"not UTF-8 text (invalid byte at offset {exc.start}); expected YAML or JSON")
        ]

    try:
        documents = list(_documents(name, text))
    except _ParseFailure as exc:
        return [], [Diagnostic(name, str(exc))]

    objects: list[RawObject] = []
    may_alias = text_has_aliases(text)
    for index, doc in enumerate(documents):
        if doc is None:
            continue
        if may_alias:
            size = _expanded_size(doc)
            if size is None:
                problems.append(
                    Diagnostic(name, f"document {index + 1}: YAML aliases expand to too many nodes")
                )
                continue
        _flatten(name, index, doc, objects, problems)
    return objects, problems


class _ParseFailure(Exception):
    pass


def text_has_aliases(text: str) -> bool:
    return "&" in text and "*" in text


def looks_like_json(name: str, text: str) -> bool:
    return name.lower().endswith(".json") or text.lstrip()[:1] in ("{", "[")


def _yaml_loader() -> type[yaml.SafeLoader]:
    # Imported on first use: JSON input (kubectl -o json) never needs PyYAML.
    import yaml

    try:
        loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
    except AttributeError:  # pragma: no cover - PyYAML built without libyaml
        loader = yaml.SafeLoader
    return loader


def _documents(name: str, text: str) -> Iterator[Any]:
    if looks_like_json(name, text):
        try:
            yield json.loads(text)
            return
        except RecursionError:
            raise _ParseFailure("invalid JSON: nesting too deep") from None
        except json.JSONDecodeError as exc:
            if name.lower().endswith(".json"):
                raise _ParseFailure(
                    f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
                ) from None
            json_error = exc
        # Not valid JSON but not named .json either: it may still be YAML flow style.
        import yaml

        try:
            yield from yaml.load_all(text, Loader=_yaml_loader())
            return
        except (yaml.YAMLError, RecursionError):
            raise _ParseFailure(
                f"invalid JSON at line {json_error.lineno} column {json_error.colno}: {json_error.msg}"
            ) from None
    import yaml

    try:
        yield from yaml.load_all(text, Loader=_yaml_loader())
    except RecursionError:
        raise _ParseFailure("invalid YAML: nesting too deep") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        raise _ParseFailure(f"invalid YAML{where}: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise _ParseFailure(f"invalid YAML: {exc}") from None


def _expanded_size(doc: Any) -> int | None:
    """Size of the document with every alias expanded, or None when over the limit.

    Memoised by object identity, so the cost is linear in the number of distinct nodes
    even for a billion-laughs document.
    """
    memo: dict[int, int] = {}
    stack: list[tuple[Any, bool]] = [(doc, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in memo:
            continue
        children = list(node.values()) if isinstance(node, dict) else node if isinstance(node, list) else []
        if not children_done:
            stack.append((node, True))
            stack.extend((c, False) for c in children if isinstance(c, (dict, list)) and id(c) not in memo)
            continue
        total = 1
        for c in children:
            total += memo.get(id(c), 1)
        if total > MAX_EXPANDED_NODES:
            return None
        memo[key] = total
    return memo.get(id(doc), 1)


def _flatten(name: str, index: int, doc: Any, objects: list[RawObject], problems: list[Diagnostic]) -> None:
    if not isinstance(doc, dict):
        problems.append(
            Diagnostic(name, f"document {index + 1}: expected a Kubernetes object, got {quote_value(doc)}")
        )
        return
    kind = doc.get("kind")
    if isinstance(kind, str) and kind.endswith("List") and "items" in doc:
        items = doc.get("items")
        if items is None:
            return
        if not isinstance(items, list):
            problems.append(Diagnostic(name, f"document {index + 1}: {kind}.items: must be a list"))
            return
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                problems.append(
                    Diagnostic(name, f"document {index + 1}: items[{i}]: expected a Kubernetes object")
                )
                continue
            objects.append(RawObject(name, list_item(item, kind, doc.get("apiVersion"))))
        return
    objects.append(RawObject(name, doc))


def list_item(item: dict[str, Any], kind: str, api_version: Any) -> dict[str, Any]:
    """An item of a `kind` list as an object: typed lists (ServiceList) may omit kind and
    apiVersion on items, as `kubectl -o json` does not, and lend them their own."""
    if "kind" not in item and kind != "List":
        return {**item, "kind": kind[: -len("List")], "apiVersion": api_version}
    return item
