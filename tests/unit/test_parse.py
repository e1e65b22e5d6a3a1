"""Reading YAML/JSON manifests: documents, lists, and hostile input."""

from __future__ import annotations

import json

from svc2rules.load import parse_source


def test_multi_document_yaml_yields_every_object_and_skips_empty_documents() -> None:
    objects, problems = parse_source("a.yaml", b"---\nkind: Service\n---\n---\nkind: EndpointSlice\n")
    assert problems == []
    assert [o.data["kind"] for o in objects] == ["Service", "EndpointSlice"]


def test_kind_list_is_flattened_in_order() -> None:
    data = {"apiVersion": "v1", "kind": "List", "items": [{"kind": "Service"}, {"kind": "Endpoints"}]}
    objects, _ = parse_source("l.json", json.dumps(data).encode())
    assert [o.data["kind"] for o in objects] == ["Service", "Endpoints"]


def test_typed_list_items_inherit_kind_and_api_version() -> None:
    data = b"apiVersion: discovery.k8s.io/v1\nkind: EndpointSliceList\nitems:\n- metadata: {name: a}\n"
    objects, _ = parse_source("l.yaml", data)
    assert objects[0].data["kind"] == "EndpointSlice"
    assert objects[0].data["apiVersion"] == "discovery.k8s.io/v1"


def test_truncated_json_is_a_clear_error() -> None:
    objects, problems = parse_source("t.json", b'{"kind": "Service", "spec": {"ports": [')
    assert objects == []
    assert len(problems) == 1
    assert str(problems[0]).startswith("t.json: invalid JSON at line 1")


def test_binary_garbage_is_rejected_before_parsing() -> None:
    _, problems = parse_source("g.bin", bytes(range(256)))
    assert "not a text file" in str(problems[0])


def test_invalid_utf8_is_rejected() -> None:
    _, problems = parse_source("g.yaml", b"kind: \xff\xfe Service\n")
    assert "not UTF-8" in str(problems[0])


def test_deep_nesting_fails_fast() -> None:
    depth = 20000
    _, problems = parse_source("deep.yaml", b"a: " + b"[" * depth + b"]" * depth)
    assert problems and "nesting" in str(problems[0])
    _, problems = parse_source("deep.json", b"[" * depth + b"]" * depth)
    assert problems and "nesting too deep" in str(problems[0])


def test_yaml_alias_bomb_is_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 12):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        lines.append(f"a{i}: &a{i} [{refs}]")
    _, problems = parse_source("bomb.yaml", ("\n".join(lines) + "\n").encode())
    assert problems and "aliases expand to too many nodes" in str(problems[0])


def test_harmless_aliases_are_allowed() -> None:
    objects, problems = parse_source("ok.yaml", b"kind: Service\nmetadata: &m {name: a}\nextra: *m\n")
    assert problems == [] and objects[0].data["extra"] == {"name": "a"}


def test_a_scalar_document_is_not_an_object() -> None:
    _, problems = parse_source("s.yaml", b"just text\n")
    assert "expected a Kubernetes object" in str(problems[0])


def test_syntax_error_names_line_and_column() -> None:
    _, problems = parse_source("bad.yaml", b"kind: Service\nmetadata: {name: [\n")
    assert str(problems[0]).startswith("bad.yaml: invalid YAML at line")
