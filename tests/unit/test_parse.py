"""Reading YAML/JSON manifests: documents, lists, and hostile input."""

from __future__ import annotations

import json

import pytest

from svc2rules.load import parse_source
from svc2rules.load.parse import OversizedInt


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


# -- YAML as Kubernetes reads it (sigs.k8s.io/yaml: go-yaml v2, then JSON) ------------------------


@pytest.mark.parametrize(
    ("scalar", "value"),
    [
        ("80", 80),
        ("0x50", 80),  # Go's ParseInt with base 0: kubectl and the API server read 80 too
        ("0o17", 15),
        ("017", 15),
        ("0b101", 5),
        ("1_000", 1000),
        ("-0x50", -80),
        ("1:20", "1:20"),  # YAML 1.1 base 60: not in go-yaml
        ("1:20.5", "1:20.5"),
        ("yes", True),
        ("On", True),
        ("y", True),  # go-yaml's booleans include y/Y/n/N
        ("N", False),
        ("off", False),
        ("~", None),
        ("2001-12-14", "2001-12-14"),  # a timestamp read into a generic value is its text
        ("80.0", 80),  # Go writes the float 80 as the JSON number 80
        ("80.5", 80.5),
        ("1e3", 1000),
        ("08", 8),  # not octal: a float
        ("1" * 5000, "1" * 5000),  # out of range even as a float: go-yaml keeps the text
        ("18446744073709551615", 18446744073709551615),
        ("10.0.0.1", "10.0.0.1"),
        ("fe80::1", "fe80::1"),
        ("'0x50'", "0x50"),
        ('"yes"', "yes"),
        ("!!str 80", "80"),
        ("!!float 80", 80),
        ("!!int 0x50", 80),
        ("!!binary aGk=", "hi"),
        ("!custom 80", "80"),
    ],
)
def test_yaml_scalars_read_as_kubernetes_reads_them(scalar: str, value: object) -> None:
    objects, problems = parse_source("v.yaml", f"kind: Service\nv: {scalar}\n".encode())
    assert problems == []
    assert objects[0].data["v"] == value and type(objects[0].data["v"]) is type(value)


def test_yaml_mapping_keys_become_json_keys() -> None:
    objects, problems = parse_source(
        "k.yaml", b"kind: Service\nmetadata:\n  labels: {80: a, yes: b, 0x10: c}\n"
    )
    assert problems == []
    assert objects[0].data["metadata"]["labels"] == {"80": "a", "true": "b", "16": "c"}


@pytest.mark.parametrize(
    ("scalar", "what"), [(".inf", ".inf has no JSON form"), ("-.Inf", "-.Inf has no JSON form")]
)
def test_a_yaml_value_json_cannot_carry_is_an_error_with_its_place(scalar: str, what: str) -> None:
    objects, problems = parse_source("f.yaml", f"kind: Service\nspec:\n  v: {scalar}\n".encode())
    assert objects == []
    assert [str(p) for p in problems] == [
        f"f.yaml: invalid YAML at line 3 column 6: {what}, so Kubernetes cannot read it"
    ]


def test_an_explicit_tag_the_text_does_not_resolve_to_is_an_error() -> None:
    _, problems = parse_source("t.yaml", b"kind: Service\nv: !!int 1:20\n")
    assert [str(p) for p in problems] == [
        "t.yaml: invalid YAML at line 2 column 4: cannot decode '1:20' as a !!int"
    ]


# -- a key set twice ------------------------------------------------------------------------------

SERVICE_YAML = """\
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: ns1}}
spec:
  clusterIP: 172.30.0.10
  ports:
  - port: 80
{extra}"""


def test_a_yaml_key_set_twice_is_an_error_naming_file_object_and_field() -> None:
    text = (
        SERVICE_YAML.format(extra="    port: 81\n")
        + "---\n"
        + SERVICE_YAML.replace("web", "ok").format(extra="")
    )
    objects, problems = parse_source("dup.yaml", text.encode())
    assert [str(p) for p in problems] == [
        'dup.yaml: Service ns1/web: spec.ports[0].port: Duplicate value: "port": '
        "set twice (lines 7 and 8); a key may appear once in a mapping"
    ]
    assert [o.data["metadata"]["name"] for o in objects] == ["ok"]  # the other object is still read


def test_a_merged_key_set_again_is_a_duplicate_as_strict_decoding_says() -> None:
    text = b"kind: Service\nbase: &b {port: 80}\nspec:\n  <<: *b\n  port: 81\n"
    objects, problems = parse_source("m.yaml", text)
    assert objects == []
    assert [str(p) for p in problems] == [
        'm.yaml: Service default/<no name>: spec.port: Duplicate value: "port": '
        "set twice (lines 2 and 5); a key may appear once in a mapping"
    ]


def test_merges_without_a_repeated_key_are_read() -> None:
    objects, problems = parse_source(
        "m.yaml", b"kind: Service\nbase: &b {port: 80}\nspec:\n  <<: *b\n  name: a\n"
    )
    assert problems == [] and objects[0].data["spec"] == {"port": 80, "name": "a"}


def test_a_key_set_twice_in_a_list_item_names_that_item() -> None:
    data = (
        b'{"apiVersion": "v1", "kind": "ServiceList", "items": ['
        b'{"metadata": {"name": "a"}}, {"metadata": {"name": "b", "name": "c"}}]}'
    )
    objects, problems = parse_source("l.json", data)
    assert [str(p) for p in problems] == [
        'l.json: Service default/c: metadata.name: Duplicate value: "name": a key may appear once in an object'
    ]
    assert [o.data["metadata"]["name"] for o in objects] == ["a"]


def test_a_json_key_set_twice_is_an_error() -> None:
    _, problems = parse_source(
        "d.json", b'{"kind": "Service", "spec": {"type": "NodePort", "type": "ClusterIP"}}'
    )
    assert [str(p) for p in problems] == [
        'd.json: Service default/<no name>: spec.type: Duplicate value: "type": a key may appear once in an object'
    ]


# -- integers too long to convert ------------------------------------------------------------------


def test_a_json_integer_too_long_to_convert_is_kept_for_validation_to_name() -> None:
    objects, problems = parse_source("i.json", b'{"kind": "Service", "spec": {"port": ' + b"1" * 5000 + b"}}")
    assert problems == []
    port = objects[0].data["spec"]["port"]
    assert isinstance(port, OversizedInt) and repr(port) == "<an integer of 5000 digits>"


@pytest.mark.parametrize("text", [b"kind: Service\na: &x [*x]\n", b"kind: Service\nb: &y {k: {j: *y}}\n"])
def test_a_recursive_anchor_is_refused_not_followed_forever(text: bytes) -> None:
    objects, problems = parse_source("r.yaml", text)
    assert objects == []
    assert [str(p) for p in problems] == [
        "r.yaml: invalid YAML at line 2 column 4: an alias inside the node it names (a recursive anchor)"
    ]
