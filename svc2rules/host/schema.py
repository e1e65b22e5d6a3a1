"""The shape check of a state read back from disk: every entry of the JSON part has the type
the backend's state TypedDict declares, so a state that parses but holds `"jumps": "nope"` is
refused as unknown before any planner reads it (never an internal error).

Only what JSON can hold is checked (str, int, float, bool, None, dicts with string keys,
lists, unions, nested TypedDicts); `Any` accepts everything. Entries the TypedDict does not
name are left alone (the store's own bookkeeping: format, bulk, checksum).
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from typing import Any, Union, get_args, get_origin, get_type_hints, is_typeddict


def shape_problem(value: Mapping[str, Any], schema: type, skip: tuple[str, ...] = ()) -> str | None:
    """Why `value` does not fit the TypedDict `schema` (entries in `skip` aside), or None."""
    try:
        hints = get_type_hints(schema)
    except (NameError, TypeError):  # a hint only known to the type checker: nothing to check
        return None
    for key, hint in hints.items():
        if key in skip or key not in value:
            continue
        problem = _problem(value[key], hint)
        if problem is not None:
            return f"{key}: {problem}"
    return None


def _problem(value: Any, hint: Any) -> str | None:
    if hint is Any or hint is object:
        return None
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        if any(_problem(value, arm) is None for arm in get_args(hint)):
            return None
        return f"{_kind(value)} is none of {_name(hint)}"
    if hint is type(None):
        return None if value is None else f"{_kind(value)}, not null"
    if is_typeddict(hint):
        if not isinstance(value, dict):
            return f"{_kind(value)}, not an object"
        return shape_problem(value, hint)
    if origin in (dict, Mapping) or hint is dict:
        if not isinstance(value, dict):
            return f"{_kind(value)}, not an object"
        key_hint, value_hint = get_args(hint) or (Any, Any)
        for key, item in value.items():
            problem = _problem(key, key_hint) or _problem(item, value_hint)
            if problem is not None:
                return f"[{key!r}]: {problem}"
        return None
    if origin in (list, tuple) or hint in (list, tuple):
        if not isinstance(value, list | tuple):
            return f"{_kind(value)}, not a list"
        args = [arg for arg in get_args(hint) if arg is not Ellipsis]
        item_hint = args[0] if len(set(map(repr, args))) == 1 else Any
        for index, item in enumerate(value):
            problem = _problem(item, item_hint)
            if problem is not None:
                return f"[{index}]: {problem}"
        return None
    if hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return None if ok else f"{_kind(value)}, not a number"
    if hint in (int, str, bool):
        ok = isinstance(value, hint) and (hint is bool or not isinstance(value, bool))
        return None if ok else f"{_kind(value)}, not {hint.__name__}"
    return None  # a type JSON cannot hold (the bulk part's): not checked here


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", type(None): "null"}.get(
        type(value), type(value).__name__
    )


def _name(hint: Any) -> str:
    return str(hint).replace("typing.", "")
