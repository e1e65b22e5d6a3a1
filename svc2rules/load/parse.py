"""Parse manifest bytes (YAML or JSON) into raw Kubernetes objects.

Reads as Kubernetes does: YAML as sigs.k8s.io/yaml reads it (load.kube_yaml), and a key set twice
in one mapping or JSON object is an error naming the file, the object and the field, as the API
server's strict decoding refuses it.

Defends against hostile input before anything walks the data: binary garbage, YAML
alias bombs (aliases share nodes, so the parsed value is small but its expansion is
not), pathological nesting and integers too long to convert.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from svc2rules.errors import Diagnostic, quote_value

# Nesting depth is bounded by the parsers themselves (libyaml and json both stop near
# 1000 levels) and validation only descends into declared fields, so only alias
# expansion needs a limit of our own; real kubectl output is far below it.
MAX_EXPANDED_NODES = 5_000_000
DEFAULT_NAMESPACE = "default"


@dataclass(frozen=True, slots=True)
class RawObject:
    """One Kubernetes object as parsed, before validation."""

    source: str
    data: dict[str, Any]


class OversizedInt:
    """A JSON integer too long to convert (Python refuses past sys.get_int_max_str_digits()
    digits): kept as its length, so validation names its field instead of the run failing."""

    __slots__ = ("digits", "negative")

    def __init__(self, text: str) -> None:
        self.negative = text.startswith("-")
        self.digits = len(text) - self.negative

    def __repr__(self) -> str:
        return f"<{'a negative' if self.negative else 'an'} integer of {self.digits} digits>"


# (path inside the document, message) of a key set twice in one mapping
Duplicate = tuple[tuple[str | int, ...], str]


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
    for index, (doc, duplicates) in enumerate(documents):
        if doc is None:
            continue
        if may_alias:
            size = _expanded_size(doc)
            if size is None:
                problems.append(
                    Diagnostic(name, f"document {index + 1}: YAML aliases expand to too many nodes")
                )
                continue
        _flatten(name, index, doc, objects, problems, duplicates)
    return objects, problems


class _ParseFailure(Exception):
    pass


def text_has_aliases(text: str) -> bool:
    return "&" in text and "*" in text


def looks_like_json(name: str, text: str) -> bool:
    return name.lower().endswith(".json") or text.lstrip()[:1] in ("{", "[")


def _documents(name: str, text: str) -> Iterator[tuple[Any, list[Duplicate]]]:
    if looks_like_json(name, text):
        try:
            yield _json_document(text)
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
            yield from list(_yaml_documents(text))
            return
        except (yaml.YAMLError, RecursionError):
            raise _ParseFailure(
                f"invalid JSON at line {json_error.lineno} column {json_error.colno}: {json_error.msg}"
            ) from None
    import yaml

    try:
        yield from _yaml_documents(text)
    except RecursionError:
        raise _ParseFailure("invalid YAML: nesting too deep") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        raise _ParseFailure(f"invalid YAML{where}: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise _ParseFailure(f"invalid YAML: {exc}") from None


def _yaml_documents(text: str) -> Iterator[tuple[Any, list[Duplicate]]]:
    # Imported on first use: JSON input (kubectl -o json) never needs PyYAML.
    from svc2rules.load.kube_yaml import load_documents

    for doc, duplicates in load_documents(text):
        yield doc, [(path, f"{_DUPLICATE}: {quote_value(path[-1])}: {detail}") for path, detail in duplicates]


_DUPLICATE = "Duplicate value"


class DuplicateKeyError(ValueError):
    """A JSON object sets a key twice."""


def unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object (json's object_pairs_hook) that sets each key once."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise DuplicateKeyError("a key set twice")
    return obj


def _json_document(text: str) -> tuple[Any, list[Duplicate]]:
    """The JSON value, and where it sets a key twice. The common case costs one json.loads; a
    duplicate or an integer too long to convert (a ValueError of json's own) has it read again,
    recording duplicates and keeping long integers as OversizedInt."""
    try:
        return json.loads(text, object_pairs_hook=unique_object), []
    except json.JSONDecodeError:
        raise
    except ValueError:
        pass
    recorder = _JsonRecorder()
    doc = json.loads(text, object_pairs_hook=recorder.object, parse_int=recorder.integer)
    return doc, recorder.duplicates(doc)


class _JsonRecorder:
    def __init__(self) -> None:
        self.repeated: dict[int, list[str]] = {}  # id(object) -> its keys set twice
        self.limit = sys.get_int_max_str_digits() or sys.maxsize

    def object(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) != len(pairs):
            seen: set[str] = set()
            repeated = self.repeated[id(obj)] = []
            for key, _ in pairs:
                if key in seen:
                    repeated.append(key)
                seen.add(key)
        return obj

    def integer(self, text: str) -> int | OversizedInt:
        return OversizedInt(text) if len(text) - text.startswith("-") > self.limit else int(text)

    def duplicates(self, doc: Any) -> list[Duplicate]:
        found: list[Duplicate] = []
        if not self.repeated:
            return found
        stack: list[tuple[Any, tuple[str | int, ...]]] = [(doc, ())]
        while stack:
            node, path = stack.pop()
            if isinstance(node, dict):
                for key in dict.fromkeys(self.repeated.get(id(node), ())):
                    found.append(
                        (
                            (*path, key),
                            f"{_DUPLICATE}: {quote_value(key)}: a key may appear once in an object",
                        )
                    )
                stack.extend((v, (*path, k)) for k, v in reversed(node.items()))
            elif isinstance(node, list):
                stack.extend((v, (*path, i)) for i, v in reversed(list(enumerate(node))))
        return found


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


def _flatten(
    name: str,
    index: int,
    doc: Any,
    objects: list[RawObject],
    problems: list[Diagnostic],
    duplicates: list[Duplicate],
) -> None:
    if not isinstance(doc, dict):
        problems.append(
            Diagnostic(name, f"document {index + 1}: expected a Kubernetes object, got {quote_value(doc)}")
        )
        return
    kind = doc.get("kind")
    if isinstance(kind, str) and kind.endswith("List") and "items" in doc:
        items = doc.get("items")
        in_items: dict[int, list[Duplicate]] = {}
        for path, message in duplicates:
            if len(path) > 2 and path[0] == "items" and isinstance(path[1], int):
                in_items.setdefault(path[1], []).append((path[2:], message))
            else:
                problems.append(Diagnostic(name, message, kind, "<list>", format_path(path)))
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
            obj = list_item(item, kind, doc.get("apiVersion"))
            if i in in_items:
                problems.extend(_duplicate_problems(name, obj, in_items[i]))
                continue
            objects.append(RawObject(name, obj))
        return
    if duplicates:
        problems.extend(_duplicate_problems(name, doc, duplicates))
        return
    objects.append(RawObject(name, doc))


def _duplicate_problems(name: str, obj: dict[str, Any], duplicates: list[Duplicate]) -> list[Diagnostic]:
    kind = obj.get("kind")
    kind = kind if isinstance(kind, str) and kind else "Object"
    return [
        Diagnostic(name, message, kind, object_ref(obj), format_path(path)) for path, message in duplicates
    ]


def object_ref(data: dict[str, Any]) -> str:
    """Best-effort `namespace/name` of a raw object, for diagnostics before validation."""
    meta = data.get("metadata")
    name = namespace = None
    if isinstance(meta, dict):
        name = meta.get("name")
        namespace = meta.get("namespace")
    ns = namespace if isinstance(namespace, str) and namespace else DEFAULT_NAMESPACE
    return f"{ns}/{name}" if isinstance(name, str) and name else f"{ns}/<no name>"


def format_path(loc: tuple[Any, ...]) -> str:
    """`spec.ports[0].port`: a field path as the API server writes it."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def list_item(item: dict[str, Any], kind: str, api_version: Any) -> dict[str, Any]:
    """An item of a `kind` list as an object: typed lists (ServiceList) may omit kind and
    apiVersion on items, as `kubectl -o json` does not, and lend them their own."""
    if "kind" not in item and kind != "List":
        return {**item, "kind": kind[: -len("List")], "apiVersion": api_version}
    return item
