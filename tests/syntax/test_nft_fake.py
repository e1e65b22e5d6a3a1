"""The in-memory nft answers as nft 1.0.6 does, for what svc2rules relies on."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import pytest

from svc2rules.family import IPFamily
from svc2rules.host.fake import FakeRunner
from svc2rules.syntax.nftables import Map, Set, Table, Writer, normalised, read_tables
from svc2rules.syntax.nftables.fake import FakeNft
from tests.backends.nftables.helpers import nft_in_private_netns, root_only
from tests.syntax.test_nft_writer import small_table

WHOLE = Writer.of(small_table()).whole_table(small_table())


def host() -> tuple[FakeRunner, FakeNft]:
    runner = FakeRunner(FakeNft)
    return runner, runner.emulator(FakeNft)


def load(runner: FakeRunner, script: str, *, check: bool = False) -> tuple[int, str]:
    with tempfile.NamedTemporaryFile("w", suffix=".nft") as fh:
        fh.write(script)
        fh.flush()
        result = runner.run(["nft", *(["-c"] if check else []), "-f", fh.name])
    return result.returncode, result.stderr


def test_a_whole_table_loads_and_lists_as_written() -> None:
    runner, kernel = host()
    assert load(runner, WHOLE) == (0, "")
    (listed,) = read_tables(runner.run(["nft", "list", "table", "ip", "t"]).stdout)
    written = small_table()
    assert written.chains[0].hook is not None
    # The `#` note of a base chain is a script comment, which nft does not keep.
    written.chains[0].hook = dataclasses.replace(written.chains[0].hook, note="")
    assert listed == written
    assert kernel.dump() == runner.run(["nft", "list", "ruleset"]).stdout
    # Loaded again: deleted and recreated, nothing doubled.
    assert load(runner, WHOLE) == (0, "")
    assert read_tables(kernel.dump()) == [listed]


def test_a_refused_script_changes_nothing_and_names_its_line() -> None:
    runner, kernel = host()
    load(runner, WHOLE)
    before = kernel.dump()
    script = (
        "delete element ip t dispatch { 10.0.0.2 . udp . 53 }\n"
        "add element ip t dispatch { 10.0.0.3 . tcp . 99999 : drop }\n"
    )
    code, stderr = load(runner, script)
    assert code == 1
    assert ":2:1-" in stderr and "Error: Value 99999 exceeds valid range 0-65535" in stderr
    assert kernel.dump() == before


def test_a_check_changes_nothing() -> None:
    runner, kernel = host()
    assert load(runner, WHOLE, check=True) == (0, "")
    assert kernel.dump() == ""
    assert runner.run(["nft", "list", "tables", "ip"]).stdout == ""


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ("delete element ip t dispatch { 10.9.9.9 . tcp . 1 }", "No such file or directory"),
        ("delete chain ip t c", "Device or resource busy"),  # elements and rules jump to it
        ("delete map ip t dispatch", "Device or resource busy"),  # a rule names it
        ("add element ip t dispatch { 10.0.0.3 . tcp . 1 : goto nowhere }", "No such file or directory"),
        ("add element ip t dispatch { 10.0.0.1 . tcp . 80 : drop }", "File exists"),
        ("add element ip t dispatch { 10.0.0.1 . tcp : drop }", "does not match"),
        ("add element ip t seen { 10.0.0.300 }", "Could not resolve"),
        ("delete table ip nosuch", "No such file or directory"),
        ("bogus", "syntax error"),
    ],
)
def test_what_the_kernel_refuses(script: str, message: str) -> None:
    runner, _ = host()
    table = small_table()
    table.chains[0].add("ip daddr . meta l4proto . th dport vmap @dispatch")
    load(runner, Writer.of(table).whole_table(table))
    code, stderr = load(runner, script + "\n")
    assert code == 1 and message in stderr, stderr


def test_edits_in_order_and_one_command_forms() -> None:
    runner, kernel = host()
    load(runner, WHOLE)
    tx = Writer(IPFamily.IPv4, "t").transaction()
    tx.delete_elements("dispatch", ["10.0.0.1 . tcp . 80"])
    tx.delete("chain", "in")  # it jumps to c: deleted first
    tx.delete("chain", "c")
    tx.add(Set("marker", type="inet_service", comment="generation 2"))
    tx.declare([Map("new", type="ipv4_addr : verdict")])
    tx.add_elements("new", [("10.0.0.7", "drop", "ns/x")])
    assert load(runner, tx.text()) == (0, "")
    (table,) = read_tables(kernel.dump())
    assert table.chains == [] and table.find("map", "new") is not None
    assert table.find("set", "marker") == Set("marker", type="inet_service", comment="generation 2")
    marker = runner.run(["nft", "list", "set", "ip", "t", "marker"])
    assert read_tables(marker.stdout)[0].collections == [table.find("set", "marker")]
    assert runner.run(["nft", "list", "set", "ip", "t", "nosuch"]).returncode == 1
    assert runner.run(["nft", "delete", "set", "ip", "t", "marker"]).returncode == 0
    assert runner.run(["nft", "flush", "map", "ip", "t", "new"]).returncode == 0
    assert read_tables(kernel.dump())[0].find("map", "new") == Map("new", type="ipv4_addr : verdict")


# Scripts on which the fake and the real nft must agree (accepted or refused), each loaded on
# top of the small table.
AGREED = [
    "add element ip t dispatch { 10.0.0.3 . tcp . 443 : jump c }",
    'add element ip t dispatch { 10.0.0.1 . tcp . 80 comment "ns/a:http" : jump c }',
    "add element ip t dispatch { 10.0.0.1 . tcp . 80 : drop }",
    "delete element ip t dispatch { 10.0.0.1 . tcp . 80 }",
    "delete element ip t dispatch { 10.0.0.1 . tcp . 81 }",
    "delete chain ip t c",
    "delete element ip t dispatch { 10.0.0.1 . tcp . 80 }\ndelete chain ip t in\ndelete chain ip t c",
    "add element ip t dispatch { 10.0.0.3 . tcp . 1 : goto nowhere }",
    "add element ip t dispatch { 10.0.0.3 . tcp . 70000 : drop }",
    'delete set ip t seen\nadd set ip t seen { type inet_service; comment "x"; }',
    "table ip t {\n\tmap p2 {\n\t\ttype ipv4_addr : verdict\n\t}\n\tchain c2 {\n\t\tip daddr vmap @p2\n\t}\n}\n"
    "add element ip t p2 { 10.0.0.1 : goto c2 }",
    "delete map ip t pool",
    "delete table ip t",
    "delete table ip t\ndelete table ip t",
]


@root_only[0]
@root_only[1]
@root_only[2]
@root_only[3]
def test_the_fake_agrees_with_nft(tmp_path: Path) -> None:
    base = tmp_path / "base.nft"
    base.write_text(WHOLE)
    for index, script in enumerate(AGREED):
        edit = tmp_path / f"edit{index}.nft"
        edit.write_text(script + "\n")
        real = nft_in_private_netns(f"nft -f {base} && nft -f {edit}; echo rc=$?; nft list table ip t")
        runner, kernel = host()
        load(runner, WHOLE)
        fake_code, _ = load(runner, script + "\n")
        real_code = int(real.stdout.split("rc=")[1].split()[0])
        assert (fake_code == 0) == (real_code == 0), (script, real.stderr)
        listing = real.stdout.split("\n", 1)[1] if "\n" in real.stdout else ""
        fake_tables = {t.name: t for t in read_tables(kernel.dump())}
        real_tables = {t.name: t for t in read_tables(listing)}
        assert fake_tables.keys() == real_tables.keys(), script
        for name, table in real_tables.items():
            assert _elements(fake_tables[name]) == _elements(table), script


def _elements(table: Table) -> dict[str, list[tuple[str, str | None, str]]]:
    return {c.name: sorted(c.elements) for c in table.collections if not c.timeout}


def test_the_listing_is_what_the_reader_reads() -> None:
    runner, kernel = host()
    load(runner, WHOLE)
    assert normalised(kernel.dump()) == normalised(runner.run(["nft", "list", "table", "ip", "t"]).stdout)
