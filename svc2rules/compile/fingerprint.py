"""Fingerprints of parsed objects and of the node config, and objects as a memo keeps them.

A fingerprint is a digest that is equal for equal data (types and key order included): an
object whose fingerprint a memo knows is the object the memo knows.
"""

from __future__ import annotations

import hashlib
import json
import marshal
from typing import Any

from svc2rules.config import ProxyConfig
from svc2rules.load.parse import list_item

Fingerprint = bytes
DIGEST_SIZE = 16
# marshal format 2 writes no back-references and no interning flags, so its bytes depend only
# on the data (types and dict order included), not on which equal strings are shared objects.
_MARSHAL_VERSION = 2
# What an encoded object starts with: marshalled data, or a JSON List item's own text (kept as
# it was read, after a line naming the list's kind and apiVersion).
MARSHALLED, JSON_ITEM = b"m", b"j"


def encode_object(data: Any) -> bytes:
    """Parsed data as bytes that are equal for equal data (types and key order included)."""
    try:
        return marshal.dumps(data, _MARSHAL_VERSION)
    except ValueError:
        # YAML can produce values marshal does not know (timestamps); they become tagged tuples,
        # which parsed manifests never contain otherwise.
        return marshal.dumps(_marshalable(data), _MARSHAL_VERSION)


def fingerprint_bytes(encoded: bytes) -> Fingerprint:
    return hashlib.blake2b(encoded, digest_size=DIGEST_SIZE).digest()


def fingerprint_object(data: Any) -> Fingerprint:
    """A digest of parsed data: equal for equal data (types and key order included)."""
    return fingerprint_bytes(encode_object(data))


def fingerprint_config(config: ProxyConfig) -> Fingerprint:
    return hashlib.blake2b(config.model_dump_json().encode(), digest_size=DIGEST_SIZE).digest()


def json_item_prefix(context: tuple[str, Any]) -> bytes:
    """What precedes the text of an item of a list of this kind and apiVersion, encoded."""
    return JSON_ITEM + json.dumps(list(context)).encode() + b"\n"


def decode_object(encoded: bytes) -> dict[str, Any] | None:
    """An object a memo kept (see InputObjects.encoded), or None if unreadable."""
    try:
        if encoded[:1] == MARSHALLED:
            data = marshal.loads(encoded[1:])
        elif encoded[:1] == JSON_ITEM:
            context, _, text = encoded[1:].partition(b"\n")
            kind, api_version = json.loads(context)
            data = json.loads(text)
            if isinstance(data, dict):
                data = list_item(data, kind, api_version)
        else:
            return None
    except (ValueError, EOFError, TypeError):
        return None
    return data if isinstance(data, dict) else None


def _marshalable(value: Any) -> Any:
    if isinstance(value, dict):
        return {_marshalable(k): _marshalable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_marshalable(v) for v in value]
    if isinstance(value, str | bytes | int | float | bool | type(None)):
        return value
    return ("\0", type(value).__module__, type(value).__qualname__, repr(value))
