"""The nft writer: the whole-table transaction and the edits, spelt exactly."""

from __future__ import annotations

from svc2rules.family import IPFamily
from svc2rules.syntax.nftables import Chain, Hook, Map, Set, Table, Writer, spelling


def small_table(family: IPFamily = IPFamily.IPv4) -> Table:
    nft = spelling(family)
    table = Table(family, "t", "a table")
    table.collection(
        Map(
            "dispatch",
            type=f"{nft.addr_type} . inet_proto . inet_service : verdict",
            comment="frontends",
            elements=[("10.0.0.1 . tcp . 80", "jump c", "ns/a:http"), ("10.0.0.2 . udp . 53", "drop", "")],
        )
    )
    table.collection(
        Map("pool", typeof=f"{nft.daddr} . th dport . numgen random mod 2 : {nft.daddr} . th dport")
    )
    table.collection(
        Set(
            "seen",
            type=nft.addr_type,
            flags=("dynamic", "timeout"),
            timeout=10800,
            size=65535,
            elements=[("10.0.0.9", None, "ns/b"), ("10.0.0.8", None, "")],
        )
    )
    base = table.chain(Chain("in", "hooked", Hook("filter", "input", 0, note="after DNAT")))
    base.add("jump c")
    chain = table.chain(Chain("c"))
    chain.add("accept", "ns/a:http")
    chain.add("drop")
    return table


WHOLE = """\
# made by a test
# One transaction: it creates table ip t if missing, deletes it and
# recreates it whole; no other table is touched.
table ip t
delete table ip t
table ip t {
\tcomment "a table"

\tmap dispatch {
\t\ttype ipv4_addr . inet_proto . inet_service : verdict
\t\tcomment "frontends"
\t\telements = {
\t\t\t10.0.0.1 . tcp . 80 comment "ns/a:http" : jump c,
\t\t\t10.0.0.2 . udp . 53 : drop,
\t\t}
\t}

\tmap pool {
\t\ttypeof ip daddr . th dport . numgen random mod 2 : ip daddr . th dport
\t}

\tset seen {
\t\ttype ipv4_addr
\t\tflags dynamic, timeout
\t\ttimeout 10800s
\t\tsize 65535
\t\telements = {
\t\t\t10.0.0.9 comment "ns/b",
\t\t\t10.0.0.8,
\t\t}
\t}

\tchain in {
\t\tcomment "hooked"
\t\t# priority 0: after DNAT
\t\ttype filter hook input priority 0; policy accept;
\t\tjump c
\t}

\tchain c {
\t\taccept comment "ns/a:http"
\t\tdrop
\t}
}
"""


def test_the_whole_table_is_one_transaction_spelt_exactly() -> None:
    table = small_table()
    assert Writer.of(table).whole_table(table, ("made by a test",)) == WHOLE


def test_ipv6_is_the_other_row_of_the_spelling_table() -> None:
    table = small_table(IPFamily.IPv6)
    text = Writer.of(table).whole_table(table)
    assert text.splitlines()[2:5] == ["table ip6 t", "delete table ip6 t", "table ip6 t {"]
    assert "type ipv6_addr . inet_proto . inet_service : verdict" in text
    assert "typeof ip6 daddr . th dport . numgen random mod 2 : ip6 daddr . th dport" in text
    assert "ipv4" not in text and "ip daddr" not in text


def test_a_block_without_its_elements_is_what_the_skeleton_is_made_of() -> None:
    table = small_table()
    writer = Writer.of(table)
    dispatch = table.collections[0]
    assert writer.block(dispatch) == (
        "\tmap dispatch {\n\t\ttype ipv4_addr . inet_proto . inet_service : verdict\n"
        '\t\tcomment "frontends"\n\t}\n'
    )
    assert "elements" in writer.block(dispatch, elements=True)
    # Elements are data, not part of the declaration.
    dispatch.elements.clear()
    assert writer.block(dispatch, elements=True) == writer.block(dispatch)


def test_edits_are_spelt_in_the_order_given() -> None:
    table = small_table()
    writer = Writer.of(table)
    tx = writer.transaction()
    tx.delete("set", "marker")
    tx.add(Set("marker", type="inet_service", comment="generation 1-a"))
    tx.delete_elements("dispatch", ["10.0.0.2 . udp . 53"])
    tx.delete("chain", "old")
    tx.delete("map", "old-pool")
    tx.declare([table.collections[1], table.chains[1]])
    tx.add_elements(
        "dispatch", [("10.0.0.3 . tcp . 443", "jump c", "ns/c:https"), ("10.0.0.4 . tcp . 1", "drop", "")]
    )
    tx.add_elements("dispatch", [])
    tx.delete_elements("dispatch", [])
    assert tx.text() == (
        "delete set ip t marker\n"
        'add set ip t marker { type inet_service; comment "generation 1-a"; }\n'
        "delete element ip t dispatch { 10.0.0.2 . udp . 53 }\n"
        "delete chain ip t old\n"
        "delete map ip t old-pool\n"
        "table ip t {\n"
        "\tmap pool {\n\t\ttypeof ip daddr . th dport . numgen random mod 2 : ip daddr . th dport\n\t}\n"
        '\tchain c {\n\t\taccept comment "ns/a:http"\n\t\tdrop\n\t}\n'
        "}\n"
        'add element ip t dispatch { 10.0.0.3 . tcp . 443 comment "ns/c:https" : jump c, 10.0.0.4 . tcp . 1 : drop }\n'
    )


def test_deleting_the_table_and_an_empty_transaction() -> None:
    writer = Writer(IPFamily.IPv4, "t")
    tx = writer.transaction()
    assert tx.text() == "" and len(tx) == 0
    tx.declare([])
    assert tx.text() == ""
    tx.delete_table()
    assert tx.text() == "delete table ip t\n"


def test_comments_are_quoted_wherever_they_go() -> None:
    table = Table(IPFamily.IPv4, "t", 'say "hi"')
    table.collection(Set("s", type="ipv4_addr", comment="a\nb", elements=[("10.0.0.1", None, 'x" }')]))
    table.chain(Chain("c", "é")).add("accept", "$(reboot)")
    text = Writer.of(table).whole_table(table)
    assert 'comment "say ?hi?"' in text
    assert 'comment "a?b"' in text
    assert '10.0.0.1 comment "x? ?",' in text
    assert 'comment "?"' in text and 'accept comment "?(reboot)"' in text
