"""Fingerprints are equal exactly for equal data, and a memo reads back what it kept."""

from __future__ import annotations

import datetime
import json

import yaml

from svc2rules.compile.fingerprint import (
    MARSHALLED,
    decode_object,
    encode_object,
    fingerprint_object,
    json_item_prefix,
)


def test_equal_data_has_equal_fingerprints_and_any_difference_shows() -> None:
    data = {"kind": "Service", "spec": {"port": 80, "names": ["a", "b"]}}
    assert fingerprint_object(data) == fingerprint_object(json.loads(json.dumps(data)))
    variants = [
        {"spec": {"port": 80, "names": ["a", "b"]}, "kind": "Service"},  # key order
        {"kind": "Service", "spec": {"port": 80.0, "names": ["a", "b"]}},  # type
        {"kind": "Service", "spec": {"port": "80", "names": ["a", "b"]}},
        {"kind": "Service", "spec": {"port": 80, "names": ["b", "a"]}},
    ]
    assert len({fingerprint_object(v) for v in [data, *variants]}) == 1 + len(variants)


def test_yaml_values_marshal_does_not_know_are_fingerprinted_apart_from_strings() -> None:
    stamped = yaml.safe_load("when: 2024-01-02T03:04:05Z")
    assert isinstance(stamped["when"], datetime.datetime)
    assert fingerprint_object(stamped) != fingerprint_object({"when": "2024-01-02T03:04:05Z"})
    assert fingerprint_object(stamped) == fingerprint_object(yaml.safe_load("when: 2024-01-02T03:04:05Z"))


def test_a_kept_object_reads_back() -> None:
    data = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}}
    assert decode_object(MARSHALLED + encode_object(data)) == data
    # A typed list's item, kept as its own text, gets the list's kind back.
    item = b'{"metadata": {"name": "a"}}'
    assert decode_object(json_item_prefix(("ServiceList", "v1")) + item) == {
        "metadata": {"name": "a"},
        "kind": "Service",
        "apiVersion": "v1",
    }


def test_what_is_not_a_kept_object_reads_as_unknown() -> None:
    for damaged in (b"", b"x", MARSHALLED + b"\xff\x00", json_item_prefix(("List", "v1")) + b"{", MARSHALLED):
        assert decode_object(damaged) is None
    assert decode_object(MARSHALLED + encode_object(["not", "an", "object"])) is None
