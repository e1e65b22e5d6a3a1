"""The nft reader: kernel listings and the writer's scripts read back into objects, and
listings made comparable."""

from __future__ import annotations

import tempfile

from hypothesis import given, settings
from hypothesis import strategies as st

from svc2rules.family import IPFamily
from svc2rules.syntax.nftables import Chain, Hook, Map, Rule, Set, Table, Writer, normalised, read_tables
from svc2rules.syntax.nftables.reader import parse_element, seconds, split_elements, verdict_chain
from tests.backends.nftables.helpers import nft_in_private_netns, root_only
from tests.syntax.test_nft_writer import small_table

# What nft 1.0.6 lists for a small table (a learnt element in `aff`, an element list wrapped
# over two lines, a comment with a comma, an anonymous set in a rule).
LISTING = """\
table ip t {
\tset aff {
\t\ttype ipv4_addr
\t\tsize 65535
\t\tflags dynamic,timeout
\t\ttimeout 3h
\t\tcomment "ns/a:p"
\t\telements = { 10.0.0.5 timeout 1h expires 59m59s988ms }
\t}

\tmap m {
\t\ttype ipv4_addr . inet_proto . inet_service : verdict
\t\telements = { 10.0.0.2 . tcp . 80 comment "ns/a:p, with a comma" : jump c,
\t\t\t     10.0.0.1 . tcp . 80 : goto c }
\t}

\tchain in {
\t\ttype filter hook input priority dstnat + 1; policy accept;
\t\tip daddr . meta l4proto . th dport vmap @m
\t}

\tchain c {
\t\tupdate @aff { ip saddr }
\t\tip saddr { 10.1.0.0-10.2.255.255 } accept comment "two ranges"
\t}
}
"""


def test_a_kernel_listing_reads_into_objects() -> None:
    (table,) = read_tables(LISTING)
    assert (table.family, table.name, table.comment) == (IPFamily.IPv4, "t", "")
    aff, m = table.collections
    assert aff == Set("aff", type="ipv4_addr", flags=("dynamic", "timeout"), timeout=10800, size=65535,
                      comment="ns/a:p")  # fmt: skip
    assert isinstance(m, Map) and m.type == "ipv4_addr . inet_proto . inet_service : verdict"
    assert m.elements == [
        ("10.0.0.2 . tcp . 80", "jump c", "ns/a:p, with a comma"),
        ("10.0.0.1 . tcp . 80", "goto c", ""),
    ]
    hooked, plain = table.chains
    assert hooked.hook == Hook("filter", "input", "dstnat + 1", "accept")
    assert hooked.rules == [Rule("ip daddr . meta l4proto . th dport vmap @m")]
    assert plain == Chain(
        "c",
        rules=[
            Rule("update @aff { ip saddr }"),
            Rule("ip saddr { 10.1.0.0-10.2.255.255 } accept", "two ranges"),
        ],
    )


def test_a_listing_made_comparable() -> None:
    assert normalised(LISTING, skip=("aff",)) == (
        "table ip t {\n"
        "\tchain c {\n"
        "\t\tupdate @aff { ip saddr }\n"
        '\t\tip saddr { 10.1.0.0-10.2.255.255 } accept comment "two ranges"\n'
        "\t}\n"
        "\tchain in {\n"
        "\t\ttype filter hook input priority dstnat + 1; policy accept;\n"
        "\t\tip daddr . meta l4proto . th dport vmap @m\n"
        "\t}\n"
        "\tmap m {\n"
        "\t\ttype ipv4_addr . inet_proto . inet_service : verdict\n"
        "\t\telements = {\n"
        "\t\t\t10.0.0.1 . tcp . 80 : goto c\n"
        '\t\t\t10.0.0.2 . tcp . 80 comment "ns/a:p, with a comma" : jump c\n'
        "\t\t}\n"
        "\t}\n"
        "}\n"
    )
    # Learnt elements are left out; the set's declaration stays.
    kept = normalised(LISTING)
    assert "\tset aff {" in kept and "expires" not in kept and "10.0.0.5" not in kept


def test_creation_order_and_hash_order_do_not_matter() -> None:
    reordered = LISTING.replace(
        '{ 10.0.0.2 . tcp . 80 comment "ns/a:p, with a comma" : jump c,\n\t\t\t     10.0.0.1 . tcp . 80 : goto c }',
        '{ 10.0.0.1 . tcp . 80 : goto c, 10.0.0.2 . tcp . 80 comment "ns/a:p, with a comma" : jump c }',
    )
    assert reordered != LISTING
    assert normalised(reordered) == normalised(LISTING)


def test_the_writer_s_script_reads_back_as_the_objects_written() -> None:
    table = small_table()
    script = Writer.of(table).whole_table(table, ("a preamble",))
    (read,) = read_tables(script[script.index("table ip t {") :])
    # The `#` note of a base chain is a script comment: not kept by nft, not read.
    table.chains[0].hook = Hook("filter", "input", 0)
    assert read == table


def test_tables_lists_and_other_families() -> None:
    tables = read_tables("table ip a\ntable ip6 b\ntable inet c\n")
    assert [(t.family, t.name) for t in tables] == [(IPFamily.IPv4, "a"), (IPFamily.IPv6, "b")]
    assert normalised("table ip a\ntable inet c {\n}\n") == "table ip a\ntable inet c {\n}\n"


def test_elements_split_only_outside_quotes_and_braces() -> None:
    pieces = [(3, ' a comment "x, { y" : jump c,'), (4, "b . { 1, 2 } : drop, c"), (5, "} trailing")]
    assert split_elements(pieces) == [
        (3, 'a comment "x, { y" : jump c'),
        (4, "b . { 1, 2 } : drop"),
        (4, "c"),
    ]


def test_element_parts() -> None:
    assert parse_element('1.2.3.4 . tcp . 80 comment "ns/a : b" : jump x') == (
        "1.2.3.4 . tcp . 80",
        "jump x",
        "ns/a : b",
    )
    assert parse_element("fd00::1 . fd00::2") == ("fd00::1 . fd00::2", None, "")
    assert parse_element("10.0.0.1 timeout 3h") == ("10.0.0.1", None, "")
    assert parse_element("10.0.0.1 timeout 3h expires 2h") is None
    assert seconds("1d2h3m4s") == 93784 and seconds("10800s") == 10800
    assert (
        verdict_chain("goto pool-2") == "pool-2"
        and verdict_chain("drop") is None
        and verdict_chain(None) is None
    )


KEYS = st.lists(
    st.tuples(st.integers(1, 254), st.integers(1, 65535), st.text(max_size=40)),
    min_size=1,
    max_size=20,
    unique_by=lambda t: t[0],
)


@settings(max_examples=50)
@given(KEYS)
def test_any_elements_round_trip_through_the_writer(items: list[tuple[int, int, str]]) -> None:
    table = Table(IPFamily.IPv4, "t")
    table.collection(
        Map(
            "m",
            type="ipv4_addr : inet_service",
            elements=[(f"10.0.0.{host}", str(port), comment) for host, port, comment in items],
        )
    )
    script = Writer.of(table).whole_table(table)
    (read,) = read_tables(script[script.index("table ip t {") :])
    quoted = [Writer.of(table).quote(comment)[1:-1] for _, _, comment in items]
    assert read.collections[0].elements == [
        (f"10.0.0.{host}", str(port), text) for (host, port, _), text in zip(items, quoted, strict=True)
    ]


@root_only[0]
@root_only[1]
@root_only[2]
@root_only[3]
def test_what_the_kernel_lists_reads_back_as_what_was_written() -> None:
    table = small_table()
    # What nft keeps as written (the kernel lists priorities and durations its own way).
    writer = Writer.of(table)
    with tempfile.NamedTemporaryFile("w", suffix=".nft") as fh:
        fh.write(writer.whole_table(table))
        fh.flush()
        result = nft_in_private_netns(f"nft -f {fh.name} && nft list table ip t")
    assert result.returncode == 0, result.stderr
    (read,) = read_tables(result.stdout)
    assert read.comment == table.comment
    for written, listed in zip(table.collections, read.collections, strict=True):
        assert (listed.name, listed.kind, listed.comment, listed.timeout) == (
            written.name, written.kind, written.comment, written.timeout
        )  # fmt: skip
        # A set with a default timeout makes every element expire: the reader takes them for
        # learnt ones (the layouts give a timeout only to sets the kernel fills).
        assert sorted(listed.elements) == ([] if written.timeout else sorted(written.elements))
    assert [(c.name, c.comment, c.rules) for c in read.chains] == [
        (c.name, c.comment, c.rules) for c in table.chains
    ]
    assert normalised(result.stdout) == normalised(result.stdout.replace("\n\n", "\n"))
