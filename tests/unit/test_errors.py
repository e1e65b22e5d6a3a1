"""Diagnostics a terminal prints as they are: one line, control characters escaped, bounded."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from svc2rules.errors import PART_LIMIT, Diagnostic, printable, quote_value


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain name", "plain name"),
        ("bell\x07", "bell\\x07"),
        ("\x1b[2J\x1b]0;title\x07", "\\x1b[2J\\x1b]0;title\\x07"),
        ("a\nb\rc\td", "a\\nb\\rc\\td"),
        ("csi\x9b31m", "csi\\x9b31m"),  # a C1 control some terminals take as ESC [
        ("del\x7f", "del\\x7f"),
        ("rtl\u202eoverride\u2066", "rtl\\u202eoverride\\u2066"),
        ("line\u2028sep", "line\\u2028sep"),
        ("ünïcödé and 中文", "ünïcödé and 中文"),
    ],
)
def test_control_characters_are_escaped(text: str, shown: str) -> None:
    assert printable(text) == shown


@given(st.text())
def test_a_printable_line_holds_no_control_character_and_no_line_break(text: str) -> None:
    line = printable(text, 200)
    assert len(line.splitlines()) <= 1
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in line)


def test_a_long_text_is_shortened_saying_how_long_it_was() -> None:
    line = printable("x" * 20_000_000, 100)
    assert len(line) <= 100 and line.endswith("... (20000000 characters)")


def test_a_long_text_of_escapes_is_cut_between_escapes() -> None:
    line = printable("\x07" * 1000, 101)
    assert len(line) <= 101
    assert line.split("...")[0].replace("\\x07", "") == ""


def test_every_part_of_a_diagnostic_is_escaped_and_bounded() -> None:
    huge = "\x1b" * 5_000_000
    line = str(Diagnostic("f\x07.yaml", f"bad {huge}", "Service", f"ns/{huge}", f"metadata.labels.{huge}"))
    assert "\x1b" not in line and "\x07" not in line
    assert len(line) < 5 * PART_LIMIT
    assert line.startswith("f\\x07.yaml: Service ns/\\x1b\\x1b")


def test_a_diagnostic_of_ordinary_values_is_unchanged() -> None:
    line = str(Diagnostic("in.yaml", 'Invalid value: "x": bad', "Service", "ns1/web", "spec.ports[0].name"))
    assert line == 'in.yaml: Service ns1/web: spec.ports[0].name: Invalid value: "x": bad'


values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text() | st.integers(), inner),
    max_leaves=30,
)


@given(values, st.integers(4, 100))
def test_a_quoted_value_is_its_json_shortened(value: object, limit: int) -> None:
    text = json.dumps(value, ensure_ascii=True)
    assert quote_value(value, limit) == (text if len(text) <= limit else text[: limit - 3] + "...")


@pytest.mark.parametrize(
    ("make", "quoted"),
    [
        (lambda: "n" * 20_000_000, '"' + "n" * 60 + "..."),
        (lambda: [[]] * 10_000_000, "[" + "[], " * 15 + "..."),
        (lambda: 10**5000, '"<an integer of about 5000 digits>"'),
    ],
    ids=["string", "list", "integer"],
)
def test_quoting_a_huge_value_costs_what_shows(make: Callable[[], object], quoted: str) -> None:
    assert quote_value(make()) == quoted
