"""YAML read as Kubernetes reads it: sigs.k8s.io/yaml, i.e. go-yaml v2 then JSON.

kubectl and the API server turn YAML into JSON with go-yaml v2's rules, then decode the JSON
strictly. PyYAML's SafeLoader follows YAML 1.1 instead, and the two disagree on plain scalars:

  ===============  ===================================  ==============================
  plain scalar     PyYAML SafeLoader                    Kubernetes (go-yaml v2 + JSON)
  ===============  ===================================  ==============================
  ``1:20``         80 (base 60)                         the string "1:20"
  ``0o17``         the string "0o17"                    15
  ``0x50``         80                                   80
  ``y``, ``n``     strings                              true, false
  ``2001-12-14``   a date                               the string "2001-12-14"
  ``80.0``         a float                              80 (JSON writes it so)
  ``1e3``          the string "1e3"                     1000
  ``.inf``         a float                              an error (no JSON form)
  ===============  ===================================  ==============================

so this loader resolves every plain scalar the way go-yaml v2's `resolve` does (yes/no/on/off
and y/n are booleans, Go's strconv.ParseInt with base 0 after dropping `_`, ParseUint, then a
float when it matches go-yaml's float pattern, else a string), then gives each value the form its
JSON has (an integral float below 1e21 is an integer). Integers are bounded by their length before
any conversion. Mapping keys become JSON object keys (an integer key 80 is "80"); a key repeated in
one mapping, merged (`<<`) keys included, is recorded as a duplicate: the API server's strict
decoding (YAMLToJSONStrict) refuses it.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import sys
from collections.abc import Hashable, Iterator
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import BaseResolver

try:
    from yaml._yaml import CParser as _Parser
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml.composer import Composer
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Parser(Reader, Scanner, Parser, Composer):  # type: ignore[no-redef]
        def __init__(self, stream: str) -> None:
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)
            Composer.__init__(self)


PLAIN_TAG = "tag:svc2rules,2025:plain"  # a plain scalar: resolved by _resolve_plain
MERGE_TAG = "tag:yaml.org,2002:merge"
_STD = "tag:yaml.org,2002:"

_BOOLEANS = {
    **dict.fromkeys(("y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"), True),
    **dict.fromkeys(("n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"), False),
}
_NULLS = frozenset(("", "~", "null", "Null", "NULL"))
_SPECIAL_FLOATS = {
    **dict.fromkeys((".nan", ".NaN", ".NAN"), math.nan),
    **dict.fromkeys((".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"), math.inf),
    **dict.fromkeys(("-.inf", "-.Inf", "-.INF"), -math.inf),
}
# go-yaml's first-character hints: only these may resolve to anything but a string.
_MAP_HINTS = frozenset("yYnNtTfFoO~")
_NUMBER_HINTS = frozenset("+-0123456789")
_YAML_STYLE_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
# Go's ParseFloat on text starting with ".": digits, `_` only between digits.
_DOT_FLOAT = re.compile(r"\.[0-9](_?[0-9])*([eE][-+]?[0-9](_?[0-9])*)?")
_DIGITS = {
    2: re.compile("[01]*"),
    8: re.compile("[0-7]*"),
    10: re.compile("[0-9]*"),
    16: re.compile("[0-9a-fA-F]*"),
}
_PREFIXES = {"b": 2, "B": 2, "o": 8, "O": 8, "x": 16, "X": 16}
_UINT64_END = 1 << 64
_INT64_END = 1 << 63
# Go's JSON encoder writes a float64 below this without an exponent: as an integer if integral.
_JSON_INTEGRAL_LIMIT = 1e21
# Significant digits an unsigned 64-bit integer can have (in base 2): longer is out of range
# whatever it says, so it is never converted.
_MAX_SIGNIFICANT_DIGITS = 64


class UnrepresentableError(yaml.MarkedYAMLError):
    """A value JSON cannot carry (.inf, .nan, a null mapping key): sigs.k8s.io/yaml fails the
    conversion of the whole document."""


def go_parse_uint(text: str) -> int | None:
    """Go's strconv.ParseUint(text, 0, 64) (text without `_`), or None when it fails."""
    if not text:
        return None
    base = 10
    if text[0] == "0":
        if len(text) >= 3 and text[1] in _PREFIXES:
            base, text = _PREFIXES[text[1]], text[2:]
        else:
            base, text = 8, text[1:]
    if not _DIGITS[base].fullmatch(text):
        return None
    significant = text.lstrip("0")
    if len(significant) > _MAX_SIGNIFICANT_DIGITS:
        return None
    value = int(significant, base) if significant else 0
    return value if value < _UINT64_END else None


def go_parse_int(text: str) -> int | None:
    """Go's strconv.ParseInt(text, 0, 64) (text without `_`), or None when it fails."""
    negative = text[:1] == "-"
    magnitude = go_parse_uint(text[1:] if text[:1] in ("+", "-") else text)
    if magnitude is None:
        return None
    if negative:
        return -magnitude if magnitude <= _INT64_END else None
    return magnitude if magnitude < _INT64_END else None


def go_resolve(text: str) -> Any:
    """What go-yaml v2 makes of a plain (unquoted, untagged) scalar: None, a bool, an int, a
    float or the text itself."""
    hint = text[:1]
    if not hint:
        return None
    if hint in _MAP_HINTS:
        if text in _NULLS:
            return None
        return _BOOLEANS.get(text, text)
    if hint == ".":
        if text in _SPECIAL_FLOATS:
            return _SPECIAL_FLOATS[text]
        if _DOT_FLOAT.fullmatch(text):
            return _go_float(text.replace("_", ""), text)
        return text
    if hint in _NUMBER_HINTS:
        if text in _SPECIAL_FLOATS:
            return _SPECIAL_FLOATS[text]
        plain = text.replace("_", "")
        number = go_parse_int(plain)
        if number is None and plain[:1] not in ("+", "-"):
            number = go_parse_uint(plain)
        if number is not None:
            return number
        if _YAML_STYLE_FLOAT.fullmatch(plain):
            return _go_float(plain, text)
    return text


def _go_float(digits: str, text: str) -> float | str:
    """Go's ParseFloat of a decimal float; out of range, go-yaml keeps the text."""
    value = float(digits)
    return text if math.isinf(value) else value


def json_value(value: Any) -> Any:
    """A resolved value as the JSON Go writes for it reads back: an integral float below 1e21 is
    written without a fraction, so it is an integer; infinities and NaN have no JSON form."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("no JSON form")
        if value.is_integer() and abs(value) < _JSON_INTEGRAL_LIMIT:
            return int(value)
    return value


def resolve_plain(text: str) -> Any:
    """A plain scalar as Kubernetes reads it (go-yaml v2, then JSON)."""
    return json_value(go_resolve(text))


_TIMESTAMP = re.compile(
    r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}"
    r"([Tt][0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}(\.[0-9]+)?(Z|[-+][0-9]{2}:[0-9]{2})"
    r"| [0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}(\.[0-9]+)?)?"
)


class KubeResolver(BaseResolver):
    """Every plain scalar gets PLAIN_TAG (resolved when constructed), `<<` the merge tag."""

    def resolve(self, kind: type[Node], value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is ScalarNode:
            if implicit[0]:
                return MERGE_TAG if value == "<<" else PLAIN_TAG
            return str(self.DEFAULT_SCALAR_TAG)
        if kind is SequenceNode:
            return str(self.DEFAULT_SEQUENCE_TAG)
        return str(self.DEFAULT_MAPPING_TAG)


class KubeConstructor(SafeConstructor):
    """Values as Kubernetes reads them, and each duplicated mapping key recorded."""

    def __init__(self) -> None:
        super().__init__()
        # (mapping node, key node, key) of each key set twice in one mapping
        self.duplicates: list[tuple[MappingNode, Node, str]] = []

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        """Children before their parent (deep), so an alias inside the node it names is found:
        go-yaml refuses it ("anchor value contains itself"); PyYAML would build a cyclic value
        that no later walk could finish."""
        if node in self.recursive_objects:
            raise ConstructorError(
                None, None, "an alias inside the node it names (a recursive anchor)", node.start_mark
            )
        return super().construct_object(node, deep=True)

    def construct_plain(self, node: ScalarNode) -> Any:
        return self._json(node, go_resolve(node.value))

    def construct_tagged(self, node: ScalarNode) -> Any:
        """An explicitly tagged standard scalar (`!!int "80"`): go-yaml resolves the text and
        refuses it unless it resolves to the tag (an integer is also a float)."""
        tag = node.tag.removeprefix(_STD)
        text = node.value
        if tag == "str":
            return text
        if tag == "binary":
            try:
                return base64.b64decode(text.encode("ascii")).decode("utf-8", "replace")
            except (binascii.Error, UnicodeEncodeError):
                raise ConstructorError(
                    None, None, "!!binary value contains invalid base64 data", node.start_mark
                ) from None
        if tag == "timestamp":
            if _TIMESTAMP.fullmatch(text):
                return text  # a timestamp read into a generic value stays its text
        else:
            value = go_resolve(text)
            if tag == "null" and value is None:
                return None
            if tag == "bool" and isinstance(value, bool):
                return value
            if not isinstance(value, bool) and (
                (tag == "int" and isinstance(value, int))
                or (tag == "float" and isinstance(value, int | float))
            ):
                return self._json(node, float(value) if tag == "float" else value)
        raise ConstructorError(None, None, f"cannot decode {text!r} as a !!{tag}", node.start_mark)

    @staticmethod
    def _json(node: ScalarNode, value: Any) -> Any:
        try:
            return json_value(value)
        except ValueError:
            raise UnrepresentableError(
                None, None, f"{node.value} has no JSON form, so Kubernetes cannot read it", node.start_mark
            ) from None

    def construct_untyped(self, node: Node) -> Any:
        """A node with a tag go-yaml does not resolve (`!foo`, `!!set`): a scalar is its text,
        a sequence a list, a mapping an object."""
        if isinstance(node, ScalarNode):
            return node.value
        if isinstance(node, SequenceNode):
            return self.construct_yaml_seq(node)
        return self.construct_yaml_map(node)

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        if not isinstance(node, MappingNode):
            raise ConstructorError(
                None, None, f"expected a mapping node, but found {node.id}", node.start_mark
            )
        self.flatten_mapping(node)
        mapping: dict[Hashable, Any] = {}
        for key_node, value_node in node.value:
            # Interned: each document repeats the same few field names (JSON's decoder shares
            # them within a document; a YAML stream of 60k documents would keep 60k copies).
            key = sys.intern(json_key(key_node, self.construct_object(key_node, deep=deep)))
            value = self.construct_object(value_node, deep=deep)
            if key in mapping:
                self.duplicates.append((node, key_node, key))
            mapping[key] = value
        return mapping


def json_key(node: Node, key: Any) -> str:
    """A mapping key as sigs.k8s.io/yaml writes it into JSON."""
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, int):
        return str(key)
    if key is None:
        raise UnrepresentableError(None, None, "a null mapping key has no JSON form", node.start_mark)
    if isinstance(key, float):
        # Go writes it with 32-bit precision ('g', -1, 32): not worth imitating; refuse instead.
        raise UnrepresentableError(
            None,
            None,
            f"mapping key {node.value!r} reads as a number with a fraction: quote it",
            node.start_mark,
        )
    raise ConstructorError(None, None, "found unhashable key", node.start_mark)


KubeConstructor.add_constructor(PLAIN_TAG, KubeConstructor.construct_plain)  # type: ignore[type-var]
for _tag in ("str", "int", "float", "bool", "null", "timestamp", "binary"):
    KubeConstructor.add_constructor(_STD + _tag, KubeConstructor.construct_tagged)  # type: ignore[type-var]
for _tag in ("set", "omap", "pairs"):
    KubeConstructor.add_constructor(_STD + _tag, KubeConstructor.construct_untyped)  # type: ignore[type-var]
KubeConstructor.add_constructor(None, KubeConstructor.construct_untyped)  # type: ignore[type-var]


class KubeLoader(_Parser, KubeConstructor, KubeResolver):
    def __init__(self, stream: str) -> None:
        _Parser.__init__(self, stream)
        KubeConstructor.__init__(self)
        KubeResolver.__init__(self)


Path = tuple[str | int, ...]


def load_documents(text: str) -> Iterator[tuple[Any, list[tuple[Path, str]]]]:
    """Each document's data, and (path, message) for each key it repeats.

    Raises yaml.YAMLError (with a mark) for what Kubernetes cannot read at all."""
    loader = KubeLoader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            assert node is not None
            loader.duplicates = []
            data = loader.construct_document(node)
            yield data, [_duplicate(node, *found) for found in loader.duplicates]
    finally:
        loader.dispose()


def _duplicate(root: Node, mapping: MappingNode, key_node: Node, key: str) -> tuple[Path, str]:
    first = next(k for k, _ in mapping.value if k is not key_node and _key_text(k) == key)
    lines = f"lines {first.start_mark.line + 1} and {key_node.start_mark.line + 1}"
    return (*_path_to(root, mapping), key), f"set twice ({lines}); a key may appear once in a mapping"


def _key_text(node: Node) -> str | None:
    if not isinstance(node, ScalarNode):
        return None
    try:
        value = resolve_plain(node.value) if node.tag == PLAIN_TAG else node.value
        return json_key(node, value)
    except (yaml.YAMLError, ValueError):
        return None


def _path_to(root: Node, target: Node) -> Path:
    """Where `target` first appears in the document (depth first, in document order)."""
    stack: list[tuple[Node, Path]] = [(root, ())]
    seen: set[int] = set()
    while stack:
        node, path = stack.pop()
        if node is target:
            return path
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, SequenceNode):
            stack.extend((child, (*path, i)) for i, child in reversed(list(enumerate(node.value))))
        elif isinstance(node, MappingNode):
            stack.extend((value, (*path, _key_text(key) or "?")) for key, value in reversed(node.value))
    return ()
