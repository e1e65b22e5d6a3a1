"""Reading sources within the input-size limit: refused before parsing, never read past it."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from svc2rules.errors import InputError
from svc2rules.load.reader import DEFAULT_MAX_INPUT_BYTES, read_sources

LIMIT_HINT = "(raise it with --max-input-bytes)"


def refusals(paths: list[str], limit: int, stdin: bytes = b"") -> list[str]:
    with pytest.raises(InputError) as caught:
        read_sources(paths, recursive=False, stdin=io.BytesIO(stdin), max_bytes=limit)
    return [str(d) for d in caught.value.diagnostics]


def test_sources_up_to_the_limit_are_read(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_bytes(b"a" * 100)
    (tmp_path / "b.yaml").write_bytes(b"b" * 50)
    sources = read_sources([str(tmp_path)], recursive=False, stdin=io.BytesIO(), max_bytes=150)
    assert [len(s.data) for s in sources] == [100, 50]


def test_the_limit_is_for_all_sources_together(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_bytes(b"a" * 100)
    (tmp_path / "b.yaml").write_bytes(b"b" * 50)
    assert refusals([str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")], 149) == [
        f"{tmp_path / 'b.yaml'}: input over the size limit of 149 bytes: 150 bytes with the sources "
        f"before it {LIMIT_HINT}"
    ]


def test_a_file_over_the_limit_is_refused_by_its_size_unread(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    with open(big, "wb") as fh:
        fh.truncate(10 * DEFAULT_MAX_INPUT_BYTES)  # sparse: its size alone says no
    assert refusals([str(big)], DEFAULT_MAX_INPUT_BYTES) == [
        f"{big}: input over the size limit of {DEFAULT_MAX_INPUT_BYTES} bytes: "
        f"{10 * DEFAULT_MAX_INPUT_BYTES} bytes {LIMIT_HINT}"
    ]


def test_stdin_is_read_no_further_than_the_limit() -> None:
    stdin = io.BytesIO(b"x" * 1000)
    with pytest.raises(InputError) as caught:
        read_sources([], recursive=False, stdin=stdin, max_bytes=10)
    assert [str(d) for d in caught.value.diagnostics] == [
        f"<stdin>: input over the size limit of 10 bytes {LIMIT_HINT}"
    ]
    assert stdin.tell() == 11


def test_a_pipe_given_as_a_file_is_bounded_too() -> None:
    read_end, write_end = os.pipe()
    os.write(write_end, b"y" * 1000)
    os.close(write_end)
    try:
        assert refusals([f"/dev/fd/{read_end}"], 999) == [
            f"/dev/fd/{read_end}: input over the size limit of 999 bytes {LIMIT_HINT}"
        ]
    finally:
        os.close(read_end)
